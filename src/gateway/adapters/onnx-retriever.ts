/**
 * The AutoMR retriever (bundle/retriever.onnx) run in-process with onnxruntime-node. Concurrent requests' memories
 * are scored in one session run (query [B, d], memory [B, M, d] padded to the longest memory, padding masked).
 */
import * as ort from 'onnxruntime-node';
import { Coalescer } from '../../shared/coalescer.js';
import { AppError, throwIfAborted } from '../../shared/errors.js';
import type { Retriever } from '../domain/ports.js';

interface ScoreCall {
  query: Float32Array;
  memory: readonly Float32Array[];
}

export interface RetrieverBatching {
  /** Requests scored per session run. */
  maxBatch: number;
  /** How long the first request waits for others (ms; 0 = the current event-loop turn). */
  delayMs: number;
}

export class OnnxRetriever implements Retriever {
  readonly batches: Coalescer<ScoreCall, Float32Array>;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly d: number,
    batching: RetrieverBatching,
  ) {
    this.batches = new Coalescer({ ...batching, run: (calls) => this.scoreRows(calls) });
  }

  static async load(
    file: string,
    dModel: number,
    batching: RetrieverBatching = { maxBatch: 64, delayMs: 0 },
  ): Promise<OnnxRetriever> {
    try {
      // One intra-op thread: the MLP is tiny and the event loop's CPU is shared with gRPC.
      const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1 });
      return new OnnxRetriever(session, dModel, batching);
    } catch (error) {
      throw new AppError('FAILED_PRECONDITION', `cannot load retriever ${file}`, { cause: error });
    }
  }

  score(query: Float32Array, memory: readonly Float32Array[], signal?: AbortSignal): Promise<Float32Array> {
    // A request whose call is already cancelled or expired is not scored (a running batch is not interrupted).
    throwIfAborted(signal);
    if (memory.length === 0) return Promise.resolve(new Float32Array(0));
    return this.batches.submit({ query, memory });
  }

  /** One session run for a batch of requests; row r's scores are the first memory.length of its row. */
  private async scoreRows(calls: ScoreCall[]): Promise<Float32Array[]> {
    const { d } = this;
    const rows = calls.length;
    let m = 1;
    for (const c of calls) m = Math.max(m, c.memory.length);
    // Stored vectors may be views into larger buffers: onnxruntime gets its own contiguous copies.
    const query = new Float32Array(rows * d);
    const memory = new Float32Array(rows * m * d);
    const mask = new BigInt64Array(rows * m);
    calls.forEach((c, row) => {
      query.set(c.query, row * d);
      c.memory.forEach((v, j) => {
        memory.set(v, (row * m + j) * d);
        mask[row * m + j] = 1n;
      });
    });
    const out = await this.session.run({
      query: new ort.Tensor('float32', query, [rows, d]),
      memory: new ort.Tensor('float32', memory, [rows, m, d]),
      memory_mask: new ort.Tensor('int64', mask, [rows, m]),
    });
    const scores = out.scores;
    if (scores === undefined || !(scores.data instanceof Float32Array) || scores.data.length !== rows * m) {
      throw new AppError('INTERNAL', 'retriever returned no scores');
    }
    const data = scores.data;
    return calls.map((c, row) => data.slice(row * m, row * m + c.memory.length));
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
