/**
 * Protobuf text format (the syntax of Triton's config.pbtxt) → a typed message, driven by the
 * reflection of our own model_config.proto via protobufjs.
 *
 * Why hand-written: no maintained npm package parses protobuf text format into a typed message
 * (protobufjs reads .proto and JSON only; `prototxt-parser` is small, unmaintained since 2018, untyped,
 * and would still need the schema-driven conversion below). The grammar Triton configs use is tiny:
 * `name: value`, `name { ... }` / `name: { ... }`, lists `[a, b]`, `#` comments, quoted strings,
 * numbers, identifiers (enum values, true/false). Map fields are `name { key: .. value: .. }` entries.
 */
import protobuf from 'protobufjs';
import { resolve } from 'node:path';
import { PROTO_DIR } from '../triton/proto.js';

export class PbtxtError extends Error {
  override readonly name = 'PbtxtError';
}

type Scalar =
  { kind: 'string'; value: string } | { kind: 'number'; value: string } | { kind: 'ident'; value: string };
type Value = Scalar | { kind: 'message'; fields: Entry[] } | { kind: 'list'; items: Value[] };
interface Entry {
  name: string;
  value: Value;
  line: number;
}

interface Token {
  kind: 'punct' | 'string' | 'number' | 'ident';
  text: string;
  line: number;
}

const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"' };

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  while (i < src.length) {
    const c = src[i]!;
    if (c === '\n') {
      line += 1;
      i += 1;
    } else if (/\s/.test(c)) {
      i += 1;
    } else if (c === '#') {
      while (i < src.length && src[i] !== '\n') i += 1;
    } else if ('{}[]:,;<>'.includes(c)) {
      tokens.push({ kind: 'punct', text: c, line });
      i += 1;
    } else if (c === '"' || c === "'") {
      let out = '';
      i += 1;
      while (i < src.length && src[i] !== c) {
        if (src[i] === '\n') throw new PbtxtError(`line ${line}: unterminated string`);
        if (src[i] === '\\') {
          const e = src[i + 1] ?? '';
          out += ESCAPES[e] ?? e;
          i += 2;
        } else {
          out += src[i];
          i += 1;
        }
      }
      if (i >= src.length) throw new PbtxtError(`line ${line}: unterminated string`);
      i += 1;
      tokens.push({ kind: 'string', text: out, line });
    } else {
      const m = /^[-+]?(?:[0-9][0-9a-zA-Z_.+-]*|\.[0-9][0-9eE+-]*|inf|nan)|^[A-Za-z_][A-Za-z0-9_.]*/.exec(
        src.slice(i),
      );
      if (m === null) throw new PbtxtError(`line ${line}: unexpected character '${c}'`);
      const text = m[0];
      tokens.push({ kind: /^[-+0-9.]/.test(text) ? 'number' : 'ident', text, line });
      i += text.length;
    }
  }
  return tokens;
}

class Parser {
  private pos = 0;
  constructor(private readonly tokens: Token[]) {}

  private peek(): Token | undefined {
    return this.tokens[this.pos];
  }

  private next(what: string): Token {
    const t = this.tokens[this.pos];
    if (t === undefined) throw new PbtxtError(`unexpected end of input, expecting ${what}`);
    this.pos += 1;
    return t;
  }

  private isPunct(text: string): boolean {
    const t = this.peek();
    return t?.kind === 'punct' && t.text === text;
  }

  parseFields(close: string | undefined): Entry[] {
    const entries: Entry[] = [];
    for (;;) {
      const t = this.peek();
      if (t === undefined) {
        if (close !== undefined) throw new PbtxtError(`unexpected end of input, expecting '${close}'`);
        return entries;
      }
      if (close !== undefined && t.kind === 'punct' && t.text === close) {
        this.pos += 1;
        return entries;
      }
      const name = this.next('a field name');
      if (name.kind !== 'ident')
        throw new PbtxtError(`line ${name.line}: expecting a field name, got '${name.text}'`);
      let colon = false;
      if (this.isPunct(':')) {
        this.pos += 1;
        colon = true;
      }
      const value = this.parseValue(colon, name.line);
      entries.push({ name: name.text, value, line: name.line });
      if (this.isPunct(',') || this.isPunct(';')) this.pos += 1;
    }
  }

