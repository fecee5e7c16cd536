/**
 * Client for NVIDIA Triton's gRPC protocol (and the local model server, which speaks the same one).
 *
 * - Tensors travel as raw contents (the way Triton's own clients send them).
 * - Every call has a deadline; an AbortSignal cancels it.
 * - Retries (exponential backoff, full jitter, within the caller's deadline) only where a retry cannot do
 *   work twice: UNAVAILABLE for read-only RPCs, and for ModelInfer only when the connection was never
 *   established (the request never left this process). INVALID_ARGUMENT, DEADLINE_EXCEEDED and any
 *   UNAVAILABLE after the request may have reached the server are never retried.
 * - Keepalive pings no more often than Triton's server accepts by default (one per 5 minutes without
 *   data; more gets the connection closed with ENHANCE_YOUR_CALM / too_many_pings).
 * - Message size limits raised as Triton's clients do (they use INT32_MAX).
 * - A small pool of channels (separate HTTP/2 connections) spread round-robin.
 * - W3C traceparent injected into gRPC metadata from the active OpenTelemetry context.
 * - Model metadata fetched once per model/version and used to validate requests before sending.
 */
import {
  credentials,
  Metadata,
  status,
  type CallOptions as GrpcCallOptions,
  type ChannelCredentials,
  type ServiceError,
} from '@grpc/grpc-js';
import { context as otelContext, propagation } from '@opentelemetry/api';
import type { GRPCInferenceServiceClient } from '../generated/inference/GRPCInferenceService.js';
import type { ModelConfig__Output } from '../generated/inference/ModelConfig.js';
import type { ModelInferRequest } from '../generated/inference/ModelInferRequest.js';
import type { ModelInferResponse__Output } from '../generated/inference/ModelInferResponse.js';
import type { ModelStatistics__Output } from '../generated/inference/ModelStatistics.js';
import { AppError, throwIfAborted, toAppError } from '../shared/errors.js';
import { errorCodeOf } from '../shared/grpc-status.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { withDecimalMapKeys } from './model-config-keys.js';
import { loadInferenceProto } from './proto.js';
import {
  decodeRaw,
  encodeRaw,
  fromContents,
  isDatatype,
  type Tensor,
  type TritonDatatype,
} from './tensor.js';

export interface TritonClientOptions {
  /** host:port of Triton's gRPC endpoint (8001 by default in Triton). */
  address: string;
  /** Number of channels (HTTP/2 connections) in the pool; default 2. */
  channels?: number;
  /** Deadline for calls without their own; default 5000 ms. */
  defaultDeadlineMs?: number;
  /** Retries of retry-safe failures; default 3. */
  maxRetries?: number;
  logger?: Logger;
  /** Max message size both ways; default 2^31-1 as in Triton's clients. */
  maxMessageBytes?: number;
  /** First retry backoff in ms (doubles, capped at 1 s, full jitter); default 50. */
  retryBaseMs?: number;
  /** Channel credentials (TLS/mTLS, see shared/transport.ts); default plaintext. */
  credentials?: ChannelCredentials;
  /** Headers sent on every call (e.g. the key Triton's --grpc-restricted-protocol expects). */
  headers?: Readonly<Record<string, string>>;
}

export interface CallOptions {
  signal?: AbortSignal;
  deadlineMs?: number;
}

export interface InferRequest {
  model: string;
  version?: string;
  id?: string;
  inputs: Tensor[];
  outputs?: string[];
}

export interface InferResult {
  model: string;
  version: string;
  id: string;
  outputs: Map<string, Tensor>;
}

