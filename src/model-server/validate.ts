/**
 * Request validation with Triton's rules and (close to) Triton's messages: input count, names,
 * datatypes, shapes (implicit batch dimension when max_batch_size > 0, -1 = any size), byte sizes, and
 * requested outputs. Everything here is INVALID_ARGUMENT, as in Triton.
 */
import { AppError } from '../shared/errors.js';
import { decodeRaw, fromContents, isDatatype, type Tensor, type TensorContents } from '../triton/tensor.js';
import type { RepositoryModel } from './repository.js';

export interface WireInferInput {
  name: string;
  datatype: string;
  shape: number[];
  contents?: TensorContents | null;
}

export interface WireInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  inputs: WireInferInput[];
  outputs: { name: string }[];
  raw_input_contents: Buffer[];
}

export interface ValidatedRequest {
  inputs: Map<string, Tensor>;
  batchSize: number;
  /** Output names to return, in the order asked (all configured outputs when none are asked). */
  outputs: string[];
}

const invalid = (message: string): AppError => new AppError('INVALID_ARGUMENT', message);
const fmt = (shape: readonly number[]): string => `[${shape.join(',')}]`;

function hasContents(c: TensorContents | null | undefined): boolean {
  if (c === null || c === undefined) return false;
  return Object.values(c).some((v) => Array.isArray(v) && v.length > 0);
}

/** Checks names, count, datatypes and shapes of already decoded tensors; returns the batch size. */
export function checkInputs(
  model: RepositoryModel,
  inputs: { name: string; datatype: string; shape: number[] }[],
): number {
  const name = model.name;
  const seen = new Set<string>();
  for (const input of inputs) {
    if (seen.has(input.name))
      throw invalid(`input '${input.name}' already exists in request for model '${name}'`);
    seen.add(input.name);
  }
  const required = model.inputs.filter((i) => !i.optional);
  const missing = required.filter((i) => !seen.has(i.name)).map((i) => i.name);
  const countMessage = (): string => {
    const expected =
      required.length === model.inputs.length
        ? `${required.length}`
        : `${required.length}-${model.inputs.length}`;
    let message = `expected ${expected} inputs but got ${inputs.length} inputs for model '${name}'`;
    if (missing.length > 0) {
      const got = inputs.map((i) => `'${i.name}'`).join(', ');
      message += `. Got input(s) [${got}], but missing required input(s) [${missing.map((m) => `'${m}'`).join(', ')}]. Please provide all required input(s).`;
    }
    return message;
  };
  if (inputs.length < required.length || inputs.length > model.inputs.length) throw invalid(countMessage());
  const unknown = inputs.find((i) => !model.inputs.some((s) => s.name === i.name));
  if (unknown !== undefined)
    throw invalid(`unexpected inference input '${unknown.name}' for model '${name}'`);
  if (missing.length > 0) throw invalid(countMessage());
  const batched = model.config.max_batch_size > 0;
  let batchSize = 1;
  let batchFrom: string | undefined;
  for (const input of inputs) {
    const spec = model.inputs.find((s) => s.name === input.name);
    if (spec === undefined) throw invalid(`unexpected inference input '${input.name}' for model '${name}'`);
    if (!isDatatype(input.datatype))
      throw invalid(`invalid datatype '${input.datatype}' for input '${input.name}' of model '${name}'`);
    if (input.datatype !== spec.datatype) {
      throw invalid(
        `inference input '${input.name}' data-type is '${input.datatype}', but model '${name}' expects '${spec.datatype}'`,
      );
    }
    const expected = batched ? [-1, ...spec.dims] : spec.dims;
    const shape = input.shape;
    const ok =
      shape.length === expected.length &&
      shape.every((d, i) => Number.isInteger(d) && d >= 0 && (expected[i] === -1 || expected[i] === d));
    if (!ok) {
      throw invalid(
        `unexpected shape for input '${input.name}' for model '${name}'. Expected ${fmt(expected)}, got ${fmt(shape)}`,
      );
    }
    if (batched) {
      const b = shape[0]!;
      if (b < 1 || b > model.config.max_batch_size) {
        throw invalid(`inference request batch-size must be <= ${model.config.max_batch_size} for '${name}'`);
      }
      if (batchFrom === undefined) {
        batchSize = b;
        batchFrom = input.name;
      } else if (b !== batchSize) {
        throw invalid(
          `input '${input.name}' batch size ${b} does not match batch size ${batchSize} of input '${batchFrom}' for model '${name}'`,
        );
      }
    }
  }
  return batchSize;
}

/** Validates a protocol request against the model and decodes its inputs (raw or typed contents). */
export function validateRequest(model: RepositoryModel, req: WireInferRequest): ValidatedRequest {
  const name = model.name;
  const raw = req.raw_input_contents;
  if (raw.length > 0 && raw.length !== req.inputs.length) {
    throw invalid(
      `expected ${req.inputs.length} raw input contents (one per input) but got ${raw.length} for model '${name}'`,
    );
  }
  const batchSize = checkInputs(
    model,
    req.inputs.map((i) => ({ name: i.name, datatype: i.datatype, shape: i.shape.map(Number) })),
  );
  const inputs = new Map<string, Tensor>();
  req.inputs.forEach((input, index) => {
    const shape = input.shape.map(Number);
    const datatype = input.datatype;
    if (!isDatatype(datatype)) throw invalid(`invalid datatype '${datatype}' for input '${input.name}'`);
    const rawData = raw[index];
    if (rawData !== undefined) {
      if (hasContents(input.contents)) {
        throw invalid(
          `contents field must not be specified when using raw_input_contents for '${input.name}' for model '${name}'`,
        );
      }
      inputs.set(input.name, decodeRaw(input.name, datatype, shape, rawData));
    } else {
      inputs.set(input.name, fromContents(input.name, datatype, shape, input.contents ?? {}));
    }
  });
  const outputs =
    req.outputs.length === 0 ? model.outputs.map((o) => o.name) : req.outputs.map((o) => o.name);
  const asked = new Set<string>();
  for (const o of outputs) {
    if (!model.outputs.some((s) => s.name === o))
      throw invalid(`unexpected inference output '${o}' for model '${name}'`);
    if (asked.has(o)) throw invalid(`output '${o}' already requested for model '${name}'`);
    asked.add(o);
  }
  return { inputs, batchSize, outputs };
}
