/**
 * Wire conformance: every message, field and RPC of the inference protocol (proto/inference/grpc_service.proto)
 * must match NVIDIA Triton's own definitions as listed in ../shared/conformance/triton-grpc-wire.json. The file
 * is required: a missing file fails the test.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  assertMessageMatches,
  definitions,
  loadProtoRoot,
  loadWireSpec,
  type WireMessages,
} from './wire-conformance.js';

interface WireRpc {
  req: string;
  res: string;
  reqStream: boolean;
  resStream: boolean;
}
interface WireSpec {
  services: Record<string, WireRpc>;
  messages: WireMessages;
}

const loadSpec = (): WireSpec => loadWireSpec<WireSpec>('triton-grpc-wire.json');
const loadRoot = (): ReturnType<typeof loadProtoRoot> => loadProtoRoot('inference/grpc_service.proto');

void test('the conformance list is present and non-empty', () => {
  const spec = loadSpec();
  assert.ok(Object.keys(spec.services).length > 0);
  assert.ok(Object.keys(spec.messages).length > 0);
});

void test('every inference message we define matches Triton field by field', () => {
  const spec = loadSpec();
  const root = loadRoot();
  const { messages } = definitions(root, 'inference');

  let checked = 0;
  for (const [name, type] of messages) {
    const expected = spec.messages[name];
    // The model configuration's messages are in the other list (model-config-conformance.test.ts).
    if (expected === undefined) continue;
    checked += 1;
    assertMessageMatches(name, type, expected);
  }
  assert.ok(checked >= 20, `only ${checked} messages were checked`);
});

void test('every RPC we define exists in Triton with the same types and streaming flags', () => {
  const spec = loadSpec();
  const root = loadRoot();
  const service = root.lookupService('inference.GRPCInferenceService');
  const required = [
    'ServerLive',
    'ServerReady',
    'ModelReady',
    'ServerMetadata',
    'ModelMetadata',
    'ModelConfig',
    'RepositoryIndex',
    'ModelInfer',
  ];
  for (const name of required) assert.ok(service.methods[name], `missing RPC ${name}`);

  for (const method of service.methodsArray) {
    const expected = spec.services[method.name];
    assert.ok(expected, `RPC ${method.name} is not a Triton RPC`);
    assert.deepEqual(
      {
        req: method.requestType,
        res: method.responseType,
        reqStream: method.requestStream === true,
        resStream: method.responseStream === true,
      },
      expected,
      `RPC ${method.name} differs from Triton`,
    );
    // Request and response messages of every RPC we define must be checked above (listed in the spec).
    assert.ok(spec.messages[method.requestType], `${method.requestType} not in the conformance list`);
    if (method.name !== 'ModelStatistics') {
      assert.ok(spec.messages[method.responseType], `${method.responseType} not in the conformance list`);
    }
  }
});

void test('statistics messages, outside the list, keep the field numbers of Triton (spot checks)', () => {
  // ModelStatistics messages are not in the conformance list; these numbers come from Triton's
  // grpc_service.proto and guard against accidental renumbering. (The model configuration's messages are
  // checked in full by model-config-conformance.test.ts.)
  const root = loadRoot();
  const ids = (name: string): Record<string, number> =>
    Object.fromEntries(root.lookupType(name).fieldsArray.map((f) => [f.name, f.id]));
  const stats = ids('inference.ModelStatistics');
  assert.equal(stats.inference_count, 4);
  assert.equal(stats.execution_count, 5);
  assert.equal(ids('inference.ModelStatisticsResponse').model_stats, 1);
});