export interface TensorMetadata {
  name: string;
  datatype: TritonDatatype;
  /** With the batch dimension (-1) first when the model batches; -1 = any size. */
  shape: number[];
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

export type ModelStatistics = ModelStatistics__Output;
export type ModelConfig = ModelConfig__Output;

const INT32_MAX = 2 ** 31 - 1;

/** RPCs with no side effects on the server: any UNAVAILABLE may be retried. */
const READ_ONLY = new Set([
  'ServerLive',
  'ServerReady',
  'ModelReady',
  'ModelMetadata',
  'ModelConfig',
  'ModelStatistics',
  'RepositoryIndex',
]);

/** grpc-js texts for a call that failed before any connection carried it. */
const NOT_SENT =
  /No connection established|failed to connect|ECONNREFUSED|Name resolution failed|DNS resolution failed/i;

type Unary<Req, Res> = (
  req: Req,
  metadata: Metadata,
  options: GrpcCallOptions,
  callback: (error: ServiceError | null, res?: Res) => void,
) => { cancel(): void };

const metadataSetter = {
  set: (carrier: Metadata, key: string, value: string): void => carrier.set(key, value),
};

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export class TritonClient {
  private readonly pool: GRPCInferenceServiceClient[];
  private next = 0;
  private readonly metadataCache = new Map<string, Promise<ModelMetadata>>();
  private readonly defaultDeadlineMs: number;
  private readonly maxRetries: number;
  private readonly retryBaseMs: number;
  private readonly logger: Logger;
  private readonly headers: Readonly<Record<string, string>>;

  constructor(options: TritonClientOptions) {
    this.headers = options.headers ?? {};
    this.defaultDeadlineMs = options.defaultDeadlineMs ?? 5000;
    this.maxRetries = options.maxRetries ?? 3;
    this.retryBaseMs = options.retryBaseMs ?? 50;
    this.logger = options.logger ?? silentLogger();
    const max = options.maxMessageBytes ?? INT32_MAX;
    const Ctor = loadInferenceProto().inference.GRPCInferenceService;
    const channelOptions = {
      'grpc.max_receive_message_length': max,
      'grpc.max_send_message_length': max,
      // Triton's server (grpc core defaults) allows one ping per 5 minutes without data.
      'grpc.keepalive_time_ms': 300_000,
      'grpc.keepalive_timeout_ms': 20_000,
      'grpc.keepalive_permit_without_calls': 0,
      'grpc.http2.max_pings_without_data': 2,
      // Reconnect quickly after a refused connection (the default first backoff is 1 s).
      'grpc.initial_reconnect_backoff_ms': 100,
      // ... and find a restarted server within half a second (the encoder resumes within 2 s of recovery).
      'grpc.max_reconnect_backoff_ms': 500,
      // Each pooled channel gets its own connection instead of sharing one subchannel.
      'grpc.use_local_subchannel_pool': 1,
      // Nothing reads channelz: its per-call bookkeeping on every ModelInfer is pure cost.
      'grpc.enable_channelz': 0,
      // With a dns:/// target that resolves to several Triton pods (headless Service), spread calls over all.
      'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
    };
    const count = Math.max(1, options.channels ?? 2);
    this.pool = Array.from(
      { length: count },
      () => new Ctor(options.address, options.credentials ?? credentials.createInsecure(), channelOptions),
    );
  }

  private pick(): GRPCInferenceServiceClient {
    const client = this.pool[this.next % this.pool.length]!;
    this.next += 1;
    return client;
  }

  /** One unary call with deadline, cancellation, trace propagation and the retry policy. */
  private async call<Req, Res>(method: string, req: Req, o: CallOptions | undefined): Promise<Res> {
    const deadline = Date.now() + (o?.deadlineMs ?? this.defaultDeadlineMs);
    const signal = o?.signal;
    for (let attempt = 0; ; attempt += 1) {
      throwIfAborted(signal);
      try {
        return await this.attempt<Req, Res>(method, req, deadline, signal);
      } catch (error) {
        const e = error as AppError;
        const notSent = e.code === 'UNAVAILABLE' && e.details?.notSent === true;
        const safe = e.code === 'UNAVAILABLE' && (READ_ONLY.has(method) || notSent);
        if (!safe || attempt >= this.maxRetries) throw e;
        const backoff = Math.random() * Math.min(1000, this.retryBaseMs * 2 ** attempt);
        if (Date.now() + backoff >= deadline) throw e;
        this.logger.debug(
          { method, attempt: attempt + 1, backoffMs: Math.round(backoff) },
          'retrying Triton call',
        );
        await sleep(backoff, signal);
      }
    }
  }

  private attempt<Req, Res>(
    method: string,
    req: Req,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<Res> {
    const client = this.pick();
    const fn = (client as unknown as Record<string, Unary<Req, Res>>)[method]!.bind(client);
    const metadata = new Metadata();
    for (const [k, v] of Object.entries(this.headers)) metadata.set(k, v);
    propagation.inject(otelContext.active(), metadata, metadataSetter);
    return new Promise<Res>((resolve, reject) => {
      const onAbort = (): void => call.cancel();
      const call = fn(req, metadata, { deadline }, (error, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (error === null && res !== undefined) return resolve(res);
        if (error === null) return reject(new AppError('INTERNAL', `empty response from ${method}`));
        if (error.code === status.CANCELLED && signal?.aborted === true) {
          try {
            throwIfAborted(signal);
          } catch (aborted) {
            return reject(toAppError(aborted));
          }
        }
        const code = errorCodeOf(error.code);
        reject(
          new AppError(code, error.details || error.message, {
            cause: error,
            retryable: code === 'UNAVAILABLE',
            details: { method, grpcCode: error.code, notSent: NOT_SENT.test(error.details ?? '') },
          }),
        );
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async serverLive(o?: CallOptions): Promise<boolean> {
    return (await this.call<object, { live: boolean }>('ServerLive', {}, o)).live;
  }

  async serverReady(o?: CallOptions): Promise<boolean> {
    return (await this.call<object, { ready: boolean }>('ServerReady', {}, o)).ready;
  }

  async modelReady(model: string, version = '', o?: CallOptions): Promise<boolean> {
    return (await this.call<object, { ready: boolean }>('ModelReady', { name: model, version }, o)).ready;
  }

  /** Fetched once per model/version and cached (a failed fetch is not cached). */
  modelMetadata(model: string, version = '', o?: CallOptions): Promise<ModelMetadata> {
    const key = `${model}\u0000${version}`;
    let cached = this.metadataCache.get(key);
    if (cached === undefined) {
      cached = this.fetchMetadata(model, version, o);
      this.metadataCache.set(key, cached);
      cached.catch(() => this.metadataCache.delete(key));
    }
    return cached;
  }

  private async fetchMetadata(model: string, version: string, o?: CallOptions): Promise<ModelMetadata> {
    interface Raw {
      name: string;
      versions: string[];
      platform: string;
      inputs: { name: string; datatype: string; shape: number[] }[];
      outputs: { name: string; datatype: string; shape: number[] }[];
    }
    const res = await this.call<object, Raw>('ModelMetadata', { name: model, version }, o);
    const tensor = (t: Raw['inputs'][number]): TensorMetadata => {
      if (!isDatatype(t.datatype))
        throw new AppError('INTERNAL', `model '${model}' reports unknown datatype ${t.datatype}`);
      return { name: t.name, datatype: t.datatype, shape: t.shape.map(Number) };
    };
    return {
      name: res.name,
      versions: res.versions,
      platform: res.platform,
      inputs: res.inputs.map(tensor),
      outputs: res.outputs.map(tensor),
    };
  }

  async modelConfig(model: string, version = '', o?: CallOptions): Promise<ModelConfig> {
    const res = await this.call<object, { config: ModelConfig | null }>(
      'ModelConfig',
      { name: model, version },
      o,
    );
    if (res.config === null) throw new AppError('INTERNAL', `no config returned for model '${model}'`);
    return withDecimalMapKeys(res.config);
  }

  async modelStatistics(model = '', o?: CallOptions): Promise<ModelStatistics[]> {
    const res = await this.call<object, { model_stats: ModelStatistics[] }>(
      'ModelStatistics',
      { name: model, version: '' },
      o,
    );
    return res.model_stats;
  }

  /** Checks names, datatypes and shapes against the model's metadata before anything is sent. */
  private validate(req: InferRequest, meta: ModelMetadata): void {
    const invalid = (message: string): AppError => new AppError('INVALID_ARGUMENT', message);
    const names = new Set(req.inputs.map((t) => t.name));
    if (names.size !== req.inputs.length) throw invalid(`duplicate input names for model '${req.model}'`);
    for (const t of req.inputs) {
      const spec = meta.inputs.find((i) => i.name === t.name);
      if (spec === undefined)
        throw invalid(`unexpected inference input '${t.name}' for model '${req.model}'`);
      if (spec.datatype !== t.datatype) {
        throw invalid(
          `inference input '${t.name}' data-type is '${t.datatype}', but model '${req.model}' expects '${spec.datatype}'`,
        );
      }
      const ok =
        t.shape.length === spec.shape.length && spec.shape.every((d, i) => d === -1 || d === t.shape[i]);
      if (!ok) {
        throw invalid(
          `unexpected shape for input '${t.name}' for model '${req.model}'. Expected [${spec.shape.join(',')}], got [${t.shape.join(',')}]`,
        );
      }
    }
    const missing = meta.inputs.filter((i) => !names.has(i.name));
    if (missing.length > 0) {
      throw invalid(
        `expected ${meta.inputs.length} inputs but got ${req.inputs.length} inputs for model '${req.model}'; missing ${missing
          .map((m) => `'${m.name}'`)
          .join(', ')}`,
      );
    }
    for (const o of req.outputs ?? []) {
      if (!meta.outputs.some((m) => m.name === o))
        throw invalid(`unexpected inference output '${o}' for model '${req.model}'`);
    }
  }

  async infer(req: InferRequest, o?: CallOptions): Promise<InferResult> {
    const meta = await this.modelMetadata(req.model, req.version ?? '', o);
    this.validate(req, meta);
    const wire: ModelInferRequest = {
      model_name: req.model,
      model_version: req.version ?? '',
      id: req.id ?? '',
      inputs: req.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape })),
      outputs: (req.outputs ?? []).map((name) => ({ name })),
      raw_input_contents: req.inputs.map(encodeRaw),
    };
    const res = await this.call<ModelInferRequest, ModelInferResponse__Output>('ModelInfer', wire, o);
    const outputs = new Map<string, Tensor>();
    res.outputs.forEach((out, i) => {
      if (!isDatatype(out.datatype))
        throw new AppError('INTERNAL', `unknown output datatype ${out.datatype}`);
      const shape = out.shape.map(Number);
      const raw = res.raw_output_contents[i];
      const t =
        raw !== undefined
          ? decodeRaw(out.name, out.datatype, shape, raw)
          : fromContents(out.name, out.datatype, shape, out.contents ?? {});
      outputs.set(out.name, t);
    });
    return { model: res.model_name, version: res.model_version, id: res.id, outputs };
  }

  close(): void {
    for (const client of this.pool) client.close();
  }
}
