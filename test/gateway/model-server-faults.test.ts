/**
 * The model server (the real CLI in a child process) hangs (SIGSTOP) or dies (SIGKILL) under a running gateway:
 * health turns NOT_SERVING, Recommend fails fast with UNAVAILABLE once the breaker is open and never names an
 * address; after a restart health is SERVING again and the encoder catches up within 2 s.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import type { RunningGateway } from '../../src/gateway/server.js';
import { retryDelayOf } from '../../src/shared/grpc-status.js';
import type { RecommenderClient } from '../../src/client/recommender-client.js';
import { freePort } from '../own-redis.js';
import {
  client,
  healthClient,
  healthStatus,
  ingest,
  recommend,
  spawnModelServer,
  startGatewayOn,
  type HealthClient,
} from './helpers.js';

let port: number;
let modelServer: ChildProcess;
let gateway: RunningGateway;
let dataDir: string;
let c: RecommenderClient;
let h: HealthClient;

async function msUntil(want: string, limitMs: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if ((await healthStatus(h).catch(() => 'error')) === want) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 25));
  }
  return -1;
}

before(async () => {
  port = await freePort();
  modelServer = await spawnModelServer(port);
  ({ gateway, dataDir } = await startGatewayOn(`127.0.0.1:${port}`, 'automr-ms-faults-', {
    breakerResetMs: 1000,
  }));
  c = client(gateway.address);
  h = healthClient(gateway.address);
});

after(async () => {
  c.close();
  h.close();
  await gateway.close();
  if (modelServer.exitCode === null && modelServer.signalCode === null) {
    modelServer.kill('SIGKILL');
    await once(modelServer, 'exit');
  }
  rmSync(dataDir, { recursive: true, force: true });
});

const events = (user: string, from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => ({
    event_id: `${user}-${from + i}`,
    user_id: user,
    item_id: '002',
    timestamp_ms: 1_700_000_000_000 + from + i,
  }));

const ADDRESS = /127\.0\.0\.1|localhost|:\d{2,5}\b|ECONNREFUSED|\//;

void test('SIGSTOP: NOT_SERVING within 1 s, then Recommend fails UNAVAILABLE in milliseconds with a retry hint', async (t) => {
  assert.ok((await msUntil('SERVING', 10_000)) >= 0);
  assert.equal((await ingest(c, events('stop', 0, 12))).error, undefined);
  assert.equal((await recommend(c, 'stop', 5)).error, undefined);

  modelServer.kill('SIGSTOP');
  try {
    const notServingMs = await msUntil('NOT_SERVING', 3_000);
    assert.ok(notServingMs >= 0 && notServingMs <= 1_000, `NOT_SERVING after ${notServingMs} ms`);
    const started = performance.now();
    const r = await recommend(c, 'stop', 5);
    const failMs = performance.now() - started;
    assert.equal(r.error?.code, status.UNAVAILABLE);
    assert.equal(r.error?.details, 'model server unavailable');
    const retry = r.error?.metadata.get('grpc-status-details-bin')[0];
    assert.ok(
      retry instanceof Buffer && retryDelayOf(retry) === 1000,
      'google.rpc.RetryInfo with the breaker reset',
    );
    t.diagnostic(`NOT_SERVING ${notServingMs} ms after SIGSTOP; Recommend failed in ${failMs.toFixed(1)} ms`);
    assert.ok(failMs < 250, `Recommend failed after ${failMs} ms`);
  } finally {
    modelServer.kill('SIGCONT');
  }
  const servingMs = await msUntil('SERVING', 3_000);
  assert.ok(servingMs >= 0 && servingMs <= 1_000, `SERVING ${servingMs} ms after SIGCONT`);
  assert.equal((await recommend(c, 'stop', 5)).error, undefined);
});

void test('SIGKILL: statuses name no address; after a restart the encoder catches up within 2 s', async (t) => {
  modelServer.kill('SIGKILL');
  await once(modelServer, 'exit');
  const right = await recommend(c, 'kill', 5);
  assert.equal(right.error?.code, status.UNAVAILABLE);
  assert.doesNotMatch(right.error?.details ?? '', ADDRESS);
  assert.ok((await msUntil('NOT_SERVING', 3_000)) >= 0);
  // Events are acked (durable) while the model server is away; their encodings wait.
  const acked = await ingest(c, events('kill', 0, 12));
  assert.equal(acked.error, undefined);
  const later = await recommend(c, 'kill', 5);
  assert.equal(later.error?.code, status.UNAVAILABLE);
  assert.doesNotMatch(later.error?.details ?? '', ADDRESS);

  // Let the encoder's backoff grow (retries every 0.1, 0.2, 0.4, ... s) before the model server returns.
  await new Promise((r) => setTimeout(r, 3_000));
  modelServer = await spawnModelServer(port);
  const back = Date.now();
  const getMemory = async () => ({ entries: await c.getMemory('kill') });
  let encodedMs = -1;
  while (Date.now() - back < 5_000) {
    const m = await getMemory();
    if (m.entries.length === 12 && m.entries.every((e) => e.encoded)) {
      encodedMs = Date.now() - back;
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  t.diagnostic(`encodings complete ${encodedMs} ms after the model server was back`);
  assert.ok(encodedMs >= 0 && encodedMs <= 2_000, `encoded ${encodedMs} ms after recovery`);
});
