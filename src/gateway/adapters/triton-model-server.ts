/**
 * ModelServer port over the Triton client: llm_lower for encodings, automr_recommend for Recommends. Concurrent
 * Recommends are coalesced into one batched automr_recommend ModelInfer (rows padded to the batch's longest prompt
 * and memory, padding masked) and each caller gets its own row back, with its own cancellation. The circuit breaker
 * sits below the coalescing, around each ModelInfer: a batch that fails is one failure, not one per caller.
 */
import { SpanKind } from '@opentelemetry/api';
import { Coalescer } from '../../shared/coalescer.js';
import { AppError } from '../../shared/errors.js';
import { inSpan } from '../../shared/tracing.js';
import type { Logger } from '../../shared/logger.js';
import { TritonClient, type TritonClientOptions } from '../../triton/client.js';
import type { Tensor } from '../../triton/tensor.js';
import type { Bundle } from '../bundle.js';
import type { ModelServer, RecommendOutput } from '../domain/ports.js';
import type { ModelServerBreaker } from './model-server-breaker.js';

export interface TritonModelServerOptions {
  address: string;
  bundle: Bundle;
  deadlineMs?: number;
  logger?: Logger;
  /** Counts failed calls per model (metrics). */
  onError?: (model: string) => void;
  /** TLS/mTLS and headers (auth) for the model-server connection. */
  transport?: Pick<TritonClientOptions, 'credentials' | 'headers'>;
  /** Coalescing of concurrent Recommends: rows per ModelInfer (≤ the ensemble's max_batch_size) and wait (ms). */
  recommendBatch?: { maxBatch: number; delayMs: number };
  /** Circuit breaker applied to every ModelInfer (one outcome per call, however many callers it serves). */
  breaker?: ModelServerBreaker;
  /**
   * How recent an answered automr_recommend call must be to stand in for a readiness probe (ms; default 200, the
   * health poll's interval). The ensemble runs llm_lower and llm_upper at the pinned version, so its answer shows
   * the server and all three models ready: under load the probe's four RPCs per poll are skipped, and a server that
   * hangs is probed again at the next poll but one.
   */
  answeredIsReadyMs?: number;
}

interface RecommendCall {
  prompt: number[];
  memory: Float32Array[];
  /** The caller's packed `exclude_mask` row (issue 10); rows of one batch are concatenated, [rows, bytes]. */
  excludeMask?: Uint8Array;
}

/** How long a model version found matching is trusted before ModelConfig is read again (ms). */
const VERSION_RECHECK_MS = 5_000;

export class TritonModelServer implements ModelServer {
  private readonly client: TritonClient;
  private readonly bundle: Bundle;
  private readonly deadlineMs: number;
  private readonly onError: ((model: string) => void) | undefined;
  private readonly breaker: ModelServerBreaker | undefined;
  /** Concurrent Recommends, coalesced into batched automr_recommend calls. */
  readonly recommendBatches: Coalescer<RecommendCall, RecommendOutput>;

  private readonly logger: Logger | undefined;
  /** The last version mismatch logged (undefined = versions match), so each change is logged once. */
  private lastMismatch: string | undefined;
  private versionCheckedUntil = 0;
  /** When an automr_recommend call last succeeded (performance.now()). */
  private answeredAt = Number.NEGATIVE_INFINITY;
  private readonly answeredIsReadyMs: number;

  constructor(options: TritonModelServerOptions) {
    this.bundle = options.bundle;
    this.logger = options.logger;
    this.recommendBatches = new Coalescer({
      maxBatch: options.recommendBatch?.maxBatch ?? 64,
      delayMs: options.recommendBatch?.delayMs ?? 0,
      run: (calls, signal) => this.guarded((s) => this.recommendRows(calls, s), signal),
    });
    this.deadlineMs = options.deadlineMs ?? 10_000;
    this.onError = options.onError;
    this.breaker = options.breaker;
    this.answeredIsReadyMs = options.answeredIsReadyMs ?? 200;
    this.client = new TritonClient({
      address: options.address,
      defaultDeadlineMs: this.deadlineMs,
      ...(options.logger ? { logger: options.logger } : {}),
      ...options.transport,
    });
  }

  /**
   * Probes the model server (never through the breaker); the answer opens or releases the breaker. Ready when
   * the server and the pinned version of every model are ready and each model's config records the bundle's
   * model_version (`parameters.model_version`, written by the export): a repository updated ahead of (or behind)
   * the gateways would otherwise serve numbers that do not match the bundle's memory and catalog.
   */
  async ready(signal?: AbortSignal): Promise<boolean> {
    const now = performance.now();
    const answered = now - this.answeredAt < this.answeredIsReadyMs;
    // Passive: recent answers replace the RPCs while the version check is not due (it keeps its own schedule).
    const ready =
      answered && this.lastMismatch === undefined && now < this.versionCheckedUntil
        ? true
        : await this.probe(signal);
    this.breaker?.probed(ready);
    return ready;
  }

