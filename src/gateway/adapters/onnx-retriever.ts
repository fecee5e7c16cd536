/** The AutoMR retriever (bundle/retriever.onnx) run in-process with onnxruntime-node. */
import * as ort from 'onnxruntime-node';
import { AppError } from '../../shared/errors.js';
import type { Retriever } from '../domain/ports.js';

export class OnnxRetriever implements Retriever {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly d: number,
  ) {}

  static async load(file: string, dModel: number): Promise<OnnxRetriever> {
    try {
      // One intra-op thread: the MLP is tiny and the event loop's CPU is shared with gRPC.
      const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1 });
      return new OnnxRetriever(session, dModel);
    } catch (error) {
      throw new AppError('FAILED_PRECONDITION', `cannot load retriever ${file}`, { cause: error });
    }
  }

  async score(query: Float32Array, memory: Float32Array[]): Promise<Float32Array> {
    const m = memory.length;
    if (m === 0) return new Float32Array(0);
    const mem = new Float32Array(m * this.d);
    memory.forEach((v, i) => mem.set(v, i * this.d));
    const out = await this.session.run({
      // A stored vector may be a view into a larger buffer: hand onnxruntime its own copy.
      query: new ort.Tensor('float32', query.slice(), [1, this.d]),
      memory: new ort.Tensor('float32', mem, [1, m, this.d]),
      memory_mask: new ort.Tensor('int64', new BigInt64Array(m).fill(1n), [1, m]),
    });
    const scores = out.scores;
    if (scores === undefined || !(scores.data instanceof Float32Array)) {
      throw new AppError('INTERNAL', 'retriever returned no scores');
    }
    return scores.data.slice(0, m);
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
