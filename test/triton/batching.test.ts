/**
 * Dynamic batching: concurrent requests to the same model with equal non-batch shapes run as one
 * execution (execution_count < inference_count, as Triton reports it) and each caller gets its own rows.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { TritonClient } from '../../src/triton/client.js';
import {
  assertClose,
  D_MODEL,
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
    return { inputs: [ids, mask, mem.memory, mem.mask] };
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
    const [ids, mask, mem, memMask] = calls[i]!.inputs;
    const lower = await runDirect('llm_lower', [ids!, mask!]);
    const hidden = lower.get('hidden')!;
    const upper = await runDirect('llm_upper', [
      { name: 'hidden', datatype: 'FP32', shape: [...hidden.dims], data: hidden.data as Float32Array },
      mask!,
      mem!,
      memMask!,
    ]);
    assertClose(
      results[i]!.outputs.get('log_probs')!.data as Float32Array,
      upper.get('log_probs')!.data as Float32Array,
      `log_probs of request ${i}`,
    );
  }
});