  private async probe(signal?: AbortSignal): Promise<boolean> {
    const { models } = this.bundle.manifest;
    // Short: health must turn NOT_SERVING within a second of a hung model server.
    const o = { signal, deadlineMs: 400 };
    try {
      if (!(await this.client.serverReady(o))) return false;
      const names = [models.lower, models.upper, models.ensemble];
      const ready = await Promise.all(names.map((m) => this.client.modelReady(m, models.version, o)));
      if (!ready.every(Boolean)) return false;
      // Health polls every 250 ms; a matching version is re-read every few seconds (a reload is seen within them).
      if (this.lastMismatch === undefined && performance.now() < this.versionCheckedUntil) return true;
      const configs = await Promise.all(names.map((m) => this.client.modelConfig(m, models.version, o)));
      const served = configs.map((c) => c.parameters?.model_version?.string_value ?? '');
      const wrong = names.filter((_, i) => served[i] !== this.bundle.modelVersion);
      const mismatch =
        wrong.length === 0
          ? undefined
          : `${wrong.map((m) => `${m} has ${JSON.stringify(served[names.indexOf(m)])}`).join(', ')}`;
      if (mismatch !== this.lastMismatch) {
        this.lastMismatch = mismatch;
        if (mismatch !== undefined)
          this.logger?.error(
            { bundleModelVersion: this.bundle.modelVersion, models: wrong },
            `model version mismatch: the bundle is model_version ${JSON.stringify(this.bundle.modelVersion)} but the model server's config parameters.model_version of ${mismatch}; refusing readiness until the bundle and the model repository are the same export`,
          );
        else
          this.logger?.info(
            { modelVersion: this.bundle.modelVersion },
            'model server serves the bundle version',
          );
      }
      this.versionCheckedUntil = mismatch === undefined ? performance.now() + VERSION_RECHECK_MS : 0;
      return mismatch === undefined;
    } catch {
      return false;
    }
  }

  async encode(prompts: number[][], signal?: AbortSignal): Promise<Float32Array[]> {
    if (prompts.length === 0) return [];
    return this.guarded((s) => this.encodeRows(prompts, s), signal);
  }

  /** One llm_lower call for a batch of prompts (the encoder coalesces them). */
  private async encodeRows(prompts: number[][], signal?: AbortSignal): Promise<Float32Array[]> {
    const model = this.bundle.manifest.models.lower;
    const [ids, mask] = this.padBatch(prompts);
    const result = await this.infer(model, [ids, mask], ['query'], signal);
    const query = result.get('query');
    const d = this.bundle.dModel;
    if (
      query === undefined ||
      !(query.data instanceof Float32Array) ||
      query.data.length !== prompts.length * d
    ) {
      throw new AppError('INTERNAL', `${model} returned no usable query tensor`);
    }
    const data = query.data;
    return prompts.map((_, i) => data.slice(i * d, (i + 1) * d));
  }

  recommend(
    prompt: number[],
    memory: Float32Array[],
    excludeMask: Uint8Array,
    signal?: AbortSignal,
  ): Promise<RecommendOutput> {
    if (excludeMask.length !== this.bundle.maskBytes) {
      return Promise.reject(
        new AppError(
          'INTERNAL',
          `exclude mask has ${excludeMask.length} bytes; the catalog needs ${this.bundle.maskBytes}`,
        ),
      );
    }
    return this.recommendBatches.submit({ prompt, memory, excludeMask }, signal);
  }

