/**
 * Turns a target description (plain data, so it can cross the process boundary to the load-generator
 * child) into a `UnaryCall` on a grpc-js client. Echo and proto targets share this one code path, so the
 * floor and the gateway are measured with the same client machinery.
 */
import { Client, Metadata, credentials, type ChannelOptions } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { makeEchoRequest, ECHO_METHOD_PATH } from './echo-server.js';
import { createGenerator, type GeneratorSpec } from './generators.js';
import type { CallOutcome, UnaryCall } from './loadgen.js';

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
  /** Fully qualified service name, e.g. `automr.v1.Recommender`. */
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
  serialize: (value: unknown) => Buffer;
  deserialize: (buffer: Buffer) => unknown;
  next: () => unknown;
}

function codecFor(spec: TargetSpec): MethodCodec {
  if (spec.kind === 'echo') {
    const request = makeEchoRequest(spec.requestBytes, spec.responseBytes);
    return {
      path: ECHO_METHOD_PATH,
      serialize: (value) => value as Buffer,
      deserialize: (buffer) => buffer,
      next: () => request,
    };
  }
  const definition = loadSync(spec.protoPath, {
    includeDirs: spec.includeDirs,
    keepCase: false,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const service = definition[spec.service];
  if (service === undefined || !(spec.method in service)) {
    throw new Error(`${spec.service}/${spec.method} is not in ${spec.protoPath}`);
  }
  const method = (service as Record<string, unknown>)[spec.method] as {
    path: string;
    requestSerialize: (value: unknown) => Buffer;
    responseDeserialize: (buffer: Buffer) => unknown;
  };
  return {
    path: method.path,
    serialize: method.requestSerialize,
    deserialize: method.responseDeserialize,
    next: createGenerator(spec.generator),
  };
}

export function openTarget(spec: TargetSpec): OpenTarget {
  const codec = codecFor(spec);
  const client = new Client(spec.address, credentials.createInsecure(), CHANNEL_OPTIONS);
  const metadata = new Metadata();
  const call: UnaryCall = () =>
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
  return {
    call,
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
