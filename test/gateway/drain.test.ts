/**
 * SIGTERM on the real gateway CLI with an open Ingest stream and a health Watch: health turns NOT_SERVING at once,
 * calls still succeed during the drain window, then the Ingest stream ends UNAVAILABLE after every durable ack was
 * sent, the Watch ends, and the process exits 0 within the window plus 1 s.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { status, type ServiceError } from '@grpc/grpc-js';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { IngestResponse__Output } from '../../src/generated/automr/v1/IngestResponse.js';
import { BUNDLE_DIR, client, healthClient, MODELS_DIR, recommend, spawnGateway, tempDir } from './helpers.js';

let modelServer: RunningModelServer;
let dataDir: string;
const WINDOW_MS = 1500;

before(async () => {
  modelServer = await startModelServer({
    repository: MODELS_DIR,
    address: '127.0.0.1:0',
    logger: silentLogger(),
  });
  dataDir = tempDir('automr-drain-');
});
after(async () => {
  await modelServer.close();
  rmSync(dataDir, { recursive: true, force: true });
});

void test('SIGTERM: NOT_SERVING at once, served during the window, streams ended, exit 0 within window + 1 s', async (t) => {
  const gw = await spawnGateway({
    AUTOMR_DATA_DIR: dataDir,
    AUTOMR_MODEL_SERVER: modelServer.address,
    AUTOMR_BUNDLE: BUNDLE_DIR,
    AUTOMR_DRAIN_WINDOW_MS: String(WINDOW_MS),
    AUTOMR_DRAIN_TIMEOUT_MS: '5000',
  });
  try {
    const health = healthClient(gw.address);
    const statuses: string[] = [];
    const watch = health.Watch({ service: 'automr.v1.RecommenderService' });
    let notServingAt = 0;
    const watchEnded = new Promise<string>((resolve) => {
      watch.on('data', (m: { status: string }) => {
        statuses.push(m.status);
        if (statuses.includes('SERVING') && m.status === 'NOT_SERVING' && notServingAt === 0)
          notServingAt = Date.now();
      });
      watch.on('end', () => resolve('end'));
      watch.on('error', (e: ServiceError) => resolve(`error ${e.code}`));
    });
    while (!statuses.includes('SERVING')) await new Promise((r) => setTimeout(r, 20));

    const c = client(gw.address);
    const acks: IngestResponse__Output[] = [];
    const call = c.ingestStream();
    const done = new Promise<{ code?: number; at: number }>((resolve) => {
      call.on('data', (a: IngestResponse__Output) => acks.push(a));
      call.on('end', () => resolve({ at: Date.now() }));
      call.on('error', (e: ServiceError) => resolve({ code: e.code, at: Date.now() }));
    });
    const send = (from: number, to: number) => {
      for (let i = from; i < to; i++)
        call.write({
          event_id: `s${i}`,
          user_id: 'drain-user',
          item_id: '002',
          timestamp_ms: 1_700_000_000_000 + i,
        });
    };
    send(0, 5);
    while (acks.length < 5) await new Promise((r) => setTimeout(r, 10));

    const killedAt = Date.now();
    gw.child.kill('SIGTERM');
    while (notServingAt === 0) await new Promise((r) => setTimeout(r, 5));
    const notServingMs = notServingAt - killedAt;
    // Within the window: the open stream and new calls are still served.
    send(5, 10);
    while (acks.length < 10) await new Promise((r) => setTimeout(r, 10));
    const during = await recommend(c, 'drain-user', 3);
    assert.equal(during.error, undefined, 'Recommend succeeds during the drain window');

    const ingestEnd = await done;
    assert.equal(ingestEnd.code, status.UNAVAILABLE, 'Ingest ends UNAVAILABLE after the window');
    assert.equal(acks.length, 10, 'every ack was delivered before the stream ended');
    assert.ok(acks.every((a) => a.status === 'STATUS_ACCEPTED'));
    assert.ok(ingestEnd.at - killedAt >= WINDOW_MS - 100, 'the stream was kept through the window');
    assert.match(await watchEnded, /^end$|^error 0$/, 'the Watch ended');
    assert.equal(await gw.exited, 0, 'exit code 0 after drain');
    const exitMs = Date.now() - killedAt;
    t.diagnostic(
      `NOT_SERVING ${notServingMs} ms after SIGTERM; Ingest ended ${ingestEnd.at - killedAt} ms; exit ${exitMs} ms (window ${WINDOW_MS} ms)`,
    );
    assert.ok(notServingMs < 500, `NOT_SERVING after ${notServingMs} ms`);
    assert.ok(exitMs <= WINDOW_MS + 1000, `exited ${exitMs} ms after SIGTERM`);
    c.close();
    health.close();
  } finally {
    if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
  }
});
