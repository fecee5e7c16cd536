/**
 * Well-formed, bounded requests: ids that are not valid UTF-8 are refused (INVALID_ARGUMENT / REJECTED) instead of
 * aliasing, and request sizes are limited per method.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { loadRecommenderProto } from '../../src/shared/recommender-proto.js';
import type { IngestResponse__Output } from '../../src/generated/automr/v1/IngestResponse.js';
import { startStack, type Stack } from './helpers.js';

let stack: Stack;
before(async () => {
  stack = await startStack('automr-limits-');
});
after(() => stack.close());

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
