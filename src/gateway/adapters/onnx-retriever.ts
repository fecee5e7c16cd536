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

/**
 * A run's input arrays, kept for the next run: views of the first rows × m (× d) of buffers grown to the largest
 * batch seen. Busy from filling until the run returns (onnxruntime reads them in a later turn of the event loop,
 * and a batch formed meanwhile gets fresh arrays).
 */
class InputBuffers {
  busy = false;
  private q = new Float32Array(0);
  private mem = new Float32Array(0);
  private msk = new BigInt64Array(0);

  fit(
    rows: number,
    m: number,
    d: number,
  ): { query: Float32Array; memory: Float32Array; mask: BigInt64Array } {
    if (this.q.length < rows * d) this.q = new Float32Array(rows * d);
    if (this.mem.length < rows * m * d) this.mem = new Float32Array(rows * m * d);
    if (this.msk.length < rows * m) this.msk = new BigInt64Array(rows * m);
    return {
      query: this.q.subarray(0, rows * d),
      memory: this.mem.subarray(0, rows * m * d),
      mask: this.msk.subarray(0, rows * m),
    };
  }
}

export class OnnxRetriever implements Retriever {
  readonly batches: Coalescer<ScoreCall, Float32Array>;
  private readonly inputs = new InputBuffers();

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
    // Stored vectors may be views into larger buffers: onnxruntime gets contiguous copies, in buffers reused from
    // run to run (a fresh 23 KB per 90-element request made the young-generation collections that set the p99).
    const own = this.inputs.busy ? undefined : this.inputs;
    const buffers = own?.fit(rows, m, d) ?? new InputBuffers().fit(rows, m, d);
    if (own !== undefined) own.busy = true;
    try {
      const { query, memory, mask } = buffers;
      calls.forEach((c, row) => {
        query.set(c.query, row * d);
        const first = row * m;
        c.memory.forEach((v, j) => memory.set(v, (first + j) * d));
        // Padding: zero vectors, masked out (what fresh buffers held).
        memory.fill(0, (first + c.memory.length) * d, (first + m) * d);
        mask.fill(1n, first, first + c.memory.length);
        mask.fill(0n, first + c.memory.length, first + m);
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
      // The output is this run's own array: each row is a view of it, not a copy.
      if (rows === 1 && calls[0]?.memory.length === m) return [data];
      return calls.map((c, row) => data.subarray(row * m, row * m + c.memory.length));
    } finally {
      if (own !== undefined) own.busy = false;
    }
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
