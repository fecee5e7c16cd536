/**
 * Does a running onnxruntime-node session block the event loop, and does a worker thread pay off?
 * Saturates llm_upper (the larger half) with back-to-back runs for a few seconds and reports the main
 * thread's event-loop delay (perf_hooks.monitorEventLoopDelay) and throughput, for:
 *   - session.run on the main thread, intraOpNumThreads 1 and 2;
 *   - the same runs inside a worker_threads Worker (main thread only coordinates).
 * Usage: node --import tsx scripts/measure-event-loop.ts [seconds]
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

const here = dirname(fileURLToPath(import.meta.url));
const MODEL = resolve(here, '../triton-models/llm_upper/1/model.onnx');
const seconds = Number(process.argv[2] ?? 3);
const B = 16;
const T = 11;
const K = 90;
const D = 64;
/** Bytes of llm_upper's exclude_mask (one bit per catalog item of the committed 300-item bundle). */
const MASK_BYTES = 38;

function feeds(): Record<string, ort.Tensor> {
  const hidden = new Float32Array(B * T * D).map(() => Math.random() - 0.5);
  const memory = new Float32Array(B * K * D).map(() => Math.random() - 0.5);
  return {
    hidden: new ort.Tensor('float32', hidden, [B, T, D]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(B * T).fill(1n), [B, T]),
    memory: new ort.Tensor('float32', memory, [B, K, D]),
    memory_mask: new ort.Tensor('int64', new BigInt64Array(B * K).fill(1n), [B, K]),
    exclude_mask: new ort.Tensor('uint8', new Uint8Array(B * MASK_BYTES), [B, MASK_BYTES]),
  };
}

/** Runs back-to-back for `ms` with `concurrency` outstanding runs; returns runs completed. */
async function saturate(intra: number, ms: number, concurrency: number): Promise<number> {
  const session = await ort.InferenceSession.create(MODEL, {
    intraOpNumThreads: intra,
    interOpNumThreads: 1,
  });
  const f = feeds();
  await session.run(f);
  const end = Date.now() + ms;
  let runs = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        await session.run(f);
        runs += 1;
      }
    }),
  );
  await session.release();
  return runs;
}

// The worker body is plain CommonJS (worker entry points do not go through tsx); same loop as saturate().
const WORKER = `
const ort = require('onnxruntime-node');
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  const { model, intra, ms, B, T, K, D, MASK_BYTES } = workerData;
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: intra, interOpNumThreads: 1 });
  const f = {
    hidden: new ort.Tensor('float32', new Float32Array(B * T * D).map(() => Math.random() - 0.5), [B, T, D]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(B * T).fill(1n), [B, T]),
    memory: new ort.Tensor('float32', new Float32Array(B * K * D).map(() => Math.random() - 0.5), [B, K, D]),
    memory_mask: new ort.Tensor('int64', new BigInt64Array(B * K).fill(1n), [B, K]),
    exclude_mask: new ort.Tensor('uint8', new Uint8Array(B * MASK_BYTES), [B, MASK_BYTES]),
  };
  await session.run(f);
  const end = Date.now() + ms;
  let runs = 0;
  await Promise.all([0, 1].map(async () => { while (Date.now() < end) { await session.run(f); runs += 1; } }));
  await session.release();
  parentPort.postMessage(runs);
})();
`;

{
  const measure = async (label: string, work: () => Promise<number>): Promise<void> => {
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    const start = Date.now();
    const runs = await work();
    h.disable();
    const secs = (Date.now() - start) / 1000;
    const ms = (ns: number): string => (ns / 1e6).toFixed(1);
    console.log(
      `${label.padEnd(34)} runs/s ${(runs / secs).toFixed(1).padStart(6)}  loop delay p50 ${ms(h.percentile(50))} ms` +
        `  p99 ${ms(h.percentile(99))} ms  max ${ms(h.max)} ms`,
    );
  };
  console.log(`llm_upper, batch ${B}, T ${T}, memory ${K}; ${seconds}s each; 2 runs outstanding`);
  await measure('idle (baseline)', () => new Promise((r) => setTimeout(() => r(0), 1000)));
  for (const intra of [1, 2]) {
    await measure(`main thread, intraOp ${intra}`, () => saturate(intra, seconds * 1000, 2));
  }
  for (const intra of [1, 2]) {
    await measure(`worker thread, intraOp ${intra}`, async () => {
      const worker = new Worker(WORKER, {
        eval: true,
        workerData: { model: MODEL, intra, ms: seconds * 1000, B, T, K, D, MASK_BYTES },
      });
      const [runs] = await Promise.all([
        new Promise<number>((r) => worker.once('message', (n: number) => r(n))),
        new Promise((r) => worker.once('exit', r)),
      ]);
      return runs;
    });
  }
}
