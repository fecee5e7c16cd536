/**
 * Wire conformance: every message, field and RPC defined under `package inference` in proto/ must match
 * NVIDIA Triton's own definitions as listed in ../shared/conformance/triton-grpc-wire.json. The file is
 * required: a missing file fails the test.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

interface WireField {
  id: number;
  type: string;
  repeated: boolean;
  map: boolean;
  keyType: string | null;
  oneof: string | null;
}
interface WireRpc {
  req: string;
  res: string;
  reqStream: boolean;
  resStream: boolean;
}
interface WireSpec {
  services: Record<string, WireRpc>;
  messages: Record<string, Record<string, WireField>>;
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const specPath = resolve(repoRoot, '../shared/conformance/triton-grpc-wire.json');

function loadSpec(): WireSpec {
  // readFileSync throws ENOENT when the file is missing, which fails the test (never a skip).
  return JSON.parse(readFileSync(specPath, 'utf8')) as WireSpec;
}

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => resolve(repoRoot, 'proto', target);
  root.loadSync('inference/grpc_service.proto', { keepCase: true });
  root.resolveAll();
  return root;
}

/** All message types under `inference`, keyed as in the spec ("Outer.Inner" for nested ones). */
function collectMessages(ns: protobuf.NamespaceBase, prefix: string, out: Map<string, protobuf.Type>): void {
  for (const nested of ns.nestedArray) {
    if (nested instanceof protobuf.Type) {
      const key = prefix === '' ? nested.name : `${prefix}.${nested.name}`;
      out.set(key, nested);
      collectMessages(nested, key, out);
    }
  }
}

function describe(field: protobuf.Field): WireField {
  const isMap = field instanceof protobuf.MapField;
  return {
    id: field.id,
    type: field.type,
    repeated: field.repeated,
    map: isMap,
    keyType: isMap ? field.keyType : null,
    oneof: field.partOf?.name ?? null,
  };
}

void test('the conformance list is present and non-empty', () => {
  const spec = loadSpec();
  assert.ok(Object.keys(spec.services).length > 0);
  assert.ok(Object.keys(spec.messages).length > 0);
});

void test('every inference message we define matches Triton field by field', () => {
  const spec = loadSpec();
  const root = loadRoot();
  const messages = new Map<string, protobuf.Type>();
  collectMessages(root.lookup('inference') as protobuf.Namespace, '', messages);

  let checked = 0;
  for (const [name, type] of messages) {
    const expected = spec.messages[name];
    if (expected === undefined) continue; // ModelConfig & statistics messages: not in the list (see below).
    checked += 1;
    const actual: Record<string, WireField> = {};
    for (const field of type.fieldsArray) actual[field.name] = describe(field);
    assert.deepEqual(actual, expected, `message inference.${name} differs from Triton`);
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

void test('messages outside the list keep the field numbers of Triton (spot checks)', () => {
  // ModelConfig and ModelStatistics messages are not in the conformance list; these numbers come from
  // Triton's model_config.proto / grpc_service.proto and guard against accidental renumbering.
  const root = loadRoot();
  const ids = (name: string): Record<string, number> =>
    Object.fromEntries(root.lookupType(name).fieldsArray.map((f) => [f.name, f.id]));
  const config = ids('inference.ModelConfig');
  assert.equal(config.name, 1);
  assert.equal(config.platform, 2);
  assert.equal(config.backend, 17);
  assert.equal(config.max_batch_size, 4);
  assert.equal(config.input, 5);
  assert.equal(config.output, 6);
  assert.equal(config.dynamic_batching, 11);
  assert.equal(config.ensemble_scheduling, 15);
  const stats = ids('inference.ModelStatistics');
  assert.equal(stats.inference_count, 4);
  assert.equal(stats.execution_count, 5);
  assert.equal(ids('inference.ModelStatisticsResponse').model_stats, 1);
  assert.equal(ids('inference.ModelDynamicBatching').max_queue_delay_microseconds, 2);
});
