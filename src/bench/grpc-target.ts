/**
 * Turns a target description (plain data, so it can cross the process boundary to the load-generator
 * child) into a `UnaryCall` on a grpc-js client. Echo and proto targets share this one code path, so the
 * floor and the gateway are measured with the same client machinery.
 */
import { Client, Metadata, credentials, status as grpcStatus, type ChannelOptions } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { makeEchoRequest, ECHO_METHOD_PATH } from './echo-server.js';
import { createGenerator, type GeneratorSpec } from './generators.js';
import type { CallOutcome, UnaryCall } from './loadgen.js';
import { tokenOptionsFromEnv } from '../shared/transport.js';

/** Trailer the bench-instrumented gateway adds: "modelNs,modelCalls,requestBytes,responseBytes". */
export const MODEL_ACCOUNTING_TRAILER = 'x-bench-model';

export interface EchoTargetSpec {
  kind: 'echo';
  address: string;
  requestBytes: number;
  responseBytes: number;
}

export interface ProtoTargetSpec {
  kind: 'proto';
  address: string;
  protoPath: string;
  includeDirs: string[];
  /** Fully qualified service name, e.g. `automr.v1.RecommenderService`. */
  service: string;
  method: string;
  generator: GeneratorSpec;
}

export type TargetSpec = EchoTargetSpec | ProtoTargetSpec;

export interface OpenTarget {
  call: UnaryCall;
  close(): void;
}

const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.use_local_subchannel_pool': 1,
};

const DEADLINE_MS = 30_000;

const PROTO_LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: true,
} as const;

export function parseAccounting(value: unknown): CallOutcome {
  if (typeof value !== 'string') return {};
  const [ns, calls, req, res] = value.split(',').map(Number);
  if (ns === undefined || !Number.isFinite(ns)) return {};
  return {
    modelNs: ns,
    modelCalls: calls ?? 0,
    modelRequestBytes: req ?? 0,
    modelResponseBytes: res ?? 0,
  };
}

interface MethodCodec {
  path: string;
  responseStream: boolean;
  serialize: (value: unknown) => Buffer;
  deserialize: (buffer: Buffer) => unknown;
  next: () => unknown;
}

interface LoadedMethod {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (value: unknown) => Buffer;
  responseDeserialize: (buffer: Buffer) => unknown;
}

export function loadMethod(
  spec: Pick<ProtoTargetSpec, 'protoPath' | 'includeDirs' | 'service' | 'method'>,
): LoadedMethod {
  const definition = loadSync(spec.protoPath, { ...PROTO_LOADER_OPTIONS, includeDirs: spec.includeDirs });
  const service = definition[spec.service] as Record<string, unknown> | undefined;
  const method = service?.[spec.method] as LoadedMethod | undefined;
  if (method === undefined) throw new Error(`${spec.service}/${spec.method} is not in ${spec.protoPath}`);
  return method;
}

/** The summary message of a Recommend stream carries the gateway's own stage timings. */
function recommendAccounting(message: unknown): CallOutcome | undefined {
  const summary = (message as { summary?: { timings?: { encodeMs?: number; inferMs?: number } } }).summary;
  const timings = summary?.timings;
  if (timings === undefined) return undefined;
  const modelMs = (timings.encodeMs ?? 0) + (timings.inferMs ?? 0);
  return { modelNs: Math.round(modelMs * 1e6) };
}

function codecFor(spec: TargetSpec): MethodCodec {
  if (spec.kind === 'echo') {
    const request = makeEchoRequest(spec.requestBytes, spec.responseBytes);
    return {
      path: ECHO_METHOD_PATH,
      responseStream: false,
      serialize: (value) => value as Buffer,
      deserialize: (buffer) => buffer,
      next: () => request,
    };
  }
  const method = loadMethod(spec);
  if (method.requestStream) throw new Error(`${spec.method} is client-streaming; use the ingest load`);
  return {
    path: method.path,
    responseStream: method.responseStream,
    serialize: method.requestSerialize,
    deserialize: method.responseDeserialize,
    next: createGenerator(spec.generator),
  };
}

export function openTarget(spec: TargetSpec): OpenTarget {
  const codec = codecFor(spec);
  const client = new Client(spec.address, credentials.createInsecure(), {
    ...CHANNEL_OPTIONS,
    ...tokenOptionsFromEnv(),
  });
  const metadata = new Metadata();
  const unary: UnaryCall = () =>
    new Promise<CallOutcome>((resolve, reject) => {
      let failed: Error | null = null;
      const pending = client.makeUnaryRequest(
        codec.path,
        codec.serialize,
        codec.deserialize,
        codec.next(),
        metadata,
        { deadline: Date.now() + DEADLINE_MS },
        (error) => {
          failed = error;
        },
      );
      // grpc-js invokes the callback just before emitting 'status'; trailers are only on the latter.
      pending.on('status', (status) => {
        if (failed !== null) {
          reject(failed);
          return;
        }
        resolve(parseAccounting(status.metadata.get(MODEL_ACCOUNTING_TRAILER)[0]));
      });
    });
  const serverStream: UnaryCall = () =>
    new Promise<CallOutcome>((resolve, reject) => {
      let outcome: CallOutcome = {};
      let responseBytes = 0;
      const deserialize = (buffer: Buffer): unknown => {
        responseBytes += buffer.length;
        return codec.deserialize(buffer);
      };
      const stream = client.makeServerStreamRequest(
        codec.path,
        codec.serialize,
        deserialize,
        codec.next(),
        metadata,
        { deadline: Date.now() + DEADLINE_MS },
      );
      stream.on('data', (message: unknown) => {
        outcome = recommendAccounting(message) ?? outcome;
      });
      stream.on('error', reject);
      stream.on('status', (status) => {
        if (status.code === grpcStatus.OK) resolve({ ...outcome, responseBytes });
      });
    });
  return {
    call: codec.responseStream ? serverStream : unary,
    close: () => client.close(),
  };
}

/** Waits until the client's channel is connected (or fails after `timeoutMs`). */
export async function waitForServer(address: string, timeoutMs = 10_000): Promise<void> {
  const client = new Client(address, credentials.createInsecure());
  try {
    await new Promise<void>((resolve, reject) => {
      client.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve()));
    });
  } finally {
    client.close();
  }
}
