/** SIGTERM on the real gateway CLI: health turns NOT_SERVING, the open Ingest stream finishes, exit code 0. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { IngestResponse__Output } from '../../src/generated/automr/v1/IngestResponse.js';
import { BUNDLE_DIR, client, healthClient, MODELS_DIR, spawnGateway, tempDir } from './helpers.js';

let modelServer: RunningModelServer;
let dataDir: string;

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

void test('SIGTERM drains: NOT_SERVING, in-flight stream completes, exit 0', async () => {
  const gw = await spawnGateway({
    AUTOMR_DATA_DIR: dataDir,
    AUTOMR_MODEL_SERVER: modelServer.address,
    AUTOMR_BUNDLE: BUNDLE_DIR,
    AUTOMR_DRAIN_TIMEOUT_MS: '5000',
  });
  try {
    const health = healthClient(gw.address);
    const statuses: string[] = [];
    const watch = health.Watch({ service: 'automr.v1.RecommenderService' });
    const sawNotServing = new Promise<void>((resolve) => {
      watch.on('data', (m: { status: string }) => {
        statuses.push(m.status);
        if (statuses.includes('SERVING') && m.status === 'NOT_SERVING') resolve();
      });
    });
    watch.on('error', () => undefined);
    const serving = new Promise<void>((resolve) => {
      const check = () => (statuses.includes('SERVING') ? resolve() : setTimeout(check, 20));
      check();
    });
    await serving;

    const c = client(gw.address);
    const acks: IngestResponse__Output[] = [];
    const call = c.ingestStream();
    const done = new Promise<string>((resolve) => {
      call.on('data', (a: IngestResponse__Output) => acks.push(a));
      call.on('end', () => resolve('end'));
      call.on('error', (e: Error) => resolve(`error ${e.message}`));
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

    gw.child.kill('SIGTERM');
    await sawNotServing;
    watch.cancel();
    // The stream opened before SIGTERM is still served until it ends.
    send(5, 10);
    call.end();
    assert.equal(await done, 'end');
    assert.equal(acks.length, 10);
    assert.ok(acks.every((a) => a.status === 'STATUS_ACCEPTED'));
    assert.equal(await gw.exited, 0, 'exit code 0 after drain');
    c.close();
    health.close();
  } finally {
    if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
  }
});
