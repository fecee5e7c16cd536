/**
 * Malformed requests, sent with a bare gRPC client (no client-side validation), get the status Triton
 * gives, and the server keeps serving. Typed `contents` inputs are accepted like raw contents.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import type { GRPCInferenceServiceClient } from '../../src/generated/inference/GRPCInferenceService.js';
import type { ModelInferRequest } from '../../src/generated/inference/ModelInferRequest.js';
import type { ModelInferResponse__Output } from '../../src/generated/inference/ModelInferResponse.js';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { loadInferenceProto } from '../../src/triton/proto.js';
import { encodeRaw } from '../../src/triton/tensor.js';
import { D_MODEL, MASK_BYTES, MAX_BATCH, MODEL_REPOSITORY, prompt } from './helpers.js';

let server: RunningModelServer;
let small: RunningModelServer;
let raw: GRPCInferenceServiceClient;
let rawSmall: GRPCInferenceServiceClient;

function bareClient(address: string): GRPCInferenceServiceClient {
  const Ctor = loadInferenceProto().inference.GRPCInferenceService;
  return new Ctor(address, credentials.createInsecure(), {
    'grpc.max_send_message_length': -1,
    'grpc.max_receive_message_length': -1,
  });
}

function infer(
  client: GRPCInferenceServiceClient,
  req: ModelInferRequest,
): Promise<ModelInferResponse__Output> {
  return new Promise((resolve, reject) => {
    client.ModelInfer(req, { deadline: Date.now() + 20_000 }, (error, res) =>
      error ? reject(error) : resolve(res!),
    );
  });
}

function live(client: GRPCInferenceServiceClient): Promise<boolean> {
  return new Promise((resolve, reject) => {
    client.ServerLive({}, { deadline: Date.now() + 5000 }, (error, res) =>
      error ? reject(error) : resolve(res!.live),
    );
  });
}

before(async () => {
  server = await startModelServer({ repository: MODEL_REPOSITORY });
  small = await startModelServer({ repository: MODEL_REPOSITORY, maxMessageBytes: 64 * 1024 });
  raw = bareClient(server.address);
  rawSmall = bareClient(small.address);
});

after(async () => {
  raw.close();
  rawSmall.close();
  await Promise.all([server.close(), small.close()]);
});

const { ids, mask } = prompt(1, 4, 7);
const idsRaw = encodeRaw(ids);
const maskRaw = encodeRaw(mask);
const t = (name: string, datatype: string, shape: number[]) => ({ name, datatype, shape });

/** A request to llm_upper (one row, prompt of 2, one memory slot of `memoryD` floats) with exclude_mask as given. */
function upper(
  maskShape: number[],
  maskBytes: number,
  maskType = 'UINT8',
  memoryD = D_MODEL,
): ModelInferRequest {
  return {
    model_name: 'llm_upper',
    inputs: [
      t('hidden', 'FP32', [1, 2, D_MODEL]),
      t('attention_mask', 'INT64', [1, 2]),
      t('memory', 'FP32', [1, 1, memoryD]),
      t('memory_mask', 'INT64', [1, 1]),
      t('exclude_mask', maskType, maskShape),
    ],
    raw_input_contents: [
      Buffer.alloc(2 * D_MODEL * 4),
      Buffer.alloc(16),
      Buffer.alloc(memoryD * 4),
      Buffer.alloc(8),
      Buffer.alloc(maskBytes),
    ],
  };
}

/** A valid request to llm_lower, changed by each case. */
function base(): ModelInferRequest {
  return {
    model_name: 'llm_lower',
    model_version: '',
    inputs: [t('input_ids', 'INT64', [1, 4]), t('attention_mask', 'INT64', [1, 4])],
    raw_input_contents: [idsRaw, maskRaw],
  };
}

interface Case {
  name: string;
  req: ModelInferRequest;
  code: status;
  message?: RegExp;
}

