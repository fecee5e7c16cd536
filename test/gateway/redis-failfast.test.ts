/**
 * Redis goes away under a running gateway (a redis-server of the test's own, killed with SIGKILL): health turns
 * NOT_SERVING within 1 s, a new Ingest stream fails UNAVAILABLE within 2 s without naming the store's address,
 * health is SERVING again within 1 s of Redis's return, and every acked event is still there (AOF fsync always).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { RedisMemoryStore } from '../../src/gateway/adapters/redis-store.js';
import { AppError } from '../../src/shared/errors.js';
import { freePort, startOwnRedis, type OwnRedis } from '../own-redis.js';
import {
  healthClient,
  healthStatus,
  ingest,
  startStack,
  tempDir,
  type HealthClient,
  type Stack,
} from './helpers.js';

let dir: string;
let port: number;
let redis: OwnRedis;
let stack: Stack;

before(async () => {
  dir = tempDir('automr-redis-kill-');
  port = await freePort();
  redis = await startOwnRedis(dir, port);
  stack = await startStack('automr-redis-kill-gw-', {
    memoryStore: `redis://127.0.0.1:${port}`,
    redisPrefix: `failfast-${process.pid}`,
  });
});

after(async () => {
  await stack.close();
  await redis.kill();
  rmSync(dir, { recursive: true, force: true });
});

/** Milliseconds until the health status is `want` (polled every 25 ms), or -1 after `limitMs`. */
async function msUntil(h: HealthClient, want: string, limitMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    const s = await healthStatus(h).catch(() => 'error');
    if (s === want) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 25));
  }
  return -1;
}

void test('Redis killed: NOT_SERVING ≤ 1 s, new Ingest UNAVAILABLE ≤ 2 s, SERVING ≤ 1 s after return, no acked event lost', async (t) => {
  const { client: c, gateway } = stack;
  const user = 'kill-user';
  const events = (from: number, to: number) =>
    Array.from({ length: to - from }, (_, i) => ({
      event_id: `e${from + i}`,
      user_id: user,
      item_id: '002',
      timestamp_ms: 1_700_000_000_000 + from + i,
    }));
  const first = await ingest(c, events(0, 50));
  assert.equal(first.error, undefined);
  const acked = first.acks.filter((a) => a.status === 'STATUS_ACCEPTED').length;
  assert.equal(acked, 50);

  const h = healthClient(gateway.address);
  assert.ok((await msUntil(h, 'SERVING', 5_000)) >= 0, 'SERVING before the kill');
  await redis.kill();
  const notServingMs = await msUntil(h, 'NOT_SERVING', 3_000);
  assert.ok(notServingMs >= 0 && notServingMs <= 1_000, `NOT_SERVING after ${notServingMs} ms`);

  const started = Date.now();
  const during = await ingest(c, events(50, 51));
  const failedMs = Date.now() - started;
  assert.equal(during.error?.code, status.UNAVAILABLE);
  assert.ok(failedMs <= 2_000, `Ingest failed after ${failedMs} ms`);
  assert.doesNotMatch(during.error?.details ?? '', /127\.0\.0\.1|:\d{2,5}\b|ECONNREFUSED|\//);

  redis = await startOwnRedis(dir, port);
  const servingMs = await msUntil(h, 'SERVING', 3_000);
  assert.ok(servingMs >= 0 && servingMs <= 1_000, `SERVING again after ${servingMs} ms`);
  t.diagnostic(
    `NOT_SERVING after ${notServingMs} ms; Ingest UNAVAILABLE after ${failedMs} ms; SERVING ${servingMs} ms after Redis accepts again`,
  );
  const entries = await c.getMemory(user);
  const kept = new Set(entries.map((e) => e.event_id));
  for (let i = 0; i < 50; i++) assert.ok(kept.has(`e${i}`), `acked event e${i} kept`);
  h.close();
});

void test("a store read gives up when the caller's deadline fires, before the command timeout (Redis hung)", async () => {
  const store = new RedisMemoryStore({
    url: `redis://127.0.0.1:${port}`,
    prefix: `failfast-read-${process.pid}`,
    connection: { commandTimeoutMs: 5_000 },
  });
  try {
    assert.equal(await store.ready(), true);
    redis.process.kill('SIGSTOP');
    const started = Date.now();
    const error = await store.read('u', AbortSignal.timeout(150)).catch((e: unknown) => e);
    const ms = Date.now() - started;
    assert.ok(error instanceof AppError && error.code === 'DEADLINE_EXCEEDED', String(error));
    assert.ok(ms < 1_000, `gave up after ${ms} ms`);
  } finally {
    redis.process.kill('SIGCONT');
    await store.close();
  }
});
