/**
 * Dynamic batching: concurrent requests to the same model with equal non-batch shapes run as one
 * execution (execution_count < inference_count, as Triton reports it) and each caller gets its own rows —
 * exclusion masks included: excluded items never reach a row's top-k, log_probs stays the unmasked
 * distribution, and a mask that leaves fewer than top_k items ends in -inf scores.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { TritonClient } from '../../src/triton/client.js';
import {
  assertClose,
  N_ITEMS,
  rng,
  TOP_K,
  D_MODEL,
  exclusion,
  memory,
  MODEL_REPOSITORY,
  prompt,
  releaseDirect,
  runDirect,
} from './helpers.js';

let server: RunningModelServer;
let client: TritonClient;

before(async () => {
  server = await startModelServer({ repository: MODEL_REPOSITORY });
  client = new TritonClient({ address: server.address, defaultDeadlineMs: 30_000, channels: 2 });
});

after(async () => {
  client.close();
  await server.close();
  await releaseDirect();
});

async function stats(model: string): Promise<{ inference: number; execution: number; batches: number[] }> {
  const [s] = await client.modelStatistics(model);
  assert.ok(s);
  return {
    inference: Number(s.inference_count),
    execution: Number(s.execution_count),
    batches: s.batch_stats.map((b) => Number(b.batch_size)),
  };
}

void test('concurrent llm_lower requests are batched and each caller gets its own results', async () => {
  const n = 16;
  const requests = Array.from({ length: n }, (_, i) => prompt(1 + (i % 2), 9, 100 + i));
  const results = await Promise.all(
    requests.map(({ ids, mask }, i) =>
      client.infer({ model: 'llm_lower', id: `r${i}`, inputs: [ids, mask] }),
    ),
  );
  const s = await stats('llm_lower');
  const rows = requests.reduce((sum, r) => sum + r.ids.shape[0]!, 0);
  assert.equal(s.inference, rows);
  assert.ok(
    s.execution < s.inference,
    `execution_count ${s.execution} should be below inference_count ${s.inference}`,
  );
  assert.ok(
    s.batches.some((b) => b > 2),
    `some batch larger than one request: ${s.batches.join(',')}`,
  );
  for (let i = 0; i < n; i += 1) {
    const { ids, mask } = requests[i]!;
    assert.equal(results[i]!.id, `r${i}`);
    const direct = await runDirect('llm_lower', [ids, mask]);
    assert.deepEqual(results[i]!.outputs.get('hidden')!.shape, [ids.shape[0], 9, D_MODEL]);
    assertClose(
      results[i]!.outputs.get('query')!.data as Float32Array,
      direct.get('query')!.data as Float32Array,
      `query of request ${i}`,
    );
  }
});

void test('requests with different non-batch shapes are not mixed, and ensemble members batch', async () => {
  const before = await stats('llm_upper');
  const calls = Array.from({ length: 8 }, (_, i) => {
    const { ids, mask } = prompt(1, i % 2 === 0 ? 5 : 7, 200 + i);
    const mem = memory(1, 3, 1 + (i % 3), 300 + i);
    return { inputs: [ids, mask, mem.memory, mem.mask, exclusion(1, [[i, 2 * i + 1]])] };
  });
  const results = await Promise.all(
    calls.map((c) => client.infer({ model: 'automr_recommend', inputs: c.inputs })),
  );
  const after = await stats('llm_upper');
  assert.equal(after.inference - before.inference, 8);
  assert.ok(after.execution - before.execution < 8, 'member executions were batched');
  const ensemble = await stats('automr_recommend');
  assert.equal(ensemble.inference, 8);
  for (let i = 0; i < calls.length; i += 1) {
    const [ids, mask, mem, memMask, exclude] = calls[i]!.inputs;
    const lower = await runDirect('llm_lower', [ids!, mask!]);
    const hidden = lower.get('hidden')!;
    const upper = await runDirect('llm_upper', [
      { name: 'hidden', datatype: 'FP32', shape: [...hidden.dims], data: hidden.data as Float32Array },
      mask!,
      mem!,
      memMask!,
      exclude!,
    ]);
    assert.deepEqual(results[i]!.outputs.get('top_ids')!.data, upper.get('top_ids')!.data);
    assertClose(
      results[i]!.outputs.get('log_probs')!.data as Float32Array,
      upper.get('log_probs')!.data as Float32Array,
      `log_probs of request ${i}`,
    );
  }
});

const FIRST_ITEM_TOKEN = 3;

function randomSet(seed: number, size: number): number[] {
  const r = rng(seed);
  const out = new Set<number>();
  while (out.size < size) out.add(Math.floor(r() * N_ITEMS));
  return [...out];
}

void test('concurrent ensemble requests with different masks batch, and each row honours only its own mask', async () => {
  const allowedFew = [4, 17, N_ITEMS - 1];
  const everythingBut = (keep: number[]) => [...Array(N_ITEMS).keys()].filter((i) => !keep.includes(i));
  const sets = [
    [],
    randomSet(1, 30),
    randomSet(2, N_ITEMS - 150),
    everythingBut(allowedFew),
    ...Array.from({ length: 8 }, (_, i) => randomSet(10 + i, 5 + i * 7)),
  ];
  const calls = sets.map((set, i) => {
    const { ids, mask } = prompt(1, 8, 400 + (i % 3));
    const mem = memory(1, 2, 1, 500);
    return { set, inputs: [ids, mask, mem.memory, mem.mask, exclusion(1, [set])] };
  });
  const before = await stats('llm_upper');
  const results = await Promise.all(
    calls.map((c) => client.infer({ model: 'automr_recommend', inputs: c.inputs })),
  );
  const after = await stats('llm_upper');
  assert.equal(after.inference - before.inference, calls.length);
  assert.ok(after.execution - before.execution < calls.length, 'masked requests were batched together');

  for (const [i, { set, inputs }] of calls.entries()) {
    const out = results[i]!.outputs;
    const ids = Array.from(out.get('top_ids')!.data as BigInt64Array, (t) => Number(t) - FIRST_ITEM_TOKEN);
    const scores = out.get('top_scores')!.data as Float32Array;
    const logProbs = out.get('log_probs')!.data as Float32Array;
    const excluded = new Set(set);
    const allowed = N_ITEMS - excluded.size;
    const k = Math.min(TOP_K, allowed);
    for (let j = 0; j < k; j += 1) {
      assert.ok(!excluded.has(ids[j]!), `request ${i}: excluded item ${ids[j]} at rank ${j + 1}`);
      assert.equal(scores[j], logProbs[ids[j]!], `request ${i}: score of rank ${j + 1} is its log-prob`);
      if (j > 0) assert.ok(scores[j - 1]! >= scores[j]!, `request ${i}: sorted`);
    }
    for (let j = k; j < TOP_K; j += 1) assert.equal(scores[j], Number.NEGATIVE_INFINITY);
    // The best allowed item is first: no allowed item scores above it.
    let best = Number.NEGATIVE_INFINITY;
    for (let item = 0; item < N_ITEMS; item += 1)
      if (!excluded.has(item)) best = Math.max(best, logProbs[item]!);
    assert.equal(scores[0], best, `request ${i}: best allowed item first`);
    if (i === 3)
      assert.deepEqual(
        ids.slice(0, 3).sort((a, b) => a - b),
        allowedFew,
      );

    // log_probs is the model's plain distribution: the same request without a mask gives the same row.
    if (i < 3) {
      const plain = await client.infer({
        model: 'automr_recommend',
        inputs: [...inputs.slice(0, 4), exclusion(1)],
      });
      assert.deepEqual(plain.outputs.get('log_probs')!.data, logProbs);
    }
  }
});
