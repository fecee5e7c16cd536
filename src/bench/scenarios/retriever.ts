/**
 * In-process retriever latency with 90 memory elements: the gateway's own `OnnxRetriever` (what Recommend
 * calls, per-call allocations included) and, as its floor, a bare onnxruntime session run with input tensors
 * allocated once and reused. Calls are back to back from one caller. Then the batched cost: 64 concurrent requests
 * submitted in one event-loop turn, which the retriever scores in one run (as at Recommend's concurrency 64), with
 * wall and CPU time per request.
 */
import { performance } from 'node:perf_hooks';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { OnnxRetriever } from '../../gateway/adapters/onnx-retriever.js';
import { createHistogram, recordMs, summarize, type LatencySummary } from '../histogram.js';
import type { RetrieverFigure } from '../report.js';
import type { BenchContext } from './context.js';

async function timeCalls(
  call: () => Promise<unknown>,
  durationMs: number,
): Promise<{ calls: number; latency: LatencySummary }> {
  const histogram = createHistogram();
  const warmupEnd = performance.now() + Math.min(500, durationMs / 4);
  while (performance.now() < warmupEnd) await call();
  const end = performance.now() + durationMs;
  let calls = 0;
  while (performance.now() < end) {
    const t0 = performance.now();
    await call();
    recordMs(histogram, performance.now() - t0);
    calls += 1;
  }
  return { calls, latency: summarize(histogram) };
}

/** Concurrent requests per run in the batched figure: Recommend's highest bench concurrency. */
const REQUESTS_PER_RUN = 64;

function figure(
  implementation: string,
  elements: number,
  d: number,
  timed: { calls: number; latency: LatencySummary },
): RetrieverFigure {
  const us = (ms: number): number => Math.round(ms * 1000 * 10) / 10;
  return {
    implementation,
    elements,
    d_model: d,
    calls: timed.calls,
    latency: timed.latency,
    p50_us: us(timed.latency.p50_ms),
    p99_us: us(timed.latency.p99_ms),
  };
}

export async function benchRetriever(
  bundleDir: string,
  elements: number,
  durationMs: number,
): Promise<RetrieverFigure[]> {
  const manifest = JSON.parse(await readFile(join(bundleDir, 'manifest.json'), 'utf8')) as {
    d_model: number;
    retriever: { file: string };
  };
  const d = manifest.d_model;
  const file = join(bundleDir, manifest.retriever.file);
  const query = new Float32Array(d).map((_, i) => Math.sin(i));
  const vectors = Array.from({ length: elements }, (_, m) =>
    new Float32Array(d).map((_, i) => Math.cos((m * d + i) * 0.37)),
  );

  const served = await OnnxRetriever.load(file, d);
  const asServed = await timeCalls(() => served.score(query, vectors), durationMs);
  const requestsBefore = served.batches.requests;
  const cpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  const batched = await timeCalls(
    () => Promise.all(Array.from({ length: REQUESTS_PER_RUN }, () => served.score(query, vectors))),
    durationMs,
  );
  const wallMs = performance.now() - wallBefore;
  const cpu = process.cpuUsage(cpuBefore);
  // Warm-up calls are inside both windows: per request over every request scored in them.
  const requests = served.batches.requests - requestsBefore;
  await served.close();

  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const memory = new Float32Array(elements * d);
  vectors.forEach((v, m) => memory.set(v, m * d));
  const feeds = {
    query: new ort.Tensor('float32', query, [1, d]),
    memory: new ort.Tensor('float32', memory, [1, elements, d]),
    memory_mask: new ort.Tensor('int64', new BigInt64Array(elements).fill(1n), [1, elements]),
  };
  const bare = await timeCalls(() => session.run(feeds), durationMs);
  await session.release();

  const perRequest = (us: number): number => Math.round((us / requests) * 10) / 10;
  return [
    figure('gateway OnnxRetriever.score (as served)', elements, d, asServed),
    figure('bare onnxruntime session.run, tensors reused', elements, d, bare),
    {
      ...figure('gateway OnnxRetriever.score, concurrent requests in one run', elements, d, batched),
      requests_per_run: REQUESTS_PER_RUN,
      us_per_request: perRequest(wallMs * 1000),
      cpu_us_per_request: perRequest(cpu.user + cpu.system),
    },
  ];
}

export async function benchRetrieverSection(ctx: BenchContext): Promise<void> {
  const figures = await benchRetriever(ctx.options.bundleDir, 90, ctx.options.quick ? 2_000 : 5_000);
  const { report } = ctx;
  report.retriever = figures;
  const [served] = figures;
  if (served !== undefined) {
    report.retriever_p50_us = served.p50_us;
    report.retriever_p99_us = served.p99_us;
  }
  for (const f of figures)
    ctx.log(
      `retriever, ${f.implementation} (90 elements): p50 ${f.p50_us} us, p99 ${f.p99_us} us over ${f.calls} calls` +
        (f.requests_per_run === undefined
          ? ''
          : ` of ${f.requests_per_run} requests; per request ${f.us_per_request} us wall, ${f.cpu_us_per_request} us CPU`),
    );
}
