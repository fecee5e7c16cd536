/** ModelServer port over the Triton client: llm_lower for encodings, one automr_recommend call per Recommend. */
import { SpanKind } from '@opentelemetry/api';
import { AppError } from '../../shared/errors.js';
import { inSpan } from '../../shared/tracing.js';
import type { Logger } from '../../shared/logger.js';
import { TritonClient, type TritonClientOptions } from '../../triton/client.js';
import type { Tensor } from '../../triton/tensor.js';
import type { Bundle } from '../bundle.js';
import type { ModelServer, RecommendOutput } from '../domain/ports.js';

export interface TritonModelServerOptions {
  address: string;
  bundle: Bundle;
  deadlineMs?: number;
  logger?: Logger;
  /** Counts failed calls per model (metrics). */
  onError?: (model: string) => void;
  /** TLS/mTLS and headers (auth) for the model-server connection. */
  transport?: Pick<TritonClientOptions, 'credentials' | 'headers'>;
}

export class TritonModelServer implements ModelServer {
  private readonly client: TritonClient;
  private readonly bundle: Bundle;
  private readonly deadlineMs: number;
  private readonly onError: ((model: string) => void) | undefined;

  constructor(options: TritonModelServerOptions) {
    this.bundle = options.bundle;
    this.deadlineMs = options.deadlineMs ?? 10_000;
    this.onError = options.onError;
    this.client = new TritonClient({
      address: options.address,
      defaultDeadlineMs: this.deadlineMs,
      ...(options.logger ? { logger: options.logger } : {}),
      ...options.transport,
    });
  }

  async ready(signal?: AbortSignal): Promise<boolean> {
    const { models } = this.bundle.manifest;
    // Short: health must turn NOT_SERVING within a second of a hung model server.
    const o = { signal, deadlineMs: 500 };
    try {
      if (!(await this.client.serverReady(o))) return false;
      const ready = await Promise.all(
        [models.lower, models.ensemble].map((m) => this.client.modelReady(m, '', o)),
      );
      return ready.every(Boolean);
    } catch {
      return false;
    }
  }

  async encode(prompts: number[][], signal?: AbortSignal): Promise<Float32Array[]> {
    if (prompts.length === 0) return [];
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

  async recommend(
    prompt: number[],
    memory: Float32Array[],
    excludeMask: Uint8Array,
    signal?: AbortSignal,
  ): Promise<RecommendOutput> {
    const model = this.bundle.manifest.models.ensemble;
    const d = this.bundle.dModel;
    if (excludeMask.length !== this.bundle.maskBytes) {
      throw new AppError(
        'INTERNAL',
        `exclude mask has ${excludeMask.length} bytes; the catalog needs ${this.bundle.maskBytes}`,
      );
    }
    const [ids, mask] = this.padBatch([prompt]);
    const k = Math.max(1, memory.length);
    const mem = new Float32Array(k * d);
    memory.forEach((v, i) => mem.set(v, i * d));
    const memMask = new BigInt64Array(k);
    for (let i = 0; i < memory.length; i++) memMask[i] = 1n;
    const result = await this.infer(
      model,
      [
        ids,
        mask,
        { name: 'memory', datatype: 'FP32', shape: [1, k, d], data: mem },
        { name: 'memory_mask', datatype: 'INT64', shape: [1, k], data: memMask },
        { name: 'exclude_mask', datatype: 'UINT8', shape: [1, excludeMask.length], data: excludeMask },
      ],
      ['top_ids', 'top_scores'],
      signal,
    );
    const topIds = result.get('top_ids')?.data;
    const topScores = result.get('top_scores')?.data;
    if (!(topIds instanceof BigInt64Array) || !(topScores instanceof Float32Array)) {
      throw new AppError('INTERNAL', `${model} returned no usable top_ids/top_scores`);
    }
    return { tokens: Array.from(topIds, Number), scores: Array.from(topScores) };
  }

  close(): void {
    this.client.close();
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
    const t = Math.max(...prompts.map((p) => p.length));
    const ids = new BigInt64Array(prompts.length * t).fill(BigInt(this.bundle.tokens.pad));
    const mask = new BigInt64Array(prompts.length * t);
    prompts.forEach((p, row) => {
      const offset = row * t + (t - p.length);
      p.forEach((tok, j) => {
        ids[offset + j] = BigInt(tok);
        mask[offset + j] = 1n;
      });
    });
    return [
      { name: 'input_ids', datatype: 'INT64', shape: [prompts.length, t], data: ids },
      { name: 'attention_mask', datatype: 'INT64', shape: [prompts.length, t], data: mask },
    ];
  }
}
