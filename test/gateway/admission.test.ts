/** Per-gateway bounds: one Recommend over the bound is refused at once with RESOURCE_EXHAUSTED and a RetryInfo. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { Admission } from '../../src/gateway/api/admission.js';
import { AppError } from '../../src/shared/errors.js';
import { retryDelayOf, toGrpcStatus } from '../../src/shared/grpc-status.js';

void test('Recommends beyond the bound are refused at once with a retry hint; room frees as calls finish', async () => {
  const admission = new Admission({ maxRecommends: 2, maxIngestEvents: 10, retryAfterMs: 250 });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const running = [admission.recommend(() => gate), admission.recommend(() => gate)];
  const refused = await admission.recommend(() => Promise.resolve('ran')).catch((e: unknown) => e);
  assert.ok(refused instanceof AppError && refused.code === 'RESOURCE_EXHAUSTED');
  const st = toGrpcStatus(refused);
  assert.equal(st.code, status.RESOURCE_EXHAUSTED);
  const details = st.metadata?.get('grpc-status-details-bin')[0];
  assert.ok(details instanceof Buffer);
  assert.equal(retryDelayOf(details), 250);
  release();
  await Promise.all(running);
  assert.equal(await admission.recommend(() => Promise.resolve('ran')), 'ran');
});

void test('Ingest: streams pause at the bound and resume when events finish; new streams are refused meanwhile', () => {
  const admission = new Admission({ maxRecommends: 1, maxIngestEvents: 2 });
  let resumed = 0;
  const resume = () => resumed++;
  assert.equal(admission.ingestStarted(resume), false);
  assert.equal(admission.ingestStarted(resume), true, 'at the bound: pause');
  assert.throws(
    () => admission.admitIngestStream(),
    (e: AppError) => e.code === 'RESOURCE_EXHAUSTED',
  );
  admission.ingestFinished();
  assert.equal(resumed, 1);
  admission.admitIngestStream();
});
