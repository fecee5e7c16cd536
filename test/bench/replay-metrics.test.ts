import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prepare } from '../../src/replay/dataset.js';
import {
  compareWithOffline,
  perSample,
  rankAgreement,
  rankIn,
  summarizeRanks,
} from '../../src/replay/metrics.js';

void test('dataset preparation matches the toolchain: k-core filter, stable time order, numeric id order, fingerprint', () => {
  // Expected values computed with training/automr/data.py prepare(..., min_item=2, min_user=3).
  const prepared = prepare(
    {
      users: ['10', '2', '2', '10', '2', '10', '3', '10', '2', '3'],
      items: ['7', '7', '11', '11', '5', '7', '7', '5', '7', '9'],
      times: [100, 50, 50, 90, 40, 100, 1, 80, 60, 2],
    },
    2,
    3,
  );
  assert.deepEqual(prepared.users, ['2', '10']);
  assert.deepEqual(prepared.catalogIds, ['5', '7', '11']);
  assert.deepEqual(prepared.itemSeqs, [
    ['5', '7', '11', '7'],
    ['5', '11', '7', '7'],
  ]);
  assert.deepEqual(prepared.timeSeqs, [
    [40, 50, 50, 60],
    [80, 90, 100, 100],
  ]);
  assert.equal(prepared.fingerprint, '65c8d9c4b76dfe99a2bf648f210fb034457d2079f0f3cae014b6ad1a0c6765ac');
});

void test('per-sample metrics follow the offline definitions', () => {
  assert.deepEqual(perSample(0), { 'recall@1': 1, 'recall@5': 1, 'recall@10': 1, 'ndcg@5': 1, 'ndcg@10': 1 });
  const r4 = perSample(4);
  assert.equal(r4['recall@1'], 0);
  assert.equal(r4['recall@5'], 1);
  assert.ok(Math.abs(r4['ndcg@5'] - 1 / Math.log2(6)) < 1e-12);
  const r7 = perSample(7);
  assert.equal(r7['ndcg@5'], 0);
  assert.ok(Math.abs(r7['ndcg@10'] - 1 / Math.log2(9)) < 1e-12);
  assert.deepEqual(perSample(10), {
    'recall@1': 0,
    'recall@5': 0,
    'recall@10': 0,
    'ndcg@5': 0,
    'ndcg@10': 0,
  });
});

void test('means over samples, a target absent from the served list is a miss, and the interval check', () => {
  const served = ['a', 'b', 'c'];
  assert.equal(rankIn(served, 'b'), 1);
  assert.equal(rankIn(served, 'z'), 3);
  const metrics = summarizeRanks([0, 1, 3, 100]);
  assert.equal(metrics['recall@1'], 0.25);
  assert.equal(metrics['recall@5'], 0.75);
  assert.ok(Math.abs(metrics['ndcg@10'] - (1 + 1 / Math.log2(3) + 1 / Math.log2(5)) / 4) < 1e-12);
  const comparison = compareWithOffline(metrics, {
    method: 'automr',
    n: 4,
    'recall@1': 0.2,
    'recall@5': 0.7,
    'recall@10': 0.75,
    'ndcg@5': 0.5,
    'ndcg@10': 0.5,
    ci95: { 'recall@1': [0.1, 0.3], 'recall@5': [0.8, 0.9], 'recall@10': [0.7, 0.8] },
  });
  assert.deepEqual(
    comparison.map((c) => c.within),
    [true, false, true, null, null],
  );
  assert.deepEqual(rankAgreement([0, 5, 150, 2], [0, 6, 120, 2], 100), {
    samples: 4,
    sameRank: 3,
    sameHit1: 4,
    sameHit10: 4,
  });
});
