/**
 * TritonClient behaviour against a scripted Triton-protocol server: retries only where safe, deadlines,
 * cancellation, traceparent, metadata caching and client-side validation; plus the tensor codec.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import { pino } from 'pino';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { startModelServer } from '../../src/model-server/server.js';
import { AppError } from '../../src/shared/errors.js';
import { TritonClient } from '../../src/triton/client.js';
import { loadInferenceProto } from '../../src/triton/proto.js';
import { decodeRaw, encodeRaw, type Tensor } from '../../src/triton/tensor.js';
import { D_MODEL, MODEL_REPOSITORY } from './helpers.js';

type Mode = 'ok' | 'invalid' | 'unavailable' | 'slow';
const calls: Record<string, number> = {};
let mode: Mode = 'ok';
let readyFailures = 0;
let lastTraceparent: string | undefined;
let fake: Server;
let fakeAddress: string;
const provider = new NodeTracerProvider();

function count(name: string): void {
  calls[name] = (calls[name] ?? 0) + 1;
}

const handlers: UntypedServiceImplementation = {
  ServerReady: (_call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
    count('ServerReady');
    if (readyFailures > 0) {
      readyFailures -= 1;
      return cb({ code: status.UNAVAILABLE, details: 'starting' });
    }
    cb(null, { ready: true });
  },
  ModelMetadata: (_call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
    count('ModelMetadata');
    cb(null, {
      name: 'm',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }],
    });
  },
  ModelInfer: (
    call: ServerUnaryCall<{ raw_input_contents: Buffer[]; id: string }, unknown>,
    cb: sendUnaryData<unknown>,
  ) => {
    count('ModelInfer');
    lastTraceparent = call.metadata.get('traceparent')[0]?.toString();
    if (mode === 'invalid')
      return cb({ code: status.INVALID_ARGUMENT, details: "unexpected shape for input 'x'" });
    if (mode === 'unavailable') return cb({ code: status.UNAVAILABLE, details: 'instance lost' });
    if (mode === 'slow') return void setTimeout(() => cb(null, {}), 1500);
    cb(null, {
      model_name: 'm',
      model_version: '1',
      id: call.request.id,
      outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 2] }],
      raw_output_contents: [call.request.raw_input_contents[0]],
    });
  },
};

before(async () => {
  provider.register({ propagator: new W3CTraceContextPropagator() });
  fake = new Server();
  fake.addService(loadInferenceProto().inference.GRPCInferenceService.service, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    fake.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  fakeAddress = `127.0.0.1:${port}`;
});

after(async () => {
  fake.forceShutdown();
  await provider.shutdown();
});

const x: Tensor = { name: 'x', datatype: 'FP32', shape: [1, 2], data: new Float32Array([1.5, -2]) };

function reset(m: Mode): void {
  mode = m;
  for (const k of Object.keys(calls)) delete calls[k];
}

async function failure(p: Promise<unknown>): Promise<AppError> {
  const e = await p.then(
    () => undefined,
    (error: unknown) => error,
  );
  assert.ok(e instanceof AppError, `expected an AppError, got ${String(e)}`);
  return e;
}

void test('infer round-trips raw tensors, sends traceparent, caches metadata', async () => {
  reset('ok');
  const client = new TritonClient({ address: fakeAddress, maxRetries: 3, retryBaseMs: 5 });
  try {
    const tracer = trace.getTracer('test');
    const traceId = await tracer.startActiveSpan('caller', async (span) => {
      const res = await client.infer({ model: 'm', id: 'a', inputs: [x] });
      assert.deepEqual([...(res.outputs.get('y')!.data as Float32Array)], [1.5, -2]);
      assert.equal(res.id, 'a');
      span.end();
      return span.spanContext().traceId;
    });
    assert.match(lastTraceparent ?? '', new RegExp(`^00-${traceId}-[0-9a-f]{16}-0[01]$`));
    await client.infer({ model: 'm', inputs: [x] });
    assert.equal(calls.ModelMetadata, 1, 'metadata fetched once');
    assert.equal(calls.ModelInfer, 2);
  } finally {
    client.close();
  }
});

void test('requests that do not fit the metadata fail before anything is sent', async () => {
  reset('ok');
  const client = new TritonClient({ address: fakeAddress });
  try {
    const wrongType = await failure(
      client.infer({ model: 'm', inputs: [{ ...x, datatype: 'INT32', data: new Int32Array(2) }] }),
    );
    assert.equal(wrongType.code, 'INVALID_ARGUMENT');
    const wrongShape = await failure(
      client.infer({ model: 'm', inputs: [{ ...x, shape: [1, 3], data: new Float32Array(3) }] }),
    );
    assert.equal(wrongShape.code, 'INVALID_ARGUMENT');
    const missing = await failure(client.infer({ model: 'm', inputs: [] }));
    assert.equal(missing.code, 'INVALID_ARGUMENT');
    assert.equal(calls.ModelInfer ?? 0, 0);
  } finally {
    client.close();
  }
});

void test('INVALID_ARGUMENT, DEADLINE_EXCEEDED and UNAVAILABLE after sending are not retried', async () => {
  const client = new TritonClient({ address: fakeAddress, maxRetries: 5, retryBaseMs: 5 });
  try {
    await client.modelMetadata('m');
    reset('invalid');
    const invalid = await failure(client.infer({ model: 'm', inputs: [x] }));
    assert.equal(invalid.code, 'INVALID_ARGUMENT');
    assert.equal(invalid.message, "unexpected shape for input 'x'");
    assert.equal(calls.ModelInfer, 1);

    reset('unavailable');
    const lost = await failure(client.infer({ model: 'm', inputs: [x] }));
    assert.equal(lost.code, 'UNAVAILABLE');
    assert.equal(calls.ModelInfer, 1, 'inference that reached the server is not retried');

    reset('slow');
    const late = await failure(client.infer({ model: 'm', inputs: [x] }, { deadlineMs: 200 }));
    assert.equal(late.code, 'DEADLINE_EXCEEDED');
    assert.equal(calls.ModelInfer, 1);

    reset('slow');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const cancelled = await failure(client.infer({ model: 'm', inputs: [x] }, { signal: controller.signal }));
    assert.equal(cancelled.code, 'CANCELLED');
  } finally {
    client.close();
  }
});

void test('read-only calls are retried on UNAVAILABLE', async () => {
  reset('ok');
  readyFailures = 2;
  const client = new TritonClient({ address: fakeAddress, maxRetries: 3, retryBaseMs: 5 });
  try {
    assert.equal(await client.serverReady(), true);
    assert.equal(calls.ServerReady, 3);
  } finally {
    client.close();
  }
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

void test('a port with nothing listening is retried until the server appears', async () => {
  const port = await freePort();
  const client = new TritonClient({
    address: `127.0.0.1:${port}`,
    maxRetries: 30,
    retryBaseMs: 50,
    defaultDeadlineMs: 20_000,
  });
  const started = (async () => {
    await new Promise((r) => setTimeout(r, 300));
    return startModelServer({ repository: MODEL_REPOSITORY, address: `127.0.0.1:${port}` });
  })();
  try {
    assert.equal(await client.serverReady(), true);
    const res = await client.infer({
      model: 'llm_lower',
      inputs: [
        { name: 'input_ids', datatype: 'INT64', shape: [1, 2], data: new BigInt64Array([1n, 5n]) },
        { name: 'attention_mask', datatype: 'INT64', shape: [1, 2], data: new BigInt64Array([1n, 1n]) },
      ],
    });
    assert.deepEqual(res.outputs.get('query')!.shape, [1, D_MODEL]);
  } finally {
    client.close();
    await (await started).close();
  }
});

void test('inference is retried when the connection was never established, once it is', async () => {
  const port = await freePort();
  const start = async (): Promise<Server> => {
    const s = new Server();
    s.addService(loadInferenceProto().inference.GRPCInferenceService.service, handlers);
    await new Promise<number>((resolve, reject) =>
      s.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    return s;
  };
  const first = await start();
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  const client = new TritonClient({
    address: `127.0.0.1:${port}`,
    maxRetries: 30,
    retryBaseMs: 50,
    defaultDeadlineMs: 20_000,
    logger,
  });
  try {
    await client.modelMetadata('m');
    first.forceShutdown();
    reset('ok');
    const second = new Promise((r) => setTimeout(r, 300)).then(start);
    try {
      const res = await client.infer({ model: 'm', inputs: [x] });
      assert.deepEqual([...(res.outputs.get('y')!.data as Float32Array)], [1.5, -2]);
      assert.equal(calls.ModelInfer, 1, 'the server saw the request exactly once');
      assert.ok(
        lines.some((l) => l.includes('"method":"ModelInfer"') && l.includes('retrying Triton call')),
        'the first attempt failed before sending and was retried',
      );
    } finally {
      (await second).forceShutdown();
    }
  } finally {
    client.close();
  }
});

void test('tensor codec: little-endian raw layouts for every datatype', () => {
  const cases: Tensor[] = [
    { name: 'b', datatype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
    { name: 'u8', datatype: 'UINT8', shape: [2], data: new Uint8Array([0, 255]) },
    { name: 'i8', datatype: 'INT8', shape: [2], data: new Int8Array([-1, 7]) },
    { name: 'i16', datatype: 'INT16', shape: [1], data: new Int16Array([-2]) },
    { name: 'u16', datatype: 'UINT16', shape: [1], data: new Uint16Array([65535]) },
    { name: 'i32', datatype: 'INT32', shape: [2, 1], data: new Int32Array([-3, 4]) },
    { name: 'u32', datatype: 'UINT32', shape: [1], data: new Uint32Array([4e9]) },
    { name: 'i64', datatype: 'INT64', shape: [2], data: new BigInt64Array([-1n, 2n ** 40n]) },
    { name: 'u64', datatype: 'UINT64', shape: [1], data: new BigUint64Array([2n ** 63n]) },
    { name: 'f16', datatype: 'FP16', shape: [1], data: new Uint16Array([0x3c00]) },
    { name: 'bf16', datatype: 'BF16', shape: [1], data: new Uint16Array([0x3f80]) },
    { name: 'f32', datatype: 'FP32', shape: [2], data: new Float32Array([0.5, -1]) },
    { name: 'f64', datatype: 'FP64', shape: [1], data: new Float64Array([Math.PI]) },
    { name: 's', datatype: 'BYTES', shape: [2], data: [Buffer.from('ab'), Buffer.from('')] },
  ];
  for (const c of cases) {
    const raw = encodeRaw(c);
    const back = decodeRaw(c.name, c.datatype, c.shape, raw);
    assert.deepEqual(back, c, c.datatype);
  }
  assert.deepEqual([...encodeRaw(cases[7]!).subarray(0, 8)], [255, 255, 255, 255, 255, 255, 255, 255]);
  assert.deepEqual([...encodeRaw(cases[11]!).subarray(0, 4)], [0, 0, 0, 0x3f]);
  assert.deepEqual([...encodeRaw(cases[13]!)], [2, 0, 0, 0, 97, 98, 0, 0, 0, 0]);
  // Unaligned input buffers are copied, not misread.
  const unaligned = Buffer.alloc(9).subarray(1);
  unaligned.writeFloatLE(2.5, 0);
  unaligned.writeFloatLE(-4, 4);
  assert.deepEqual([...(decodeRaw('u', 'FP32', [2], unaligned).data as Float32Array)], [2.5, -4]);
  assert.throws(
    () => decodeRaw('x', 'FP32', [3], Buffer.alloc(8)),
    /unexpected total byte size 8 for input 'x', expecting 12/,
  );
  assert.throws(
    () => encodeRaw({ name: 'x', datatype: 'FP32', shape: [3], data: new Float32Array(2) }),
    AppError,
  );
  assert.throws(
    () => encodeRaw({ name: 'x', datatype: 'INT64', shape: [1], data: new Float32Array(1) }),
    AppError,
  );
});
