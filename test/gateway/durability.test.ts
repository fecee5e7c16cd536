/** An acked event survives kill -9: a real gateway child ingests, is SIGKILLed right after acks, the store is reopened. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { LmdbMemoryStore } from '../../src/gateway/adapters/lmdb-store.js';
import type { IngestResponse__Output } from '../../src/generated/automr/v1/IngestResponse.js';
import { BUNDLE_DIR, client, healthClient, healthStatus, spawnGateway, tempDir } from './helpers.js';

void test('every event acked before kill -9 is in the embedded store after restart', async () => {
  const dataDir = tempDir('automr-durable-');
  // No model server: ingest needs none (encoding is retried later and never blocks acks).
  const gw = await spawnGateway({
    AUTOMR_DATA_DIR: dataDir,
    AUTOMR_MODEL_SERVER: '127.0.0.1:1',
    AUTOMR_BUNDLE: BUNDLE_DIR,
    AUTOMR_MAX_HISTORY: '5000',
  });
  const acked: string[] = [];
  try {
    const c = client(gw.address);
    const health = healthClient(gw.address);
    // Without a ready model server the gateway is up but not SERVING.
    assert.equal(await healthStatus(health), 'NOT_SERVING');
    assert.equal(await healthStatus(health, 'automr.v1.RecommenderService'), 'NOT_SERVING');
    health.close();
    const killAfter = 150;
    await new Promise<void>((resolve) => {
      const call = c.ingestStream();
      call.on('data', (ack: IngestResponse__Output) => {
        assert.equal(ack.status, 'STATUS_ACCEPTED');
        acked.push(ack.event_id);
        if (acked.length === killAfter) gw.child.kill('SIGKILL');
      });
      call.on('error', () => resolve());
      call.on('end', () => resolve());
      for (let i = 0; i < 2000; i++) {
        call.write({
          event_id: `d${i}`,
          user_id: `user-${i % 7}`,
          item_id: '001',
          timestamp_ms: 1_700_000_000_000 + i,
        });
      }
    });
    c.close();
    assert.equal(await gw.exited, null, 'killed by signal');
    assert.ok(acked.length >= killAfter);
  } finally {
    if (gw.child.exitCode === null && gw.child.signalCode === null) gw.child.kill('SIGKILL');
  }

  const store = new LmdbMemoryStore(dataDir);
  try {
    const stored = new Set<string>();
    for (let u = 0; u < 7; u++) for (const e of await store.read(`user-${u}`)) stored.add(e.eventId);
    const lost = acked.filter((id) => !stored.has(id));
    assert.deepEqual(lost, [], 'acked events lost');
  } finally {
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
