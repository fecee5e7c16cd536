/** The memory model over a stored history: windows, encoding keys, staleness and the memory range. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encKeyOf,
  isEncoded,
  memoryRange,
  staleElements,
  topScored,
  windowTokens,
  type MemoryModel,
} from '../../src/gateway/domain/memory.js';
import type { StoredEntry } from '../../src/gateway/domain/ports.js';

const model: MemoryModel = { modelVersion: 'v1', window: 3, maxMemory: 4, bos: 1, maxHistory: 100 };
const history = (n: number): StoredEntry[] =>
  Array.from({ length: n }, (_, i) => ({
    eventId: `e${i}`,
    itemId: `i${i}`,
    token: 10 + i,
    timestampMs: i,
    seq: i + 1,
  }));

void test('element m is encoded over the K-item window ending at m', () => {
  const h = history(5);
  assert.deepEqual(windowTokens(h, 0, 3), [10]);
  assert.deepEqual(windowTokens(h, 4, 3), [12, 13, 14]);
  const jobs = staleElements(h, model);
  assert.equal(jobs.length, 5);
  assert.deepEqual(
    jobs[0],
    { seq: 5, timestampMs: 4, prompt: [1, 12, 13, 14], encKey: 'v1|12,13,14' },
    'newest first',
  );
});

void test('an encoding counts only for the current version and the current window', () => {
  const h = history(4);
  h[3]!.vector = new Float32Array(2);
  h[3]!.encKey = encKeyOf('v1', [11, 12, 13]);
  assert.equal(isEncoded(h, 3, model), true);
  assert.equal(isEncoded(h, 3, { ...model, modelVersion: 'v2' }), false, 'another bundle version is stale');
  // A late event inserted before element 3 changes its window.
  const late: StoredEntry = { eventId: 'late', itemId: 'x', token: 99, timestampMs: 1, seq: 9 };
  const withLate = [h[0]!, h[1]!, late, h[2]!, h[3]!];
  assert.equal(isEncoded(withLate, 4, model), false);
  assert.deepEqual(
    staleElements(withLate, model).map((j) => j.seq),
    [4, 3, 9, 2, 1],
  );
});

void test('memory = every element except the newest K, at most maxMemory', () => {
  assert.deepEqual(memoryRange(0, model), { start: 0, end: 0 });
  assert.deepEqual(memoryRange(3, model), { start: 0, end: 0 });
  assert.deepEqual(memoryRange(5, model), { start: 0, end: 2 });
  assert.deepEqual(memoryRange(10, model), { start: 3, end: 7 });
});

void test('the retrieved elements are the k best scores, the newer first on a tie, as a full sort orders them', () => {
  const h = history(40);
  // Seeded pseudo-random scores with many ties (a tenth of a step), against the sort Recommend used before.
  let x = 7;
  const scores = Float32Array.from(h, () => ((x = (x * 48271) % 2147483647) % 10) / 10);
  const sorted = h
    .map((_, i) => i)
    .sort((a, b) => (scores[b] as number) - (scores[a] as number) || h[b]!.timestampMs - h[a]!.timestampMs);
  for (const k of [1, 2, 3, 7, 40, 50])
    assert.deepEqual(topScored(scores, h, k), sorted.slice(0, k), `k=${k}`);
  assert.deepEqual(topScored(scores, h, 0), []);
  assert.deepEqual(topScored(new Float32Array(0), [], 3), []);
});
