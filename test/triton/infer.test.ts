/**
 * Client → local model server → ONNX gives onnxruntime's own numbers; the ensemble gives the numbers of
 * lower-then-upper; metadata, config, index and tracing behave as in Triton.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { TritonClient } from '../../src/triton/client.js';
import {
  assertClose,
  D_MODEL,
  MAX_BATCH,
  exclusion,
  MASK_BYTES,
  memory,
  MODEL_REPOSITORY,
  prompt,
  releaseDirect,
  rowsOf,
  runDirect,
  TOP_K,
} from './helpers.js';

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
let server: RunningModelServer;
let client: TritonClient;

before(async () => {
  provider.register({ propagator: new W3CTraceContextPropagator() });
  server = await startModelServer({ repository: MODEL_REPOSITORY });
  client = new TritonClient({ address: server.address, defaultDeadlineMs: 20_000 });
});

after(async () => {
  client.close();
  await server.close();
  await releaseDirect();
  await provider.shutdown();
});

void test('health, metadata, config and repository index', async () => {
  assert.equal(await client.serverLive(), true);
  assert.equal(await client.serverReady(), true);
  assert.equal(await client.modelReady('llm_lower'), true);
  assert.equal(await client.modelReady('llm_lower', '1'), true);
  assert.equal(await client.modelReady('llm_lower', '2'), false);
  assert.equal(await client.modelReady('nope'), false);
  const meta = await client.modelMetadata('llm_upper');
  assert.equal(meta.platform, 'onnxruntime_onnx');
  assert.deepEqual(meta.versions, ['1']);
  assert.deepEqual(
    meta.inputs.map((i) => [i.name, i.datatype, i.shape]),
    [
      ['hidden', 'FP32', [-1, -1, D_MODEL]],
      ['attention_mask', 'INT64', [-1, -1]],
      ['memory', 'FP32', [-1, -1, D_MODEL]],
      ['memory_mask', 'INT64', [-1, -1]],
      ['exclude_mask', 'UINT8', [-1, MASK_BYTES]],
    ],
  );
  const config = await client.modelConfig('automr_recommend');
  assert.equal(config.platform, 'ensemble');
  assert.equal(config.max_batch_size, MAX_BATCH);
  assert.equal(config.ensemble_scheduling?.step.length, 2);
  assert.equal(config.input[0]?.data_type, 'TYPE_INT64');
});

void test('llm_lower through the server equals onnxruntime called directly', async () => {
  const { ids, mask } = prompt(3, 11, 1);
  const res = await client.infer({ model: 'llm_lower', id: 'req-1', inputs: [ids, mask] });
  assert.equal(res.id, 'req-1');
  assert.equal(res.version, '1');
  const direct = await runDirect('llm_lower', [ids, mask]);
  for (const name of ['hidden', 'query']) {
    const got = res.outputs.get(name)!;
    assert.deepEqual(got.shape, direct.get(name)!.dims);
    assertClose(got.data as Float32Array, direct.get(name)!.data as Float32Array, name);
  }
});

void test('llm_upper through the server equals onnxruntime, requested outputs only', async () => {
  const { ids, mask } = prompt(2, 8, 2);
  const lower = await runDirect('llm_lower', [ids, mask]);
  const hidden = {
    name: 'hidden',
    datatype: 'FP32' as const,
    shape: [...lower.get('hidden')!.dims],
    data: lower.get('hidden')!.data as Float32Array,
  };
  const mem = memory(2, 5, 3, 3);
  const inputs = [hidden, mask, mem.memory, mem.mask, exclusion(2)];
  const res = await client.infer({ model: 'llm_upper', inputs, outputs: ['top_ids', 'log_probs'] });
  assert.deepEqual([...res.outputs.keys()], ['top_ids', 'log_probs']);
  const direct = await runDirect('llm_upper', inputs);
  assertClose(
    res.outputs.get('log_probs')!.data as Float32Array,
    direct.get('log_probs')!.data as Float32Array,
    'log_probs',
  );
  assert.deepEqual(res.outputs.get('top_ids')!.data, direct.get('top_ids')!.data);
  assert.deepEqual(res.outputs.get('top_ids')!.shape, [2, TOP_K]);
});

void test('the ensemble equals lower then upper, and the client trace continues on the server', async () => {
  exporter.reset();
  const { ids, mask } = prompt(2, 6, 4);
  const mem = memory(2, 4, 2, 5);
  const tracer = trace.getTracer('test');
  const res = await tracer.startActiveSpan('caller', async (span) => {
    try {
      return await client.infer({
        model: 'automr_recommend',
        inputs: [ids, mask, mem.memory, mem.mask, exclusion(2, [[0, 1, 2], [5]])],
      });
    } finally {
      span.end();
    }
  });
  const lower = await client.infer({ model: 'llm_lower', inputs: [ids, mask] });
  const upper = await client.infer({
    model: 'llm_upper',
    inputs: [lower.outputs.get('hidden')!, mask, mem.memory, mem.mask, exclusion(2, [[0, 1, 2], [5]])],
  });
  for (const name of ['log_probs', 'top_scores']) {
    assertClose(
      res.outputs.get(name)!.data as Float32Array,
      upper.outputs.get(name)!.data as Float32Array,
      name,
    );
  }
  assert.deepEqual(res.outputs.get('top_ids')!.data, upper.outputs.get('top_ids')!.data);
  assertClose(
    rowsOf(res.outputs.get('log_probs')!, 1, 1),
    rowsOf(upper.outputs.get('log_probs')!, 1, 1),
    'row 1',
  );

  const spans = exporter.getFinishedSpans();
  const caller = spans.find((s) => s.name === 'caller')!;
  const serverSpan = spans.find(
    (s) => s.name === 'triton.ModelInfer' && s.attributes['triton.model.name'] === 'automr_recommend',
  );
  assert.ok(serverSpan, 'server span recorded');
  assert.equal(serverSpan.spanContext().traceId, caller.spanContext().traceId);
  assert.equal(serverSpan.parentSpanContext?.spanId, caller.spanContext().spanId);
  const steps = spans.filter(
    (s) => s.name === 'triton.ensemble.step' && s.spanContext().traceId === caller.spanContext().traceId,
  );
  assert.deepEqual(steps.map((s) => s.attributes['triton.model.name']).sort(), ['llm_lower', 'llm_upper']);
  const executions = spans.filter(
    (s) => s.name === 'triton.execute' && s.spanContext().traceId === caller.spanContext().traceId,
  );
  assert.equal(executions.length, 2);
  assert.ok(executions.every((s) => typeof s.attributes['triton.batch.size'] === 'number'));
});

void test('sessions in the main thread give the same numbers as sessions in worker threads', async () => {
  const inProcess = await startModelServer({ repository: MODEL_REPOSITORY, sessionsInWorkers: false });
  const other = new TritonClient({ address: inProcess.address, defaultDeadlineMs: 20_000 });
  try {
    const { ids, mask } = prompt(2, 7, 11);
    const a = await client.infer({ model: 'llm_lower', inputs: [ids, mask] });
    const b = await other.infer({ model: 'llm_lower', inputs: [ids, mask] });
    assert.deepEqual(b.outputs.get('hidden')!.data, a.outputs.get('hidden')!.data);
  } finally {
    other.close();
    await inProcess.close();
  }
});
