/**
 * Coalesced model calls against the real local model server and the real retriever: concurrent Recommends go out
 * as one batched automr_recommend ModelInfer (the server's statistics say so) and every caller gets exactly what
 * its own uncoalesced call returns; concurrent retriever requests are scored in one session run, row for row.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { OnnxRetriever } from '../../src/gateway/adapters/onnx-retriever.js';
import { TritonModelServer } from '../../src/gateway/adapters/triton-model-server.js';
import { loadBundle, type Bundle } from '../../src/gateway/bundle.js';
import type { RecommendOutput } from '../../src/gateway/domain/ports.js';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { TritonClient } from '../../src/triton/client.js';
import { BUNDLE_DIR, MODELS_DIR } from './helpers.js';

let server: RunningModelServer;
let bundle: Bundle;
let batched: TritonModelServer;
let single: TritonModelServer;

before(async () => {
  server = await startModelServer({ repository: MODELS_DIR, address: '127.0.0.1:0' });
  bundle = await loadBundle(BUNDLE_DIR);
  batched = new TritonModelServer({
    address: server.address,
    bundle,
    recommendBatch: { maxBatch: 64, delayMs: 0 },
  });
  single = new TritonModelServer({
    address: server.address,
    bundle,
    recommendBatch: { maxBatch: 1, delayMs: 0 },
  });
});

after(async () => {
  batched.close();
  single.close();
  await server.close();
});

/**
 * Prompts of every length from 1 item to the full window, memories of 0 to 3 elements of real encodings, and an
 * exclusion mask that excludes nothing (even rows) or the first 8 catalog items (odd rows).
 */
async function requests(): Promise<{ prompt: number[]; memory: Float32Array[]; mask: Uint8Array }[]> {
  const items = bundle.catalog.map((c) => c.token);
  const prompts = Array.from({ length: 12 }, (_, r) => {
    const length = 1 + (r % bundle.window);
    return [bundle.tokens.bos, ...Array.from({ length }, (_, j) => items[(r * 13 + j * 7) % items.length]!)];
  });
  const vectors = await single.encode(prompts);
  return prompts.map((prompt, r) => {
    const mask = new Uint8Array(bundle.maskBytes);
    if (r % 2 === 1) mask[0] = 0xff;
    return { prompt, memory: vectors.slice(0, r % 4), mask };
  });
}

async function stats(client: TritonClient): Promise<{ inferences: number; executions: number }> {
  const [s] = await client.modelStatistics(bundle.manifest.models.ensemble);
  return { inferences: Number(s?.inference_count ?? 0), executions: Number(s?.execution_count ?? 0) };
}

function assertSameRanking(got: RecommendOutput, want: RecommendOutput, what: string): void {
  assert.deepEqual(Array.from(got.tokens).slice(0, 20), Array.from(want.tokens).slice(0, 20), what);
  Array.from(got.scores)
    .slice(0, 20)
    .forEach((s, i) => assert.ok(Math.abs(s - want.scores[i]!) < 1e-4, `${what} score ${i}`));
}

void test('concurrent Recommends share one automr_recommend call and get their own rows back', async () => {
  const reqs = await requests();
  const alone: RecommendOutput[] = [];
  for (const r of reqs) alone.push(await single.recommend(r.prompt, r.memory, r.mask));

  const client = new TritonClient({ address: server.address });
  try {
    const before = await stats(client);
    const together = await Promise.all(reqs.map((r) => batched.recommend(r.prompt, r.memory, r.mask)));
    const after = await stats(client);
    together.forEach((out, i) => assertSameRanking(out, alone[i]!, `request ${i}`));
    const firstEight = new Set(bundle.catalog.slice(0, 8).map((c) => c.token));
    together.forEach((out, i) => {
      if (i % 2 === 1)
        assert.ok(
          !Array.from(out.tokens).some((t) => firstEight.has(t)),
          `request ${i} keeps its own exclusions`,
        );
    });
    assert.ok(
      together.some((out, i) => i % 2 === 0 && Array.from(out.tokens).some((t) => firstEight.has(t))),
      'rows without exclusions still rank those items (the masks were not mixed up)',
    );
    assert.equal(after.inferences - before.inferences, reqs.length);
    assert.ok(
      after.executions - before.executions < reqs.length,
      `execution_count +${after.executions - before.executions} < inference_count +${reqs.length}`,
    );
    assert.equal(batched.recommendBatches.batches, 1);
  } finally {
    client.close();
  }
});

