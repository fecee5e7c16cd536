import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createHistogram,
  decodeHistogram,
  encodeHistogram,
  recordMs,
  summarize,
} from '../../src/bench/histogram.js';

void test('percentiles of a known distribution, within HdrHistogram precision', () => {
  const histogram = createHistogram();
  for (let i = 1; i <= 1000; i += 1) recordMs(histogram, i / 100); // 0.01 .. 10 ms
  const s = summarize(histogram);
  assert.equal(s.count, 1000);
  assert.ok(Math.abs(s.p50_ms - 5) < 0.01, `p50 ${s.p50_ms}`);
  assert.ok(Math.abs(s.p99_ms - 9.9) < 0.01, `p99 ${s.p99_ms}`);
  assert.ok(Math.abs(s.max_ms - 10) < 0.01, `max ${s.max_ms}`);
  assert.ok(Math.abs(s.mean_ms - 5.005) < 0.01, `mean ${s.mean_ms}`);
});

void test('an encoded histogram decodes to the same percentiles (it crosses the process boundary this way)', () => {
  const histogram = createHistogram();
  for (let i = 0; i < 500; i += 1) recordMs(histogram, 0.2 + (i % 50) * 0.1);
  const decoded = decodeHistogram(encodeHistogram(histogram));
  assert.deepEqual(summarize(decoded), summarize(histogram));
});

void test('an empty histogram summarises to zeros, and sub-nanosecond values still count', () => {
  assert.equal(summarize(createHistogram()).count, 0);
  const histogram = createHistogram();
  recordMs(histogram, 0);
  assert.equal(summarize(histogram).count, 1);
});
