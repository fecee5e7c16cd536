/**
 * Ingest's own cost without gRPC: the gateway's IngestService + Encoder on a real store (LMDB in a temp dir, or
 * Redis at AUTOMR_TEST_REDIS_URL / 127.0.0.1:6379 under a unique prefix, deleted after), 256 events outstanding as
 * in the bench's 4 streams × 64, fresh users as in the bench. The model server is replaced by an in-process encoder
 * that answers one event-loop turn later with zero vectors, so the figure is the gateway's CPU per event
 * (validation, durable append, encoding pass, vector write), not the model's. Prints events/s and CPU ms/event.
 * Usage: node --import tsx scripts/measure-ingest.ts lmdb|redis [events] [users] [spread]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { LmdbMemoryStore } from '../src/gateway/adapters/lmdb-store.js';
import { RedisMemoryStore } from '../src/gateway/adapters/redis-store.js';
import { Encoder } from '../src/gateway/domain/encoder.js';
import { IngestService } from '../src/gateway/domain/ingest.js';
import type { Catalog, MemoryStore, ModelServer } from '../src/gateway/domain/ports.js';
import { DEFAULT_LIMITS } from '../src/gateway/domain/validation.js';
import { silentLogger } from '../src/shared/logger.js';

const kind = process.argv[2] ?? 'lmdb';
const events = Number(process.argv[3] ?? 20_000);
const users = Number(process.argv[4] ?? 2_000);
const OUTSTANDING = 256;
/** `spread` as the 5th argument: users in a scattered order (n × 7919 mod users) instead of round robin. */
const SPREAD = process.argv[5] === 'spread';
const ITEMS = 1_600;
const REDIS_URL = process.env.AUTOMR_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

const modelServer: ModelServer = {
  ready: () => Promise.resolve(true),
  encode: async (prompts) => {
    await nextTurn();
    return prompts.map(() => new Float32Array(64));
  },
  recommend: () => Promise.reject(new Error('not measured here')),
  close: () => undefined,
};
const catalog: Catalog = {
  topK: 10,
  tokens: { pad: 0, bos: 1, unk: 2 },
  tokenOf: (itemId) => 3 + (Number(itemId.slice(1)) % ITEMS),
  itemOf: () => undefined,
  size: ITEMS,
  itemTokenBase: 3,
};

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'automr-measure-ingest-'));
  const prefix = `automr-measure-ingest-${process.pid}`;
  const store: MemoryStore =
    kind === 'lmdb' ? new LmdbMemoryStore(dir) : new RedisMemoryStore({ url: REDIS_URL, prefix });
  const logger = silentLogger();
  try {
    if (!(await store.ready())) throw new Error(`${kind} store is not ready`);
    const model = { modelVersion: 'v1', window: 10, maxMemory: 90, bos: 1, maxHistory: 100 };
    const encoder = new Encoder({ store, modelServer, model, batchSize: 64, logger });
    const ingest = new IngestService({
      store,
      encoder,
      catalog,
      limits: DEFAULT_LIMITS,
      maxHistory: model.maxHistory,
      historyContext: model.window - 1,
    });
    const base = Date.now() - 3_600_000;
    let next = 0;
    const cpu = process.cpuUsage();
    const started = performance.now();
    await Promise.all(
      Array.from({ length: OUTSTANDING }, async () => {
        while (next < events) {
          const n = next++;
          const ack = await ingest.ingest({
            event_id: `e${n}`,
            user_id: `u${SPREAD ? (n * 7919) % users : n % users}`,
            item_id: `i${(n * 7919) % ITEMS}`,
            timestamp_ms: base + n,
          });
          if (ack.status !== 'ACCEPTED') throw new Error(`event ${n}: ${ack.status} ${ack.message}`);
        }
      }),
    );
    await encoder.idle();
    const ms = performance.now() - started;
    const used = process.cpuUsage(cpu);
    const perEvent = (used.user + used.system) / events / 1000;
    console.log(
      `${kind}: ${events} events over ${users} users, ${Math.round((events / ms) * 1000)} events/s, CPU ${perEvent.toFixed(4)} ms/event (encoding passes included)`,
    );
    await encoder.stop(1_000);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    if (kind !== 'lmdb') {
      const redis = new Redis(REDIS_URL);
      let cursor = '0';
      do {
        const [after, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = after;
        if (keys.length > 0) await redis.unlink(...keys);
      } while (cursor !== '0');
      redis.disconnect();
    }
  }
}

await main();
