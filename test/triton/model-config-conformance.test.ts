/**
 * Every message, field and enum of our model configuration (proto/inference/model_config.proto, the schema
 * config.pbtxt is parsed against) must match NVIDIA Triton's model_config.proto as listed in
 * ../shared/conformance/triton-model-config-wire.json. The file is required: a missing file fails the test.
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

interface ConfigSpec {
  messages: WireMessages;
  enums: Record<string, Record<string, number>>;
}

const spec = loadWireSpec<ConfigSpec>('triton-model-config-wire.json');
// model_config.proto alone (it imports nothing), so everything under `inference` here is defined by it.
const { messages, enums } = definitions(loadProtoRoot('inference/model_config.proto'), 'inference');

void test('every message of model_config.proto is one of Triton, field by field', () => {
  assert.ok(messages.size > 0);
  for (const [name, type] of messages) {
    const expected = spec.messages[name];
    assert.ok(expected, `message inference.${name} is not in Triton's model_config.proto`);
    assertMessageMatches(name, type, expected);
  }
});

void test('every enum of model_config.proto is one of Triton, value by value', () => {
  assert.ok(enums.size > 0);
  for (const [name, type] of enums) {
    const expected = spec.enums[name];
    assert.ok(expected, `enum inference.${name} is not in Triton's model_config.proto`);
    assert.deepEqual({ ...type.values }, expected, `enum inference.${name} differs from Triton`);
  }
});

void test("every message and enum of Triton's model_config.proto is defined (no Triton config field is unknown)", () => {
  assert.deepEqual([...messages.keys()].sort(), Object.keys(spec.messages).sort());
  assert.deepEqual([...enums.keys()].sort(), Object.keys(spec.enums).sort());
});
