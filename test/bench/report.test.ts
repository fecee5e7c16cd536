import { test } from 'node:test';
import assert from 'node:assert/strict';
import { emptyReport, finalizeReport, renderMarkdown, type SweepPoint } from '../../src/bench/report.js';
import type { LatencySummary } from '../../src/bench/histogram.js';

const lat = (p50: number, p99: number): LatencySummary => ({
  count: 100,
  mean_ms: p50,
  p50_ms: p50,
  p95_ms: p99,
  p99_ms: p99,
  p999_ms: p99,
  max_ms: p99,
});

const sweep = (rps: number[], overhead?: LatencySummary): SweepPoint[] =>
  [1, 4, 16, 64].map((concurrency, i) => ({
    concurrency,
    rps: rps[i] ?? 0,
    latency: lat(1, 2),
    errors: 0,
    ...(overhead === undefined ? {} : { overhead }),
  }));

void test('headline figures come from c=64 (throughput) and c=1 (overhead), with ratios and target checks', () => {
  const report = emptyReport({ mode: 'quick', cpus: 2 });
  report.sweep.echo = sweep([1000, 3000, 4000, 5000]);
  report.sweep.recommend = sweep([400, 1200, 2000, 2400], lat(0.8, 2.5));
  report.sweep.ingest.push({
    store: 'lmdb',
    mode: 'closed 4x64',
    eps: 12_345,
    ack_latency: lat(3, 9),
    accepted: 1,
    rejected: 0,
    errors: 0,
  });
  report.sweep.ingest.push({
    store: 'lmdb',
    mode: 'batch 4x64/16',
    eps: 21_000,
    ack_latency: lat(20, 60),
    accepted: 1,
    rejected: 0,
    errors: 0,
  });
  report.sweep.import.push(
    {
      store: 'lmdb',
      source: 'synthetic 500x100',
      rows: 50_000,
      accepted: 50_000,
      rejected: 0,
      raw_s: 2,
      raw_eps: 25_000,
      users: 500,
      encode_s: 10,
      encoded_elements: 50_000,
      encode_elements_per_s: 5_000,
      encode_users_per_s: 50,
    },
    {
      store: 'redis',
      source: 'synthetic 500x100',
      rows: 50_000,
      accepted: 50_000,
      rejected: 0,
      raw_s: 4,
      raw_eps: 12_500,
      users: 500,
    },
  );
  report.retriever_p99_us = 150;
  const latency = { count: 10, mean_ms: 1, p50_ms: 1, p95_ms: 1, p99_ms: 2, p999_ms: 2, max_ms: 2 };
  report.retriever.push({
    implementation: 'concurrent requests in one run',
    elements: 90,
    d_model: 64,
    calls: 10,
    latency,
    p50_us: 1000,
    p99_us: 2000,
    requests_per_run: 64,
    us_per_request: 16.2,
    cpu_us_per_request: 15.9,
  });
  report.sweep.echo[3]!.server_cpu_ms_per_request = 0.05;
  report.sweep.recommend[3]!.server_cpu_ms_per_request = 0.12;
  finalizeReport(report);
  assert.equal(report.echo_rps, 5000);
  assert.equal(report.recommend_rps, 2400);
  assert.equal(report.recommend_to_echo_ratio, 0.48);
  assert.equal(report.gateway_cpu_ms_per_recommend, 0.12);
  assert.equal(report.echo_server_cpu_ms_per_call, 0.05);
  assert.equal(report.gateway_to_echo_cpu_ratio, 2.4);
  assert.equal(report.recommend_to_model_server_ratio, null, 'no model-server figure in this run');
  assert.equal(report.overhead_p50_ms, 0.8);
  assert.equal(report.overhead_p99_ms, 2.5);
  assert.equal(report.ingest_eps, 12_345);
  assert.equal(report.ingest_p99_ms, 9);
  assert.equal(report.ingest_batch_eps, 21_000, 'IngestBatch figures come from the batched closed loop');
  assert.equal(report.ingest_batch_p99_ms, 60);
  assert.equal(report.ingest_redis_batch_eps, null);
  assert.equal(report.import_eps, 25_000);
  assert.equal(report.import_redis_eps, 12_500);
  assert.equal(report.import_encode_elements_per_s, 5_000);
  assert.deepEqual(
    report.targets.map((t) => t.met),
    // ..., ingest lmdb, Redis, Ingest ack p99, IngestBatch lmdb, Redis, IngestBatch ack p99, import, retriever
    [true, null, false, false, false, false, null, true, true, null, false, true, true],
  );
  const markdown = renderMarkdown(report);
  assert.match(markdown, /\| 64 \| 5000 \| 1\.00 \| 2\.00 \| 2400 \| .* \| 0\.480 \|/);
  assert.match(markdown, /retriever p99 .* \| yes \|/);
  assert.match(
    markdown,
    /retriever, 64 requests of 90 elements per run: concurrent requests in one run .* \| 1000\.0 \/ 2000\.0; 16\.2, 15\.9 \|/,
  );
  assert.match(markdown, /gateway per Recommend \/ echo server per call \(ms\) \| 0\.120 \/ 0\.050 = 2\.40/);
  assert.match(markdown, /lmdb \| closed 4x64 \| 12345/);
  assert.match(markdown, /lmdb \| batch 4x64\/16 \| 21000/);
  assert.match(markdown, /\| lmdb \| 50000 \| 2\.000 \| 25000 \| 500 \| 10\.000 \| 50000 \| 5000 \| 50 \|/);
  assert.match(markdown, /\| redis \| 50000 \| 4\.000 \| 12500 \| 500 \| n\/a \| n\/a \| n\/a \|/);
});

void test('a run without gateway figures reports n/a rather than zeros', () => {
  const report = finalizeReport(emptyReport({}));
  assert.equal(report.recommend_rps, null);
  assert.equal(report.targets[0]?.met, null);
  assert.match(renderMarkdown(report), /recommend_rps \/ echo_rps at c=64 \| >= 0\.5 \| n\/a \| n\/a/);
});

void test('every markdown table row has as many cells as its header', () => {
  const report = emptyReport({ mode: 'quick', cpus: 2 });
  report.sweep.echo = sweep([1000, 3000, 4000, 5000]);
  report.sweep.recommend = sweep([400, 1200, 2000, 2400], lat(0.8, 2.5));
  report.sweep.model_server = sweep([100, 200, 300, 400]);
  report.sweep.ingest.push({
    store: 'lmdb',
    mode: 'closed 4x64',
    eps: 1,
    ack_latency: lat(3, 9),
    accepted: 1,
    rejected: 0,
    errors: 0,
    gateway_cpu_ms_per_event: 0.2,
    model_server_cpu_ms_per_event: 0.05,
  });
  report.sweep.import.push({
    store: 'redis',
    source: 'synthetic 500x100',
    rows: 1,
    accepted: 1,
    rejected: 0,
    raw_s: 1,
    raw_eps: 1,
    users: 1,
  });
  const lines = renderMarkdown(finalizeReport(report)).split('\n');
  let header = -1;
  for (const line of lines) {
    if (!line.startsWith('|')) {
      header = -1;
      continue;
    }
    const cells = line.split(' | ').length;
    if (header < 0) header = cells;
    else assert.equal(cells, header, line);
  }
});