void test('a cancelled Recommend fails alone; the others of its batch are answered', async () => {
  const reqs = (await requests()).slice(0, 4);
  const cancelled = new AbortController();
  const calls = reqs.map((r, i) =>
    batched.recommend(r.prompt, r.memory, r.mask, i === 1 ? cancelled.signal : undefined),
  );
  cancelled.abort();
  const settled = await Promise.allSettled(calls);
  assert.equal(settled[1]?.status, 'rejected');
  assert.ok(settled.filter((s) => s.status === 'fulfilled').length === 3);
});

void test('concurrent retriever requests are scored in one run, each as if alone', async () => {
  const coalesced = await OnnxRetriever.load(bundle.retrieverPath, bundle.dModel, {
    maxBatch: 64,
    delayMs: 0,
  });
  const alone = await OnnxRetriever.load(bundle.retrieverPath, bundle.dModel, { maxBatch: 1, delayMs: 0 });
  try {
    const reqs = await requests();
    const vectors = await single.encode(reqs.map((r) => r.prompt));
    const calls = vectors.map((query, i) => ({ query, memory: vectors.slice(0, 1 + (i % 7)) }));
    const want: Float32Array[] = [];
    for (const c of calls) want.push(await alone.score(c.query, c.memory));
    const got = await Promise.all(calls.map((c) => coalesced.score(c.query, c.memory)));
    got.forEach((scores, i) => {
      assert.equal(scores.length, calls[i]!.memory.length);
      scores.forEach((s, j) => assert.ok(Math.abs(s - want[i]![j]!) < 1e-5, `request ${i} element ${j}`));
    });
    assert.deepEqual([coalesced.batches.batches, coalesced.batches.requests], [1, calls.length]);
  } finally {
    await coalesced.close();
    await alone.close();
  }
});

void test('retriever runs of every shape, one after another and two at once, score as fresh inputs do', async () => {
  // The retriever reuses its input arrays from run to run: a smaller batch after a larger one must not see the
  // larger one's rows, vectors or mask, and a batch formed while another's run is pending must not overwrite it.
  const retriever = await OnnxRetriever.load(bundle.retrieverPath, bundle.dModel, {
    maxBatch: 2,
    delayMs: 0,
  });
  const reference = await ort.InferenceSession.create(bundle.retrieverPath);
  const d = bundle.dModel;
  const fresh = async (query: Float32Array, memory: Float32Array[]): Promise<Float32Array> => {
    const flat = new Float32Array(memory.length * d);
    memory.forEach((v, j) => flat.set(v, j * d));
    const out = await reference.run({
      query: new ort.Tensor('float32', query, [1, d]),
      memory: new ort.Tensor('float32', flat, [1, memory.length, d]),
      memory_mask: new ort.Tensor('int64', new BigInt64Array(memory.length).fill(1n), [1, memory.length]),
    });
    return out.scores!.data as Float32Array;
  };
  try {
    const reqs = await requests();
    const vectors = await single.encode(reqs.map((r) => r.prompt));
    const call = (i: number, size: number) => ({
      query: vectors[i % vectors.length]!,
      memory: Array.from({ length: size }, (_, j) => vectors[(i + j + 1) % vectors.length]!),
    });
    // Batches of two (rows padded to the longer memory), then single calls, then two batches at once.
    const rounds = [
      [call(0, 7), call(1, 3)],
      [call(2, 1)],
      [call(3, 2), call(4, 2)],
      [call(5, 5), call(6, 1), call(7, 4), call(8, 6)],
      [call(9, 1)],
    ];
    for (const calls of rounds) {
      const got = await Promise.all(calls.map((c) => retriever.score(c.query, c.memory)));
      for (const [i, c] of calls.entries()) {
        const want = await fresh(c.query, c.memory);
        assert.equal(got[i]!.length, c.memory.length);
        want.forEach((w, j) => assert.ok(Math.abs(got[i]![j]! - w) < 1e-5, `call ${i} element ${j}`));
      }
    }
  } finally {
    await retriever.close();
    await reference.release();
  }
});
