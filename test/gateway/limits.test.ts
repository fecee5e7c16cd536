/**
 * Bounded state and well-formed ids: the LMDB idempotency index holds no more keys per user than the history it
 * guards, and ids that are not valid UTF-8 are refused (INVALID_ARGUMENT / REJECTED) instead of aliasing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { rmSync } from 'node:fs';
import { Client, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { open } from 'lmdb';
import { LmdbMemoryStore } from '../../src/gateway/adapters/lmdb-store.js';
import { loadRecommenderProto } from '../../src/shared/recommender-proto.js';
import type { IngestResponse__Output } from '../../src/generated/automr/v1/IngestResponse.js';
import { startStack, tempDir, type Stack } from './helpers.js';

let stack: Stack;
before(async () => {
  stack = await startStack('automr-limits-');
});
after(() => stack.close());

void test('lmdb: the idempotency index is capped with the history; a resend of a trimmed event changes nothing', async () => {
  const dir = tempDir('automr-lmdb-idem-');
  try {
    const maxHistory = 10;
    const context = 2;
    let store = new LmdbMemoryStore(dir);
    for (let i = 0; i < 60; i++)
      await store.append(
        { userId: 'u', eventId: `e${i}`, itemId: 'x', token: 5, timestampMs: 1000 + i },
        maxHistory,
        context,
      );
    const before = (await store.read('u')).map((e) => e.eventId);
    assert.equal(before.length, maxHistory + context);
    await store.close();

    const db = open({
      path: path.join(dir, 'memory.mdb'),
      sharedStructuresKey: Symbol.for('automr.structures'),
    });
    const keys = db.getKeysCount({ start: ['i', 'u'], end: ['i', 'u', '\uffff'] });
    await db.close();
    assert.equal(keys, maxHistory + context, 'one idempotency key per stored entry, not per event ever seen');

    store = new LmdbMemoryStore(dir);
    const kept = await store.append(
      { userId: 'u', eventId: 'e59', itemId: 'x', token: 5, timestampMs: 1059 },
      maxHistory,
      context,
    );
    assert.equal(kept.status, 'duplicate', 'a stored event is still a duplicate');
    const old = await store.append(
      { userId: 'u', eventId: 'e3', itemId: 'x', token: 5, timestampMs: 1003 },
      maxHistory,
      context,
    );
    assert.equal(old.status, 'accepted');
    assert.equal(old.dropped, true, 'beyond the history cap');
    assert.deepEqual(
      (await store.read('u')).map((e) => e.eventId),
      before,
      'the history is unchanged',
    );
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Protobuf bytes of a message whose string fields are given as raw bytes (field number → bytes). */
function message(fields: [number, Buffer][], varints: [number, number][] = []): Buffer {
  const parts: Buffer[] = [];
  for (const [n, bytes] of fields) parts.push(Buffer.from([(n << 3) | 2, bytes.length]), bytes);
  for (const [n, v] of varints) {
    const out = [(n << 3) | 0];
    let x = v;
    while (x >= 0x80) {
      out.push((x % 0x80) | 0x80);
      x = Math.floor(x / 0x80);
    }
    out.push(x);
    parts.push(Buffer.from(out));
  }
  return Buffer.concat(parts);
}

const INVALID_UTF8 = Buffer.from([0x75, 0xff, 0xfe]);

void test('ids that are not valid UTF-8: GetMemory INVALID_ARGUMENT, Ingest acks REJECTED', async () => {
  const raw = new Client(stack.gateway.address, credentials.createInsecure());
  const code = await new Promise<number>((resolve) => {
    raw.makeUnaryRequest(
      '/automr.v1.RecommenderService/GetMemory',
      (b: Buffer) => b,
      (b: Buffer) => b,
      message([[1, INVALID_UTF8]]),
      (error: ServiceError | null) => resolve(error?.code ?? status.OK),
    );
  });
  assert.equal(code, status.INVALID_ARGUMENT);

  const ingestMethod = loadRecommenderProto().definition['automr.v1.RecommenderService'] as unknown as {
    Ingest: { responseDeserialize: (b: Buffer) => IngestResponse__Output };
  };
  const ack = await new Promise<IngestResponse__Output>((resolve, reject) => {
    const call = raw.makeBidiStreamRequest(
      '/automr.v1.RecommenderService/Ingest',
      (b: Buffer) => b,
      ingestMethod.Ingest.responseDeserialize,
    );
    call.on('data', (a: IngestResponse__Output) => {
      resolve(a);
      call.end();
    });
    call.on('error', reject);
    call.write(
      message(
        [
          [1, Buffer.from('ev-1')],
          [2, INVALID_UTF8],
          [3, Buffer.from('002')],
        ],
        [[4, 1_700_000_000_000]],
      ),
    );
  });
  assert.equal(ack.status, 'STATUS_REJECTED');
  assert.match(ack.message, /UTF-8/);
  raw.close();
});

void test('message size limits per method: Recommend takes large lists, the others small messages', async () => {
  const c = stack.client;
  const codeOf = (p: Promise<unknown>) =>
    p.then(
      () => status.OK,
      (e: ServiceError) => e.code,
    );
  assert.equal(await codeOf(c.getMemory('x'.repeat(300))), status.INVALID_ARGUMENT, 'parsed, then refused');
  assert.equal(await codeOf(c.getMemory('x'.repeat(70_000))), status.RESOURCE_EXHAUSTED, 'over 64 KiB');
  const ids = (n: number) => Array.from({ length: n }, (_, i) => `item-${i}-${'p'.repeat(90)}`);
  const big = await codeOf(c.recommend({ user_id: 'u', top_n: 3, exclude_item_ids: ids(1_000) }));
  assert.notEqual(big, status.RESOURCE_EXHAUSTED, '~100 KB Recommend is within its limit');
  const huge = await codeOf(c.recommend({ user_id: 'u', top_n: 3, exclude_item_ids: ids(12_000) }));
  assert.equal(huge, status.RESOURCE_EXHAUSTED, 'over 1 MiB');
});
