/** Shared fixtures for the Triton-protocol tests: the committed repository, inputs, direct onnxruntime. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import type { ModelConfig__Output } from '../../src/generated/inference/ModelConfig.js';
import { parseModelConfig } from '../../src/model-server/model-config.js';
import type { Tensor } from '../../src/triton/tensor.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const MODEL_REPOSITORY = resolve(REPO_ROOT, 'triton-models');

/** Sizes read from the committed configs, so the tests follow a re-export (d, catalog size, top-k). */
function readConfig(model: string): ModelConfig__Output {
  const text = readFileSync(resolve(MODEL_REPOSITORY, model, 'config.pbtxt'), 'utf8');
  return parseModelConfig(text);
}
function outputDims(model: string, output: string): number[] {
  const config = readConfig(model);
  const spec = config.output.find((o) => o.name === output);
  if (spec === undefined) throw new Error(`${model} has no output ${output}`);
  return spec.dims.map(Number);
}
export const D_MODEL = outputDims('llm_lower', 'query')[0]!;
export const N_ITEMS = outputDims('llm_upper', 'log_probs')[0]!;
export const TOP_K = outputDims('llm_upper', 'top_ids')[0]!;
export const MAX_BATCH = readConfig('llm_lower').max_batch_size;
/** Bytes of llm_upper's packed exclude_mask (one bit per catalog item). */
export const MASK_BYTES = Math.ceil(N_ITEMS / 8);
const FIRST_ITEM_TOKEN = 3;

/** Deterministic pseudo-random numbers (mulberry32), so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A left-padded prompt batch: bos + items, as docs/BUNDLE.md describes. */
export function prompt(batch: number, length: number, seed: number): { ids: Tensor; mask: Tensor } {
  const r = rng(seed);
  const ids = new BigInt64Array(batch * length);
  const mask = new BigInt64Array(batch * length);
  for (let b = 0; b < batch; b += 1) {
    const real = 1 + Math.floor(r() * (length - 1)) + 1; // 2..length tokens incl. bos
    const pad = length - Math.min(real, length);
    for (let t = 0; t < length; t += 1) {
      const i = b * length + t;
      if (t < pad) continue;
      mask[i] = 1n;
      ids[i] = t === pad ? 1n : BigInt(FIRST_ITEM_TOKEN + Math.floor(r() * N_ITEMS));
    }
  }
  return {
    ids: { name: 'input_ids', datatype: 'INT64', shape: [batch, length], data: ids },
    mask: { name: 'attention_mask', datatype: 'INT64', shape: [batch, length], data: mask },
  };
}

/** Memory slots: k vectors per row, the first `valid` of them unmasked. */
export function memory(
  batch: number,
  k: number,
  valid: number,
  seed: number,
): { memory: Tensor; mask: Tensor } {
  const r = rng(seed);
  const data = new Float32Array(batch * k * D_MODEL).map(() => r() * 2 - 1);
  const mask = new BigInt64Array(batch * k);
  for (let b = 0; b < batch; b += 1) for (let j = 0; j < valid; j += 1) mask[b * k + j] = 1n;
  return {
    memory: { name: 'memory', datatype: 'FP32', shape: [batch, k, D_MODEL], data },
    mask: { name: 'memory_mask', datatype: 'INT64', shape: [batch, k], data: mask },
  };
}

const sessions = new Map<string, Promise<ort.InferenceSession>>();

/** The exclude_mask tensor for `batch` rows, row b excluding the item indices `excluded[b]` (none if absent). */
export function exclusion(batch: number, excluded: number[][] = []): Tensor {
  const data = new Uint8Array(batch * MASK_BYTES);
  excluded.forEach((items, b) => {
    for (const i of items) data[b * MASK_BYTES + (i >> 3)]! |= 1 << (i & 7);
  });
  return { name: 'exclude_mask', datatype: 'UINT8', shape: [batch, MASK_BYTES], data };
}

/** onnxruntime called directly on the committed model file (the reference for the server's numbers). */
export async function runDirect(model: string, inputs: Tensor[]): Promise<Map<string, ort.Tensor>> {
  let session = sessions.get(model);
  if (session === undefined) {
    session = ort.InferenceSession.create(resolve(MODEL_REPOSITORY, model, '1', 'model.onnx'), {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    sessions.set(model, session);
  }
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of inputs) {
    if (t.datatype === 'UINT8') feeds[t.name] = new ort.Tensor('uint8', t.data as Uint8Array, t.shape);
    else {
      const type = t.datatype === 'INT64' ? 'int64' : 'float32';
      feeds[t.name] = new ort.Tensor(type, t.data as Float32Array | BigInt64Array, t.shape);
    }
  }
  const out = await (await session).run(feeds);
  return new Map(Object.entries(out));
}

export async function releaseDirect(): Promise<void> {
  for (const s of sessions.values()) await (await s).release();
  sessions.clear();
}

/** Equal within 1e-5 (relative to magnitude, at least absolute 1e-5), element by element. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i += 1) {
    const a = actual[i]!;
    const e = expected[i]!;
    const tol = 1e-5 * Math.max(1, Math.abs(e));
    if (!(Math.abs(a - e) <= tol)) assert.fail(`${what}[${i}]: ${a} vs ${e}`);
  }
}

export function rowsOf(t: Tensor | ort.Tensor, start: number, count: number): Float32Array {
  const data = t.data as Float32Array;
  const rows = ('dims' in t ? t.dims : t.shape)[0]!;
  const per = data.length / rows;
  return data.subarray(start * per, (start + count) * per);
}
