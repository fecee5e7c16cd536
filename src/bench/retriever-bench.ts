/**
 * In-process retriever latency: `retriever.onnx` scoring one query against 90 memory elements, called
 * back to back from one caller, with input tensors allocated once and reused (as a serving path should).
 */
import { performance } from 'node:perf_hooks';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { createHistogram, recordMs, summarize, type LatencySummary } from './histogram.js';

export interface RetrieverFigure {
  elements: number;
  d_model: number;
  calls: number;
  latency: LatencySummary;
  p50_us: number;
  p99_us: number;
}

export async function benchRetriever(
  bundleDir: string,
  elements: number,
  durationMs: number,
): Promise<RetrieverFigure> {
  const manifest = JSON.parse(await readFile(join(bundleDir, 'manifest.json'), 'utf8')) as {
    d_model: number;
    retriever: { file: string };
  };
  const d = manifest.d_model;
  const session = await ort.InferenceSession.create(join(bundleDir, manifest.retriever.file), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const query = new Float32Array(d).map((_, i) => Math.sin(i));
  const memory = new Float32Array(elements * d).map((_, i) => Math.cos(i * 0.37));
  const mask = new BigInt64Array(elements).fill(1n);
  const feeds = {
    query: new ort.Tensor('float32', query, [1, d]),
    memory: new ort.Tensor('float32', memory, [1, elements, d]),
    memory_mask: new ort.Tensor('int64', mask, [1, elements]),
  };
  const histogram = createHistogram();
  const warmupEnd = performance.now() + Math.min(500, durationMs / 4);
  while (performance.now() < warmupEnd) await session.run(feeds);
  const end = performance.now() + durationMs;
  let calls = 0;
  while (performance.now() < end) {
    const t0 = performance.now();
    await session.run(feeds);
    recordMs(histogram, performance.now() - t0);
    calls += 1;
  }
  await session.release();
  const latency = summarize(histogram);
  return {
    elements,
    d_model: d,
    calls,
    latency,
    p50_us: Math.round(latency.p50_ms * 1000 * 10) / 10,
    p99_us: Math.round(latency.p99_ms * 1000 * 10) / 10,
  };
}
