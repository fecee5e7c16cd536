/**
 * The local Triton-protocol model server: Triton's GRPCInferenceService over the same model repository,
 * for development, tests and single-machine use (production runs NVIDIA Triton). Handlers are thin: they
 * map protocol messages to the registry and errors to gRPC statuses (src/shared/grpc-status.ts).
 */
import { Server, type Metadata, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import {
  context as otelContext,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { GRPCInferenceServiceHandlers } from '../generated/inference/GRPCInferenceService.js';
import type { ModelInferRequest__Output } from '../generated/inference/ModelInferRequest.js';
import type { ModelInferResponse } from '../generated/inference/ModelInferResponse.js';
import type { ModelStatistics } from '../generated/inference/ModelStatistics.js';
import { AppError } from '../shared/errors.js';
import { toServiceError } from '../shared/grpc-status.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { serverCredentials, type ServerTlsFiles } from '../shared/transport.js';
import { loadInferenceProto } from '../triton/proto.js';
import { encodeRaw } from '../triton/tensor.js';
import { ModelRegistry, type ServedVersion } from './registry.js';
import type { Duration } from './stats.js';
import { validateRequest } from './validate.js';

export interface ModelServerOptions {
  repository: string;
  /** host:port; default 127.0.0.1:0 (an ephemeral port). */
  address?: string;
  logger?: Logger;
  /** Max gRPC message size in both directions (default 64 MiB). */
  maxMessageBytes?: number;
  /** onnxruntime intra-op threads per session (default 1: see docs/MODEL_SERVER.md). */
  intraOpThreads?: number;
  /** onnxruntime inter-op threads per session (default 1, sequential execution). */
  interOpThreads?: number;
  /** Run each ONNX session in a worker thread (default true; see docs/MODEL_SERVER.md). */
  sessionsInWorkers?: boolean;
  /** TLS from PEM files (mTLS with clientCa); files re-read when they change. Default plaintext. */
  tls?: Partial<ServerTlsFiles>;
}

export interface RunningModelServer {
  address: string;
  port: number;
  ready(): boolean;
  /** ModelInfer calls being processed now. */
  inflight(): number;
  /** Stops accepting inference (not ready), waits for in-flight requests up to timeoutMs, shuts down. */
  drain(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const SERVER_VERSION = '0.1.0';
const tracer = trace.getTracer('automr-model-server');

const metadataGetter = {
  keys: (carrier: Metadata): string[] => Object.keys(carrier.getMap()),
  get: (carrier: Metadata, key: string): string | undefined => {
    const v = carrier.get(key)[0];
    return v === undefined ? undefined : v.toString();
  },
};

const duration = (d: Duration): { count: number; ns: number } => ({ count: d.count, ns: d.ns });

function statisticsOf(v: ServedVersion): ModelStatistics {
  const s = v.stats;
  return {
    name: v.model.name,
    version: v.version,
    last_inference: s.lastInferenceMs,
    inference_count: s.inferenceCount,
    execution_count: s.executionCount,
    inference_stats: {
      success: duration(s.success),
      fail: duration(s.fail),
      queue: duration(s.queue),
      compute_input: duration(s.computeInput),
      compute_infer: duration(s.computeInfer),
      compute_output: duration(s.computeOutput),
    },
    batch_stats: [...s.batches.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([size, d]) => ({ batch_size: size, compute_infer: duration(d) })),
  };
}

/** Wraps a unary handler: domain errors become gRPC statuses, never thrown into grpc-js. */
function unary<Req, Res>(fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (res) => callback(null, res),
        (error: unknown) => callback(toServiceError(error)),
      );
  };
}

export async function startModelServer(options: ModelServerOptions): Promise<RunningModelServer> {
  const logger = options.logger ?? silentLogger();
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const registry = await ModelRegistry.load(
    options.repository,
    {
      intraOpThreads: options.intraOpThreads ?? 1,
      interOpThreads: options.interOpThreads ?? 1,
      inWorker: options.sessionsInWorkers ?? true,
    },
    logger,
  );

  let ready = false;
  let inflight = 0;
  let idle: (() => void) | undefined;

  const notReady = (): AppError =>
    new AppError('UNAVAILABLE', 'Server is not ready: it is starting or draining');
  const readyModel = (name: string, version: string): ServedVersion => {
    if (!ready) throw notReady();
    const served = registry.get(name, version);
    if (!served.healthy()) {
      throw new AppError(
        'UNAVAILABLE',
        `model '${name}' version ${served.version} is not ready: its runtime stopped`,
      );
    }
    return served;
  };

  async function modelInfer(req: ModelInferRequest__Output, metadata: Metadata): Promise<ModelInferResponse> {
    const parent = propagation.extract(ROOT_CONTEXT, metadata, metadataGetter);
    const span = tracer.startSpan(
      'triton.ModelInfer',
      {
        kind: SpanKind.SERVER,
        attributes: {
          'rpc.system': 'grpc',
          'rpc.service': 'inference.GRPCInferenceService',
          'rpc.method': 'ModelInfer',
          'triton.model.name': req.model_name,
          'triton.model.version': req.model_version,
        },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    try {
      return await otelContext.with(ctx, async () => {
        const served = readyModel(req.model_name, req.model_version);
        span.setAttribute('triton.model.version', served.version);
        const valid = validateRequest(served.model, req);
        const outputs = await served.infer(valid.inputs, valid.batchSize, ctx);
        const response: ModelInferResponse = {
          model_name: served.model.name,
          model_version: served.version,
          id: req.id,
          outputs: [],
          raw_output_contents: [],
        };
        for (const name of valid.outputs) {
          const t = outputs.get(name)!;
          response.outputs!.push({ name, datatype: t.datatype, shape: t.shape });
          response.raw_output_contents!.push(encodeRaw(t));
        }
        return response;
      });
    } catch (error) {
      const code = error instanceof AppError ? error.code : 'INTERNAL';
      span.setStatus({ code: SpanStatusCode.ERROR, message: code });
      if (code === 'INTERNAL') logger.error({ err: error, model: req.model_name }, 'inference failed');
      throw error;
    } finally {
      span.end();
    }
  }

  // ModelStreamInfer is not implemented: grpc-js answers UNIMPLEMENTED for it.
  type Handlers = Pick<
    GRPCInferenceServiceHandlers,
    | 'ServerLive'
    | 'ServerReady'
    | 'ModelReady'
    | 'ServerMetadata'
    | 'ModelMetadata'
    | 'ModelConfig'
    | 'ModelStatistics'
    | 'RepositoryIndex'
    | 'ModelInfer'
  >;
  const handlers: Handlers = {
    ServerLive: unary(() => ({ live: true })),
    ServerReady: unary(() => ({ ready: ready && registry.healthy() })),
    ModelReady: unary((req) => {
      if (!ready) return { ready: false };
      try {
        return { ready: registry.get(req.name, req.version).healthy() };
      } catch {
        return { ready: false };
      }
    }),
    ServerMetadata: unary(() => ({
      name: 'automr-model-server',
      version: SERVER_VERSION,
      extensions: ['model_repository', 'model_configuration', 'statistics'],
    })),
    ModelMetadata: unary((req) => {
      const v = readyModel(req.name, req.version);
      const batched = v.model.config.max_batch_size > 0;
      const shape = (dims: number[]): number[] => (batched ? [-1, ...dims] : dims);
      return {
        name: v.model.name,
        versions: [...registry.models.get(v.model.name)!.versions.keys()],
        platform: v.model.kind === 'ensemble' ? 'ensemble' : 'onnxruntime_onnx',
        inputs: v.model.inputs.map((i) => ({ name: i.name, datatype: i.datatype, shape: shape(i.dims) })),
        outputs: v.model.outputs.map((o) => ({ name: o.name, datatype: o.datatype, shape: shape(o.dims) })),
      };
    }),
    ModelConfig: unary((req) => ({ config: readyModel(req.name, req.version).model.config })),
    ModelStatistics: unary((req) => {
      let versions: ServedVersion[];
      if (req.name === '') versions = [...registry.models.values()].flatMap((m) => [...m.versions.values()]);
      else if (req.version === '') {
        registry.get(req.name, '');
        versions = [...registry.models.get(req.name)!.versions.values()];
      } else versions = [registry.get(req.name, req.version)];
      return { model_stats: versions.map(statisticsOf) };
    }),
    RepositoryIndex: unary((req) => ({
      models: [...registry.models.values()]
        .flatMap((m) =>
          [...m.versions.keys()].map((version) => ({
            name: m.model.name,
            version,
            state: ready ? 'READY' : 'UNAVAILABLE',
            reason: ready ? '' : 'server is not ready',
          })),
        )
        .filter((entry) => !req.ready || entry.state === 'READY'),
    })),
    ModelInfer: (
      call: ServerUnaryCall<ModelInferRequest__Output, ModelInferResponse>,
      callback: sendUnaryData<ModelInferResponse>,
    ) => {
      inflight += 1;
      modelInfer(call.request, call.metadata)
        .then(
          (res) => callback(null, res),
          (error: unknown) => callback(toServiceError(error)),
        )
        .finally(() => {
          inflight -= 1;
          if (inflight === 0) idle?.();
        });
    },
  };

  const server = new Server({
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    // Accept client keepalive pings at Triton's default rate (at most one per 5 minutes without data).
    'grpc.http2.min_ping_interval_without_data_ms': 300_000,
  });
  const proto = loadInferenceProto();
  server.addService(proto.inference.GRPCInferenceService.service, handlers);

  const requested = options.address ?? '127.0.0.1:0';
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(requested, serverCredentials(options.tls), (error, p) =>
        error ? reject(error) : resolve(p),
      );
    });
  } catch (error) {
    await registry.release();
    throw new AppError(
      'UNAVAILABLE',
      `cannot bind the model server to ${requested}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  ready = true;
  const host = requested.slice(0, requested.lastIndexOf(':'));
  const address = `${host}:${port}`;
  logger.info({ address, models: [...registry.models.keys()] }, 'model server ready');

  let closed: Promise<void> | undefined;
  const shutdown = async (timeoutMs: number): Promise<void> => {
    ready = false;
    if (inflight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(
        () => {
          server.forceShutdown();
          resolve();
        },
        Math.max(0, Math.min(timeoutMs, 2000)),
      );
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await registry.release();
    logger.info({ address }, 'model server stopped');
  };

  return {
    address,
    port,
    ready: () => ready && registry.healthy(),
    inflight: () => inflight,
    drain: (timeoutMs = 10_000) => (closed ??= shutdown(timeoutMs)),
    close: () => {
      if (closed === undefined) {
        ready = false;
        server.forceShutdown();
        closed = registry.release();
      }
      return closed;
    },
  };
}
