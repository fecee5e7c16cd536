/**
 * One onnxruntime-node InferenceSession per model version, created at load and checked against the
 * model's config.pbtxt the way Triton's onnxruntime backend checks it (names, datatypes, rank including
 * the implicit batch dimension, fixed dims).
 */
import type * as ort from 'onnxruntime-node';
import { AppError } from '../shared/errors.js';
import type { Tensor, TensorData, TritonDatatype } from '../triton/tensor.js';
import {
  inProcessSession,
  workerSession,
  type PlainTensor,
  type SessionPort,
  type ValueMetadata,
} from './ort-session.js';
import { refuse, type RepositoryModel, type TensorSpec } from './repository.js';

export interface OnnxThreadOptions {
  /** Threads one session run may use for a single operator (ORT's intra-op pool). */
  intraOpThreads: number;
  /** Threads for running independent graph branches; 1 with sequential execution. */
  interOpThreads: number;
  /** Run the session in a worker thread (default) so the event loop is not blocked while it computes. */
  inWorker: boolean;
}

const TO_ORT: Partial<Record<TritonDatatype, ort.Tensor.Type>> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  INT8: 'int8',
  INT16: 'int16',
  UINT16: 'uint16',
  INT32: 'int32',
  UINT32: 'uint32',
  INT64: 'int64',
  UINT64: 'uint64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
};

function fullShape(spec: TensorSpec, batched: boolean): number[] {
  return batched ? [-1, ...spec.dims] : spec.dims;
}

function describeShape(shape: readonly (number | string)[]): string {
  return `[${shape.map((d) => (typeof d === 'number' ? d : -1)).join(',')}]`;
}

function checkAgainstModel(
  model: RepositoryModel,
  kind: 'input' | 'output',
  specs: TensorSpec[],
  metadata: readonly ValueMetadata[],
): void {
  const batched = model.config.max_batch_size > 0;
  for (const spec of specs) {
    const meta = metadata.find((m) => m.name === spec.name);
    if (meta === undefined) {
      throw refuse(
        model.name,
        `unexpected ${kind} '${spec.name}' in model configuration, allowed ${kind}s are: ${metadata.map((m) => m.name).join(', ')}`,
      );
    }
    if (!meta.isTensor) throw refuse(model.name, `${kind} '${spec.name}' is not a tensor in the ONNX model`);
    const ortType = TO_ORT[spec.datatype];
    if (ortType !== meta.type) {
      throw refuse(
        model.name,
        `unexpected datatype TYPE_${spec.datatype} for ${kind} '${spec.name}', model provides ${meta.type}`,
      );
    }
    const modelShape = meta.shape ?? [];
    if (modelShape.length === 0) continue; // shape unknown to the model: nothing to compare
    const configured = fullShape(spec, batched);
    const modelDims = modelShape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1));
    const agree =
      modelDims.length === configured.length &&
      configured.every((d, i) => modelDims[i] === -1 || modelDims[i] === d);
    if (!agree) {
      throw refuse(
        model.name,
        `model '${model.name}', tensor '${spec.name}': the model expects ${modelDims.length} dimensions ` +
          `(shape ${describeShape(modelShape)}) but the model configuration specifies ${configured.length} dimensions ` +
          (batched
            ? `(an initial batch dimension because max_batch_size > 0 followed by the explicit tensor shape, making complete shape ${describeShape(configured)})`
            : `(shape ${describeShape(configured)})`),
      );
    }
  }
  if (kind === 'input') {
    for (const meta of metadata) {
      if (!specs.some((s) => s.name === meta.name)) {
        throw refuse(
          model.name,
          `unable to load model '${model.name}', configuration expects ${specs.length} inputs, model provides ${metadata.length}`,
        );
      }
    }
  }
}

export class OnnxExecutor {
  private constructor(
    private readonly session: SessionPort,
    private readonly outputs: TensorSpec[],
  ) {}

  static async load(
    model: RepositoryModel,
    modelFile: string,
    threads: OnnxThreadOptions,
  ): Promise<OnnxExecutor> {
    for (const spec of [...model.inputs, ...model.outputs]) {
      if (TO_ORT[spec.datatype] === undefined) {
        throw refuse(
          model.name,
          `datatype ${spec.datatype} of '${spec.name}' is not supported by onnxruntime-node`,
        );
      }
    }
    let session: SessionPort;
    try {
      session = await (threads.inWorker ? workerSession : inProcessSession)(modelFile, threads);
    } catch (error) {
      throw refuse(model.name, `onnxruntime could not load '${modelFile}': ${(error as Error).message}`);
    }
    try {
      checkAgainstModel(model, 'input', model.inputs, session.inputMetadata);
      checkAgainstModel(model, 'output', model.outputs, session.outputMetadata);
    } catch (error) {
      await session.release();
      throw error;
    }
    return new OnnxExecutor(session, model.outputs);
  }

  /** Runs the session on whole (possibly batched) inputs and returns every configured output. */
  async run(inputs: Map<string, Tensor>): Promise<Map<string, Tensor>> {
    const feeds: Record<string, PlainTensor> = {};
    for (const [name, t] of inputs) {
      const type = TO_ORT[t.datatype]!;
      const data = Array.isArray(t.data) ? t.data.map((b) => b.toString('utf8')) : t.data;
      feeds[name] = { type, data, dims: t.shape };
    }
    let results: Record<string, PlainTensor>;
    try {
      results = await this.session.run(
        feeds,
        this.outputs.map((o) => o.name),
      );
    } catch (error) {
      throw new AppError('INTERNAL', `onnxruntime execution failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const out = new Map<string, Tensor>();
    for (const spec of this.outputs) {
      const r = results[spec.name];
      if (r === undefined) throw new AppError('INTERNAL', `onnxruntime returned no output '${spec.name}'`);
      const data: TensorData =
        r.type === 'string'
          ? (r.data as string[]).map((s) => Buffer.from(s, 'utf8'))
          : (r.data as TensorData);
      out.set(spec.name, { name: spec.name, datatype: spec.datatype, shape: [...r.dims], data });
    }
    return out;
  }

  alive(): boolean {
    return this.session.alive();
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