  private parseValue(colon: boolean, line: number): Value {
    if (this.isPunct('{') || this.isPunct('<')) {
      const open = this.next('{').text;
      return { kind: 'message', fields: this.parseFields(open === '{' ? '}' : '>') };
    }
    if (this.isPunct('[')) {
      this.pos += 1;
      const items: Value[] = [];
      while (!this.isPunct(']')) {
        items.push(this.parseValue(true, line));
        if (this.isPunct(',')) this.pos += 1;
        else if (!this.isPunct(']')) throw new PbtxtError(`line ${line}: expecting ',' or ']' in list`);
      }
      this.pos += 1;
      return { kind: 'list', items };
    }
    if (!colon) throw new PbtxtError(`line ${line}: expecting ':' or '{' after field name`);
    const t = this.next('a value');
    if (t.kind === 'punct') throw new PbtxtError(`line ${t.line}: unexpected '${t.text}'`);
    if (t.kind === 'string') {
      // Adjacent string literals concatenate, as in protobuf text format.
      let text = t.text;
      while (this.peek()?.kind === 'string') text += this.next('string').text;
      return { kind: 'string', value: text };
    }
    return { kind: t.kind, value: t.text };
  }
}

let modelConfigType: protobuf.Type | undefined;

/** The reflected `inference.ModelConfig` type from proto/inference/model_config.proto. */
export function modelConfigReflection(): protobuf.Type {
  if (modelConfigType === undefined) {
    const root = new protobuf.Root();
    root.loadSync(resolve(PROTO_DIR, 'inference/model_config.proto'), { keepCase: true });
    root.resolveAll();
    modelConfigType = root.lookupType('inference.ModelConfig');
  }
  return modelConfigType;
}

/**
 * Fields Triton knows but our proto subset leaves out. They are accepted and ignored (the local server
 * has no use for them) instead of being refused as unknown, since real Triton would accept them.
 */
const KNOWN_UNMODELLED = new Set([
  'ModelConfig.batch_input',
  'ModelConfig.batch_output',
  'ModelConfig.optimization',
  'ModelConfig.sequence_batching',
  'ModelConfig.model_warmup',
  'ModelConfig.model_operations',
  'ModelConfig.model_transaction_policy',
  'ModelConfig.model_repository_agents',
  'ModelConfig.response_cache',
  'ModelConfig.model_metrics',
  'ModelInstanceGroup.rate_limiter',
  'ModelInstanceGroup.secondary_devices',
  'ModelDynamicBatching.default_queue_policy',
  'ModelDynamicBatching.priority_queue_policy',
  'ModelInput.is_non_linear_format_io',
  'ModelOutput.is_non_linear_format_io',
  'ModelEnsembling.max_inflight_responses',
]);

const INT_TYPES = new Set([
  'int32',
  'int64',
  'uint32',
  'uint64',
  'sint32',
  'sint64',
  'fixed32',
  'fixed64',
  'sfixed32',
  'sfixed64',
]);

function scalarToJs(field: protobuf.Field, v: Value, line: number, path: string): unknown {
  if (v.kind === 'message' || v.kind === 'list')
    throw new PbtxtError(`line ${line}: '${path}' expects a scalar`);
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Enum) {
    if (v.kind === 'ident' && resolved.values[v.value] !== undefined) return v.value;
    if (v.kind === 'number' && /^\d+$/.test(v.value)) return Number(v.value);
    throw new PbtxtError(`line ${line}: unknown enumeration value '${v.value}' for '${path}'`);
  }
  if (field.type === 'string' || field.type === 'bytes') {
    if (v.kind !== 'string') throw new PbtxtError(`line ${line}: '${path}' expects a quoted string`);
    return v.value;
  }
  if (field.type === 'bool') {
    if (v.value === 'true' || v.value === '1') return true;
    if (v.value === 'false' || v.value === '0') return false;
    throw new PbtxtError(`line ${line}: '${path}' expects true or false`);
  }
  if (v.kind !== 'number') throw new PbtxtError(`line ${line}: '${path}' expects a number, got '${v.value}'`);
  if (INT_TYPES.has(field.type)) {
    if (!/^[-+]?\d+$/.test(v.value)) throw new PbtxtError(`line ${line}: '${path}' expects an integer`);
    if (field.type.startsWith('u') && v.value.startsWith('-')) {
      throw new PbtxtError(`line ${line}: '${path}' expects an unsigned integer`);
    }
    return Number(v.value);
  }
  const n = Number(v.value);
  if (Number.isNaN(n)) throw new PbtxtError(`line ${line}: '${path}' expects a number`);
  return n;
}

