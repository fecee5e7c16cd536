/**
 * Comparison of our .proto files with NVIDIA Triton's published definitions, listed in
 * ../shared/conformance/*.json (one entry per message, keyed "Outer.Inner" for nested ones, with each field's
 * number, type as written, cardinality, map key type and oneof). Used by the conformance tests of the
 * inference protocol and of the model configuration.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

// (not helpers.ts's REPO_ROOT: that module loads onnxruntime and the model configs, which these tests need not)
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface WireField {
  id: number;
  type: string;
  repeated: boolean;
  map: boolean;
  keyType: string | null;
  oneof: string | null;
}

export type WireMessages = Record<string, Record<string, WireField>>;

/** A conformance list from ../shared/conformance; a missing file throws, which fails the test (never a skip). */
export function loadWireSpec<T>(file: string): T {
  return JSON.parse(readFileSync(resolve(REPO_ROOT, '../shared/conformance', file), 'utf8')) as T;
}

/** One .proto under proto/ (with its imports), resolved, field names as written. */
export function loadProtoRoot(file: string): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => resolve(REPO_ROOT, 'proto', target);
  root.loadSync(file, { keepCase: true });
  root.resolveAll();
  return root;
}

/** Every message and enum under `pkg`, keyed as in the conformance lists. */
export function definitions(
  root: protobuf.Root,
  pkg: string,
): { messages: Map<string, protobuf.Type>; enums: Map<string, protobuf.Enum> } {
  const messages = new Map<string, protobuf.Type>();
  const enums = new Map<string, protobuf.Enum>();
  const walk = (ns: protobuf.NamespaceBase, prefix: string): void => {
    for (const nested of ns.nestedArray) {
      const key = prefix === '' ? nested.name : `${prefix}.${nested.name}`;
      if (nested instanceof protobuf.Enum) enums.set(key, nested);
      if (nested instanceof protobuf.Type) {
        messages.set(key, nested);
        walk(nested, key);
      }
    }
  };
  walk(root.lookup(pkg) as protobuf.Namespace, '');
  return { messages, enums };
}

function describeField(field: protobuf.Field): WireField {
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

/** Asserts that `type` has exactly the fields Triton lists for it, each described identically. */
export function assertMessageMatches(
  name: string,
  type: protobuf.Type,
  expected: Record<string, WireField>,
): void {
  const actual: Record<string, WireField> = {};
  for (const field of type.fieldsArray) actual[field.name] = describeField(field);
  assert.deepEqual(actual, expected, `message inference.${name} differs from Triton`);
}
