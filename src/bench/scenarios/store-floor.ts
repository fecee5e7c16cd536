/**
 * The ingest floor: what lmdb itself sustains for the gateway's durable append pattern (idempotency key,
 * per-user counter and the entry, written together under `ifNoExists`, acked after `flushed`), with the same
 * number of appends outstanding as the Ingest load. Ingest figures are read against it like Recommend against
 * the echo floor: the gap is the gateway's own cost (gRPC, validation, encoding, telemetry). The Redis floor is
 * the gateway's Redis store adapter driven directly (its append script, same outstanding appends and users).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { open } from 'lmdb';
import { RedisMemoryStore } from '../../gateway/adapters/redis-store.js';
import { createHistogram, recordMs, summarize } from '../histogram.js';
import type { StoreFloorFigure } from '../report.js';
import type { BenchContext } from './context.js';
import { deleteRedisPrefix } from './redis-keys.js';

/** `outstanding` loops of `append(n)` (n counts up across loops) for `durationMs`: events/s, ack latency, CPU. */
async function drive(
  outstanding: number,
  durationMs: number,
  append: (n: number) => Promise<unknown>,
): Promise<StoreFloorFigure> {
  const histogram = createHistogram();
  let sequence = 0;
  let done = 0;
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  const end = start + durationMs;
  const appender = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await append(sequence++);
      recordMs(histogram, performance.now() - t0);
      done += 1;
    }
  };
  await Promise.all(Array.from({ length: outstanding }, appender));
  const elapsedS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    outstanding,
    eps: Math.round(done / elapsedS),
    ack_latency: summarize(histogram),
    cpu_ms_per_event: Math.round(((cpu.user + cpu.system) / done / 1000) * 1000) / 1000,
  };
}

export async function benchStoreFloor(
  outstanding: number,
  users: number,
  durationMs: number,
): Promise<StoreFloorFigure> {
  const dir = await mkdtemp(join(tmpdir(), 'automr-store-floor-'));
  const db = open<unknown, (string | number)[]>({ path: join(dir, 'memory.mdb'), compression: false });
  try {
    return await drive(outstanding, durationMs, async (n) => {
      const user = `u${n % users}`;
      const eventId = `e${n}`;
      await db.ifNoExists(['i', user, eventId], () => {
        void db.put(['i', user, eventId], n);
        void db.put(['c', user], n);
        void db.put(['e', user, 1_700_000_000_000 + n, n], { id: eventId, item: 'item', tok: 3 });
      });
      await db.flushed;
    });
  } finally {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The Redis store adapter alone (no gateway): its durable append, `outstanding` at a time. */
export async function benchRedisStoreFloor(
  url: string,
  outstanding: number,
  users: number,
  durationMs: number,
): Promise<StoreFloorFigure> {
  const prefix = `automr-bench-floor-${randomBytes(4).toString('hex')}`;
  const store = new RedisMemoryStore({ url, prefix });
  try {
    if (!(await store.ready())) throw new Error(`Redis at ${url} is not ready`);
    return await drive(outstanding, durationMs, (n) =>
      store.append(
        {
          userId: `u${n % users}`,
          eventId: `e${n}`,
          itemId: 'item',
          token: 3,
          timestampMs: 1_700_000_000_000 + n,
        },
        100,
        9,
      ),
    );
  } finally {
    await store.close();
    await deleteRedisPrefix(url, prefix).catch(() => undefined);
  }
}

export async function benchStoreFloorSection(ctx: BenchContext): Promise<void> {
  const { options } = ctx;
  const outstanding = options.ingestStreams * options.ingestWindow;
  const users = options.quick ? 2_000 : 10_000;
  const logFloor = (what: string, f: StoreFloorFigure) =>
    ctx.log(
      `store floor (${what} alone, ${f.outstanding} outstanding): ${f.eps} events/s, ack p99 ${f.ack_latency.p99_ms} ms`,
    );
  ctx.report.store_floor = await benchStoreFloor(outstanding, users, options.durationMs);
  logFloor('lmdb', ctx.report.store_floor);
  try {
    ctx.report.redis_store_floor = await benchRedisStoreFloor(
      options.redisUrl,
      outstanding,
      users,
      options.durationMs,
    );
    logFloor('Redis', ctx.report.redis_store_floor);
  } catch (error) {
    ctx.note(`Redis store floor skipped: ${(error as Error).message}`);
  }
}