function messageToJs(type: protobuf.Type, entries: Entry[], path: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const e of entries) {
    const field = type.fields[e.name];
    const fieldPath = path === '' ? e.name : `${path}.${e.name}`;
    if (field === undefined) {
      if (KNOWN_UNMODELLED.has(`${type.name}.${e.name}`)) continue;
      throw new PbtxtError(`line ${e.line}: message ${type.name} has no field named '${e.name}'`);
    }
    const items = e.value.kind === 'list' ? e.value.items : [e.value];
    if (e.value.kind === 'list' && !field.repeated && !field.map) {
      throw new PbtxtError(`line ${e.line}: '${fieldPath}' is not a repeated field`);
    }
    for (const item of items) {
      let value: unknown;
      if (field instanceof protobuf.MapField) {
        if (item.kind !== 'message')
          throw new PbtxtError(`line ${e.line}: map '${fieldPath}' expects { key value }`);
        const key = item.fields.find((f) => f.name === 'key');
        const val = item.fields.find((f) => f.name === 'value');
        if (
          key === undefined ||
          val === undefined ||
          key.value.kind === 'message' ||
          key.value.kind === 'list'
        ) {
          throw new PbtxtError(`line ${e.line}: map '${fieldPath}' entry needs key and value`);
        }
        const map = (out[e.name] as Record<string, unknown> | undefined) ?? {};
        const valueType = field.resolvedType;
        map[key.value.value] =
          valueType instanceof protobuf.Type
            ? messageToJs(
                valueType,
                val.value.kind === 'message' ? val.value.fields : [],
                `${fieldPath}[${key.value.value}]`,
              )
            : scalarToJs(field, val.value, val.line, fieldPath);
        out[e.name] = map;
        continue;
      }
      const resolved = field.resolvedType;
      if (resolved instanceof protobuf.Type) {
        if (item.kind !== 'message')
          throw new PbtxtError(`line ${e.line}: '${fieldPath}' expects a message { ... }`);
        value = messageToJs(resolved, item.fields, fieldPath);
      } else {
        value = scalarToJs(field, item, e.line, fieldPath);
      }
      if (field.repeated) {
        const list = (out[e.name] as unknown[] | undefined) ?? [];
        list.push(value);
        out[e.name] = list;
      } else {
        if (e.name in out)
          throw new PbtxtError(
            `line ${e.line}: non-repeated field '${fieldPath}' is specified multiple times`,
          );
        out[e.name] = value;
      }
    }
  }
  // protobuf's own text parser refuses two members of one oneof; so do we.
  for (const oneof of type.oneofsArray) {
    const set = oneof.fieldsArray.filter((f) => f.name in out).map((f) => f.name);
    if (set.length > 1) {
      throw new PbtxtError(`fields ${set.join(' and ')} are members of the same oneof '${oneof.name}'`);
    }
  }
  return out;
}

/** Options matching PROTO_LOADER_OPTIONS, so the result has the shape of ModelConfig__Output. */
const TO_OBJECT: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
};

/** Parses protobuf text into a message of `type`, as a plain object in proto-loader's output shape. */
export function parseTextMessage(type: protobuf.Type, text: string): Record<string, unknown> {
  const entries = new Parser(tokenize(text)).parseFields(undefined);
  const plain = messageToJs(type, entries, '');
  return type.toObject(type.fromObject(plain), TO_OBJECT);
}
