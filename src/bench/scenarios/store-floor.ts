/**
 * The ingest floor: what lmdb itself sustains for the gateway's durable append pattern (idempotency key,
 * per-user counter and the entry, written together under `ifNoExists`, acked after `flushed`), with the same
 * number of appends outstanding as the Ingest load. Ingest figures are read against it like Recommend against
 * the echo floor: the gap is the gateway's own cost (gRPC, validation, encoding, telemetry).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { open } from 'lmdb';
import { createHistogram, recordMs, summarize } from '../histogram.js';
import type { StoreFloorFigure } from '../report.js';
import type { BenchContext } from './context.js';

export async function benchStoreFloor(
  outstanding: number,
  users: number,
  durationMs: number,
): Promise<StoreFloorFigure> {
  const dir = await mkdtemp(join(tmpdir(), 'automr-store-floor-'));
  const db = open<unknown, (string | number)[]>({ path: join(dir, 'memory.mdb'), compression: false });
  const histogram = createHistogram();
  let sequence = 0;
  let done = 0;
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  const end = start + durationMs;
  const appender = async (): Promise<void> => {
    while (performance.now() < end) {
      const n = sequence++;
      const user = `u${n % users}`;
      const eventId = `e${n}`;
      const t0 = performance.now();
      const written = db.ifNoExists(['i', user, eventId], () => {
        void db.put(['i', user, eventId], n);
        void db.put(['c', user], n);
        void db.put(['e', user, 1_700_000_000_000 + n, n], { id: eventId, item: 'item', tok: 3 });
      });
      await written;
      await db.flushed;
      recordMs(histogram, performance.now() - t0);
      done += 1;
    }
  };
  try {
    await Promise.all(Array.from({ length: outstanding }, appender));
    const elapsedS = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    return {
      outstanding,
      eps: Math.round(done / elapsedS),
      ack_latency: summarize(histogram),
      cpu_ms_per_event: Math.round(((cpu.user + cpu.system) / done / 1000) * 1000) / 1000,
    };
  } finally {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export async function benchStoreFloorSection(ctx: BenchContext): Promise<void> {
  const { options } = ctx;
  const floor = await benchStoreFloor(
    options.ingestStreams * options.ingestWindow,
    options.quick ? 2_000 : 10_000,
    options.durationMs,
  );
  ctx.report.store_floor = floor;
  ctx.log(
    `store floor (lmdb alone, ${floor.outstanding} outstanding): ${floor.eps} events/s, ack p99 ${floor.ack_latency.p99_ms} ms`,
  );
}