const cases: Case[] = [
  {
    name: 'unknown model',
    req: { ...base(), model_name: 'nope' },
    code: status.NOT_FOUND,
    message: /^Request for unknown model: 'nope' is not found$/,
  },
  {
    name: 'unknown version',
    req: { ...base(), model_version: '7' },
    code: status.NOT_FOUND,
    message: /'llm_lower' version 7 is not found/,
  },
  { name: 'empty model name', req: { ...base(), model_name: '' }, code: status.NOT_FOUND },
  {
    name: 'wrong datatype',
    req: { ...base(), inputs: [t('input_ids', 'INT32', [1, 8]), t('attention_mask', 'INT64', [1, 4])] },
    code: status.INVALID_ARGUMENT,
    message: /inference input 'input_ids' data-type is 'INT32', but model 'llm_lower' expects 'INT64'/,
  },
  {
    name: 'wrong rank',
    req: { ...base(), inputs: [t('input_ids', 'INT64', [4]), t('attention_mask', 'INT64', [1, 4])] },
    code: status.INVALID_ARGUMENT,
    message: /unexpected shape for input 'input_ids' for model 'llm_lower'\. Expected \[-1,-1\], got \[4\]/,
  },
  {
    name: 'missing input',
    req: { ...base(), inputs: [t('input_ids', 'INT64', [1, 4])], raw_input_contents: [idsRaw] },
    code: status.INVALID_ARGUMENT,
    message: /expected 2 inputs but got 1 inputs for model 'llm_lower'/,
  },
  {
    name: 'extra input',
    req: {
      ...base(),
      inputs: [...base().inputs!, t('extra', 'INT64', [1, 4])],
      raw_input_contents: [idsRaw, maskRaw, maskRaw],
    },
    code: status.INVALID_ARGUMENT,
    message: /expected 2 inputs but got 3 inputs/,
  },
  {
    name: 'unknown input name',
    req: { ...base(), inputs: [t('input_ids', 'INT64', [1, 4]), t('mask', 'INT64', [1, 4])] },
    code: status.INVALID_ARGUMENT,
    message: /unexpected inference input 'mask' for model 'llm_lower'/,
  },
  {
    name: 'duplicate input',
    req: { ...base(), inputs: [t('input_ids', 'INT64', [1, 4]), t('input_ids', 'INT64', [1, 4])] },
    code: status.INVALID_ARGUMENT,
  },
  {
    name: 'byte length mismatch',
    req: { ...base(), raw_input_contents: [idsRaw.subarray(0, 31), maskRaw] },
    code: status.INVALID_ARGUMENT,
    message: /unexpected total byte size 31 for input 'input_ids', expecting 32/,
  },
  {
    name: 'fewer raw contents than inputs',
    req: { ...base(), raw_input_contents: [idsRaw] },
    code: status.INVALID_ARGUMENT,
  },
  {
    name: 'batch above max_batch_size',
    req: {
      ...base(),
      inputs: [t('input_ids', 'INT64', [MAX_BATCH + 1, 1]), t('attention_mask', 'INT64', [MAX_BATCH + 1, 1])],
      raw_input_contents: [Buffer.alloc((MAX_BATCH + 1) * 8), Buffer.alloc((MAX_BATCH + 1) * 8)],
    },
    code: status.INVALID_ARGUMENT,
    message: new RegExp(`batch-size must be <= ${MAX_BATCH}`),
  },
  {
    name: 'inputs with different batch sizes',
    req: {
      ...base(),
      inputs: [t('input_ids', 'INT64', [2, 2]), t('attention_mask', 'INT64', [1, 4])],
    },
    code: status.INVALID_ARGUMENT,
  },
  {
    name: 'invalid datatype name',
    req: { ...base(), inputs: [t('input_ids', 'FLOAT', [1, 4]), t('attention_mask', 'INT64', [1, 4])] },
    code: status.INVALID_ARGUMENT,
  },
  {
    name: 'negative dimension',
    req: { ...base(), inputs: [t('input_ids', 'INT64', [1, -4]), t('attention_mask', 'INT64', [1, 4])] },
    code: status.INVALID_ARGUMENT,
  },
  {
    name: 'unknown requested output',
    req: { ...base(), outputs: [{ name: 'logits' }] },
    code: status.INVALID_ARGUMENT,
    message: /unexpected inference output 'logits' for model 'llm_lower'/,
  },
  {
    name: 'both raw and typed contents',
    req: {
      ...base(),
      inputs: [
        { ...t('input_ids', 'INT64', [1, 4]), contents: { int64_contents: [1, 2, 3, 4] } },
        t('attention_mask', 'INT64', [1, 4]),
      ],
    },
    code: status.INVALID_ARGUMENT,
  },
  {
    name: 'typed contents with the wrong element count',
    req: {
      model_name: 'llm_lower',
      inputs: [
        { ...t('input_ids', 'INT64', [1, 4]), contents: { int64_contents: [1, 5, 6] } },
        { ...t('attention_mask', 'INT64', [1, 4]), contents: { int64_contents: [1, 1, 1, 1] } },
      ],
    },
    code: status.INVALID_ARGUMENT,
  },
  {
    name: 'fixed dimension mismatch (memory d/2 instead of d)',
    req: upper([1, MASK_BYTES], MASK_BYTES, 'UINT8', D_MODEL / 2),
    code: status.INVALID_ARGUMENT,
    message: new RegExp(`Expected \\[-1,-1,${D_MODEL}\\], got \\[1,1,${D_MODEL / 2}\\]`),
  },
  {
    name: 'exclude_mask one byte short of the catalog (fixed dims from config.pbtxt)',
    req: upper([1, MASK_BYTES - 1], MASK_BYTES - 1),
    code: status.INVALID_ARGUMENT,
    message: new RegExp(
      `unexpected shape for input 'exclude_mask' for model 'llm_upper'. Expected \\[-1,${MASK_BYTES}\\], got \\[1,${MASK_BYTES - 1}\\]`,
    ),
  },
  {
    name: 'exclude_mask raw contents shorter than its shape',
    req: upper([1, MASK_BYTES], MASK_BYTES - 3),
    code: status.INVALID_ARGUMENT,
    message: new RegExp(
      `unexpected total byte size ${MASK_BYTES - 3} for input 'exclude_mask', expecting ${MASK_BYTES}`,
    ),
  },
  {
    name: 'exclude_mask as BOOL instead of UINT8',
    req: upper([1, MASK_BYTES], MASK_BYTES, 'BOOL'),
    code: status.INVALID_ARGUMENT,
    message: /inference input 'exclude_mask' data-type is 'BOOL', but model 'llm_upper' expects 'UINT8'/,
  },
  {
    name: 'exclude_mask left out',
    req: (() => {
      const r = upper([1, MASK_BYTES], MASK_BYTES);
      return { ...r, inputs: r.inputs!.slice(0, 4), raw_input_contents: r.raw_input_contents!.slice(0, 4) };
    })(),
    code: status.INVALID_ARGUMENT,
    message:
      /expected 5 inputs but got 4 inputs for model 'llm_upper'.*missing required input\(s\) \['exclude_mask'\]/,
  },
];

