/**
 * An acked event survives kill -9: a real gateway child ingests (Ingest, and IngestBatch with many acks to a message),
 * is SIGKILLed right after acks, the store is reopened.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { LmdbMemoryStore } from '../../src/gateway/adapters/lmdb-store.js';
import type { IngestRequest } from '../../src/generated/automr/v1/IngestRequest.js';
import type { IngestResponse__Output } from '../../src/generated/automr/v1/IngestResponse.js';
import type { IngestBatchResponse__Output } from '../../src/generated/automr/v1/IngestBatchResponse.js';
import { BUNDLE_DIR, client, healthClient, healthStatus, spawnGateway, tempDir } from './helpers.js';

type Acks = (
  onAck: (ack: IngestResponse__Output) => void,
  done: () => void,
) => (event: IngestRequest) => void;

/** Ingest: one event per message each way. */
const perEvent =
  (c: ReturnType<typeof client>): Acks =>
  (onAck, done) => {
    const call = c.ingestStream();
    call.on('data', onAck);
    call.on('error', done);
    call.on('end', done);
    return (event) => call.write(event);
  };

/** IngestBatch: 50 events to a message (written when full), acks several to a message. */
const batched =
  (c: ReturnType<typeof client>): Acks =>
  (onAck, done) => {
    const call = c.ingestBatchStream();
    call.on('data', (message: IngestBatchResponse__Output) => message.acks.forEach(onAck));
    call.on('error', done);
    call.on('end', done);
    let events: IngestRequest[] = [];
    return (event) => {
      events.push(event);
      if (events.length < 50) return;
      call.write({ events });
      events = [];
    };
  };

for (const [method, open] of [
  ['Ingest', perEvent],
  ['IngestBatch', batched],
] as const)
  void test(`every event acked (${method}) before kill -9 is in the embedded store after restart`, () =>
    ackedSurviveKill(open));

async function ackedSurviveKill(open: (c: ReturnType<typeof client>) => Acks): Promise<void> {
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
      const send = open(c)(
        (ack) => {
          assert.equal(ack.status, 'STATUS_ACCEPTED');
          acked.push(ack.event_id);
          if (acked.length === killAfter) gw.child.kill('SIGKILL');
        },
        () => resolve(),
      );
      for (let i = 0; i < 2000; i++) {
        send({
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
}
