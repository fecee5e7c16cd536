/**
 * Event payloads of the bus adapters: `automr.v1.IngestRequest` in protobuf binary or in proto3 JSON (field names
 * as in the proto or lowerCamelCase, int64 as a number or a decimal string, unknown fields refused), decoded into
 * the ingest service's input. Field validation (ids, timestamp range) stays in the ingest service, so the bus and
 * gRPC Ingest reject exactly the same events.
 */
import path from 'node:path';
import protobuf from 'protobufjs';
import { invalidArgument } from '../../shared/errors.js';
import { PROTO_DIR } from '../../shared/proto.js';
import type { IngestInput } from '../domain/ingest.js';
import type { PayloadFormat } from '../domain/event-source.js';

let ingestType: protobuf.Type | undefined;

function type(): protobuf.Type {
  if (ingestType === undefined) {
    const root = new protobuf.Root();
    root.loadSync(path.join(PROTO_DIR, 'automr/v1/recommender.proto'), { keepCase: true });
    ingestType = root.lookupType('automr.v1.IngestRequest');
  }
  return ingestType;
}

const FIELDS = ['event_id', 'user_id', 'item_id', 'timestamp_ms'] as const;
const camel = (name: string) => name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
const JSON_NAMES = new Map<string, (typeof FIELDS)[number]>(
  FIELDS.flatMap((f) => [
    [f, f],
    [camel(f), f],
  ]),
);

/** Maps a content type or format name (header or setting) to a payload format; undefined if unrecognised. */
export function formatOf(value: string | undefined): PayloadFormat | undefined {
  if (value === undefined) return undefined;
  const v = value.split(';')[0]?.trim().toLowerCase() ?? '';
  if (v === 'json' || v === 'application/json') return 'json';
  if (['protobuf', 'proto', 'application/protobuf', 'application/x-protobuf'].includes(v)) return 'protobuf';
  return undefined;
}

export function decodeIngestPayload(payload: Uint8Array, format: PayloadFormat): IngestInput {
  return format === 'json' ? decodeJson(payload) : decodeProtobuf(payload);
}

function decodeProtobuf(payload: Uint8Array): IngestInput {
  let message: protobuf.Message;
  try {
    message = type().decode(payload);
  } catch (error) {
    throw invalidArgument(`not a protobuf automr.v1.IngestRequest (${(error as Error).message})`);
  }
  return type().toObject(message, { longs: Number, defaults: true });
}

function decodeJson(payload: Uint8Array): IngestInput {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch {
    throw invalidArgument('not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidArgument('JSON payload must be an object with the IngestRequest fields');
  }
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const field = JSON_NAMES.get(key);
    if (field === undefined)
      throw invalidArgument(`unknown field ${JSON.stringify(key)} in IngestRequest JSON`);
    if (v === null) continue; // proto3 JSON: null means the default
    if (field === 'timestamp_ms') {
      if (typeof v === 'number' || (typeof v === 'string' && /^-?\d+$/.test(v))) out[field] = Number(v);
      else throw invalidArgument('timestamp_ms must be an integer or a decimal string');
    } else if (typeof v === 'string') {
      out[field] = v;
    } else {
      throw invalidArgument(`${field} must be a string`);
    }
  }
  return out;
}

/** Encodes an IngestRequest (for producers, tests and examples). */
export function encodeIngestPayload(
  event: { event_id: string; user_id: string; item_id: string; timestamp_ms: number },
  format: PayloadFormat,
): Uint8Array {
  if (format === 'json') return Buffer.from(JSON.stringify(event));
  return type().encode(type().fromObject(event)).finish();
}