void test(`a table of ${cases.length} malformed requests gets Triton's status codes and the server stays up`, async () => {
  assert.ok(cases.length >= 15);
  for (const c of cases) {
    const error = await infer(raw, c.req).then(
      () => undefined,
      (e: ServiceError) => e,
    );
    assert.ok(error, `${c.name}: expected an error`);
    assert.equal(error.code, c.code, `${c.name}: got ${status[error.code]} (${error.details})`);
    if (c.message) assert.match(error.details, c.message, c.name);
    assert.equal(await live(raw), true, `${c.name}: server still live`);
  }
  const ok = await infer(raw, base());
  assert.equal(ok.outputs.length, 2);
});

void test('typed contents give the same result as raw contents', async () => {
  const viaRaw = await infer(raw, { ...base(), outputs: [{ name: 'query' }] });
  const viaContents = await infer(raw, {
    model_name: 'llm_lower',
    inputs: [
      {
        ...t('input_ids', 'INT64', [1, 4]),
        contents: { int64_contents: [...(ids.data as BigInt64Array)].map(String) },
      },
      {
        ...t('attention_mask', 'INT64', [1, 4]),
        contents: { int64_contents: [...(mask.data as BigInt64Array)].map(String) },
      },
    ],
    outputs: [{ name: 'query' }],
  });
  assert.deepEqual(viaContents.outputs, viaRaw.outputs);
  assert.deepEqual(viaContents.raw_output_contents, viaRaw.raw_output_contents);
});

void test('an exclude_mask in typed uint_contents ranks like the same bytes in raw contents', async () => {
  const maskBytes = Buffer.alloc(MASK_BYTES);
  for (let i = 0; i < MASK_BYTES; i += 1) maskBytes[i] = (i * 37) & 0xff;
  const ones = new BigInt64Array([1n, 1n]);
  const rawReq = (exclude: Buffer): ModelInferRequest => {
    const r = upper([1, MASK_BYTES], MASK_BYTES);
    r.raw_input_contents![1] = Buffer.from(ones.buffer);
    r.raw_input_contents![4] = exclude;
    return { ...r, outputs: [{ name: 'top_ids' }] };
  };
  const plain = await infer(raw, rawReq(Buffer.alloc(MASK_BYTES)));
  const viaRaw = await infer(raw, rawReq(maskBytes));
  const r = upper([1, MASK_BYTES], MASK_BYTES);
  const contents = [
    { fp32_contents: Array<number>(2 * D_MODEL).fill(0) },
    { int64_contents: ['1', '1'] },
    { fp32_contents: Array<number>(D_MODEL).fill(0) },
    { int64_contents: ['0'] },
    { uint_contents: [...maskBytes] },
  ];
  const viaTyped = await infer(raw, {
    ...r,
    inputs: r.inputs!.map((input, i) => ({ ...input, contents: contents[i] })),
    raw_input_contents: [],
    outputs: [{ name: 'top_ids' }],
  });
  assert.deepEqual(viaTyped.raw_output_contents, viaRaw.raw_output_contents);
  assert.notDeepEqual(viaRaw.raw_output_contents, plain.raw_output_contents, 'the mask changes the ranking');
});

void test('an oversize message gets RESOURCE_EXHAUSTED and the server keeps serving', async () => {
  const rows = 64;
  const len = 200; // 64 * 200 * 8 bytes = 100 KiB per input, over the 64 KiB limit
  const big: ModelInferRequest = {
    model_name: 'llm_lower',
    inputs: [t('input_ids', 'INT64', [rows, len]), t('attention_mask', 'INT64', [rows, len])],
    raw_input_contents: [Buffer.alloc(rows * len * 8), Buffer.alloc(rows * len * 8)],
  };
  const error = await infer(rawSmall, big).then(
    () => undefined,
    (e: ServiceError) => e,
  );
  assert.equal(error?.code, status.RESOURCE_EXHAUSTED, error?.details);
  assert.equal(await live(rawSmall), true);
  const ok = await infer(rawSmall, base());
  assert.equal(ok.model_name, 'llm_lower');
});