  /** One automr_recommend call for a batch of Recommends; memory rows padded to the longest (mask 0). */
  private async recommendRows(calls: RecommendCall[], signal?: AbortSignal): Promise<RecommendOutput[]> {
    const model = this.bundle.manifest.models.ensemble;
    const d = this.bundle.dModel;
    const rows = calls.length;
    const [ids, mask] = this.padBatch(calls.map((c) => c.prompt));
    let k = 1;
    for (const c of calls) k = Math.max(k, c.memory.length);
    const mem = new Float32Array(rows * k * d);
    const memMask = new BigInt64Array(rows * k);
    const memMask32 = new Int32Array(memMask.buffer); // low words of the INT64 mask (little-endian)
    for (let row = 0; row < rows; row++) {
      const memory = (calls[row] as RecommendCall).memory;
      for (let j = 0; j < memory.length; j++) {
        mem.set(memory[j] as Float32Array, (row * k + j) * d);
        memMask32[2 * (row * k + j)] = 1;
      }
    }
    const inputs: Tensor[] = [
      ids,
      mask,
      { name: 'memory', datatype: 'FP32', shape: [rows, k, d], data: mem },
      { name: 'memory_mask', datatype: 'INT64', shape: [rows, k], data: memMask },
    ];
    const excluded = excludeMaskRows(calls);
    if (excluded !== undefined) inputs.push(excluded);
    const result = await this.infer(model, inputs, ['top_ids', 'top_scores'], signal);
    const topIds = result.get('top_ids')?.data;
    const topScores = result.get('top_scores')?.data;
    if (
      !(topIds instanceof BigInt64Array) ||
      !(topScores instanceof Float32Array) ||
      topIds.length !== topScores.length ||
      topIds.length % rows !== 0
    ) {
      throw new AppError('INTERNAL', `${model} returned no usable top_ids/top_scores`);
    }
    this.answeredAt = performance.now();
    const width = topIds.length / rows;
    // Token ids are 32-bit integers: the low word of each INT64 (little-endian, as tensor.ts requires) is the
    // value, read without a BigInt per element.
    const ids32 = new Int32Array(topIds.buffer, topIds.byteOffset, topIds.length * 2);
    const out: RecommendOutput[] = [];
    for (let row = 0; row < rows; row++) {
      // Typed rows: the scores are views of the response tensor, the tokens one 32-bit copy (no boxed numbers).
      const tokens = new Int32Array(width);
      for (let i = 0, j = row * width; i < width; i++, j++) tokens[i] = ids32[2 * j] as number;
      out.push({ tokens, scores: topScores.subarray(row * width, (row + 1) * width) });
    }
    return out;
  }

  close(): void {
    this.breaker?.close();
    this.client.close();
  }

  /** One model-server call through the breaker (when there is one). */
  private guarded<T>(fn: (signal?: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.breaker === undefined ? fn(signal) : this.breaker.call(fn, signal);
  }

  private async infer(model: string, inputs: Tensor[], outputs: string[], signal?: AbortSignal) {
    try {
      // Client span per model call; the Triton client injects its context as traceparent, so the model
      // server's (or Triton's) spans join the same trace.
      return await inSpan(
        `triton.infer ${model}`,
        async () => {
          const res = await this.client.infer(
            { model, version: this.bundle.manifest.models.version, inputs, outputs },
            { signal, deadlineMs: this.deadlineMs },
          );
          return res.outputs;
        },
        {
          kind: SpanKind.CLIENT,
          attributes: {
            'rpc.system': 'grpc',
            'triton.model.name': model,
            'triton.batch': inputs[0]?.shape[0] ?? 0,
          },
        },
      );
    } catch (error) {
      this.onError?.(model);
      throw error;
    }
  }

  /** Left-pads prompts with pad (mask 0) to the batch's common length, as the bundle contract says. */
  private padBatch(prompts: number[][]): [Tensor, Tensor] {
    let t = 0;
    for (const p of prompts) t = Math.max(t, p.length);
    const ids = new BigInt64Array(prompts.length * t);
    const mask = new BigInt64Array(prompts.length * t);
    // Token ids are 32-bit integers: each INT64 is written as its two 32-bit words (little-endian, as tensor.ts
    // requires; the high word is the sign), without a BigInt per token.
    const ids32 = new Int32Array(ids.buffer);
    const mask32 = new Int32Array(mask.buffer);
    const pad = this.bundle.tokens.pad;
    for (let row = 0; row < prompts.length; row++) {
      const p = prompts[row] as number[];
      const offset = row * t + (t - p.length);
      for (let i = row * t; i < offset; i++) {
        ids32[2 * i] = pad;
        ids32[2 * i + 1] = pad >> 31;
      }
      for (let j = 0; j < p.length; j++) {
        const tok = p[j] as number;
        ids32[2 * (offset + j)] = tok;
        ids32[2 * (offset + j) + 1] = tok >> 31;
        mask32[2 * (offset + j)] = 1;
      }
    }
    return [
      { name: 'input_ids', datatype: 'INT64', shape: [prompts.length, t], data: ids },
      { name: 'attention_mask', datatype: 'INT64', shape: [prompts.length, t], data: mask },
    ];
  }
}

/** The batch's `exclude_mask` tensor: every caller's row in order (a row without a mask excludes nothing). */
function excludeMaskRows(calls: RecommendCall[]): Tensor | undefined {
  const width = calls.find((c) => c.excludeMask !== undefined)?.excludeMask?.length;
  if (width === undefined) return undefined;
  const data = new Uint8Array(calls.length * width);
  calls.forEach((c, row) => {
    if (c.excludeMask === undefined) return;
    if (c.excludeMask.length !== width)
      throw new AppError(
        'INTERNAL',
        `exclude masks of one batch differ in size (${c.excludeMask.length} vs ${width})`,
      );
    data.set(c.excludeMask, row * width);
  });
  return { name: 'exclude_mask', datatype: 'UINT8', shape: [calls.length, width], data };
}
