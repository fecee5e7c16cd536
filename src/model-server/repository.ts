/**
 * Reads a Triton model repository the way Triton does: one folder per model at the root, each with a
 * config.pbtxt (protobuf text format) and numeric version folders; the version policy picks the versions
 * served (default: the latest one). Anything Triton would refuse to load is refused here, with a message
 * naming the model, so that a repository that works locally also loads in production.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelConfig__Output } from '../generated/inference/ModelConfig.js';
import type { ModelInput__Output } from '../generated/inference/ModelInput.js';
import type { ModelOutput__Output } from '../generated/inference/ModelOutput.js';
import type { Logger } from '../shared/logger.js';
import { AppError } from '../shared/errors.js';
import { isDatatype, type TritonDatatype } from '../triton/tensor.js';
import { parseModelConfig } from './model-config.js';

export type ModelConfig = ModelConfig__Output;

export interface TensorSpec {
  name: string;
  datatype: TritonDatatype;
  /** Dims as configured, without the implicit batch dimension. */
  dims: number[];
  optional: boolean;
}

export interface RepositoryModel {
  name: string;
  dir: string;
  config: ModelConfig;
  kind: 'onnx' | 'ensemble';
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Versions served under the version policy, ascending, with the model file of each (onnx). */
  versions: { version: string; dir: string; modelFile: string | undefined }[];
}

export function refuse(model: string, reason: string): AppError {
  return new AppError('FAILED_PRECONDITION', `failed to load '${model}': ${reason}`);
}

/** `TYPE_FP32` → `FP32`, `TYPE_STRING` → `BYTES` (the protocol's name for it). */
export function protocolDatatype(configType: string): TritonDatatype | undefined {
  const bare = configType.replace(/^TYPE_/, '');
  const name = bare === 'STRING' ? 'BYTES' : bare;
  return isDatatype(name) ? name : undefined;
}

function tensorSpec(
  model: string,
  kind: 'input' | 'output',
  t: ModelInput__Output | ModelOutput__Output,
  batched: boolean,
): TensorSpec {
  if (t.name === '') throw refuse(model, `model ${kind} must specify 'name'`);
  const datatype = protocolDatatype(t.data_type);
  if (datatype === undefined) throw refuse(model, `model ${kind} '${t.name}' must specify 'data_type'`);
  const dims = t.dims.map(Number);
  const hasReshape = t.reshape !== null && t.reshape !== undefined;
  if (dims.length === 0 && !(batched && hasReshape)) {
    throw refuse(model, `model ${kind} '${t.name}' must specify 'dims'`);
  }
  for (const d of dims) {
    if (!(d === -1 || d >= 1)) {
      throw refuse(
        model,
        `model ${kind} '${t.name}' dimension must be integer >= 1, or -1 to indicate a variable-size dimension`,
      );
    }
  }
  return { name: t.name, datatype, dims, optional: 'optional' in t ? t.optional : false };
}

function checkUnique(model: string, kind: string, specs: TensorSpec[]): void {
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.name)) throw refuse(model, `${kind} '${s.name}' specified multiple times`);
    seen.add(s.name);
  }
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

async function loadModel(root: string, name: string): Promise<RepositoryModel> {
  const dir = join(root, name);
  const configPath = join(dir, 'config.pbtxt');
  if (!(await isFile(configPath))) {
    // Real Triton can auto-complete a missing config only for some backends and only when it finds a
    // model file; the local server never guesses, so a folder without config.pbtxt is refused.
    throw refuse(name, `no config.pbtxt in '${dir}' (not a model directory)`);
  }
  const text = await readFile(configPath, 'utf8');
  let config: ModelConfig;
  try {
    config = parseModelConfig(text);
  } catch (error) {
    // Everything the text-format parser throws is about the text; the message says what is wrong.
    throw refuse(name, `invalid config.pbtxt '${configPath}': ${(error as Error).message}`);
  }
  if (config.name === '') config.name = name;
  if (config.name !== name) {
    throw refuse(name, `unexpected 'name' '${config.name}' in model configuration, expecting '${name}'`);
  }

  let kind: RepositoryModel['kind'];
  if (config.platform === 'ensemble') {
    kind = 'ensemble';
    if (config.ensemble_scheduling == null || config.ensemble_scheduling.step.length === 0) {
      throw refuse(name, `ensemble must specify at least one step in 'ensemble_scheduling'`);
    }
  } else if (config.platform === 'onnxruntime_onnx' || config.backend === 'onnxruntime') {
    if (config.platform !== '' && config.platform !== 'onnxruntime_onnx') {
      throw refuse(name, `platform '${config.platform}' does not match backend '${config.backend}'`);
    }
    kind = 'onnx';
    if (config.ensemble_scheduling != null)
      throw refuse(name, `'ensemble_scheduling' is only valid for ensembles`);
  } else if (config.platform === '' && config.backend === '') {
    throw refuse(name, `must specify 'platform' or 'backend'`);
  } else {
    throw refuse(
      name,
      `platform '${config.platform}' / backend '${config.backend}' is not supported by the local model server ` +
        `(it serves onnxruntime_onnx and ensemble models; use NVIDIA Triton for others)`,
    );
  }

  if (config.max_batch_size < 0) throw refuse(name, `'max_batch_size' must be non-negative`);
  const batched = config.max_batch_size > 0;
  if (config.input.length === 0) throw refuse(name, `model must specify at least one input`);
  if (config.output.length === 0) throw refuse(name, `model must specify at least one output`);
  const inputs = config.input.map((t) => tensorSpec(name, 'input', t, batched));
  const outputs = config.output.map((t) => tensorSpec(name, 'output', t, batched));
  checkUnique(name, 'input', inputs);
  checkUnique(name, 'output', outputs);
  const db = config.dynamic_batching;
  if (db != null) {
    if (!batched) throw refuse(name, `dynamic batching requires 'max_batch_size' > 0`);
    for (const p of db.preferred_batch_size) {
      if (p < 1 || p > config.max_batch_size) {
        throw refuse(
          name,
          `dynamic batching preferred size must be positive and <= max_batch_size ${config.max_batch_size}`,
        );
      }
    }
  }

  // Version folders: numeric names only (others are ignored, as Triton does).
  const entries = await readdir(dir, { withFileTypes: true });
  const numeric = entries
    .filter((e) => e.isDirectory() && /^\d+$/.test(e.name))
    .map((e) => e.name)
    .sort((a, b) => Number(a) - Number(b));
  const policy = config.version_policy;
  let selected: string[];
  if (policy?.policy_choice === 'all') selected = numeric;
  else if (policy?.policy_choice === 'specific') {
    const wanted = (policy.specific?.versions ?? []).map(String);
    for (const v of wanted) {
      if (!numeric.includes(v))
        throw refuse(name, `version ${v} is specified by the version policy but has no folder`);
    }
    selected = numeric.filter((v) => wanted.includes(v));
  } else {
    const n = Math.max(1, policy?.latest?.num_versions ?? 1);
    selected = numeric.slice(-n);
  }
  if (selected.length === 0)
    throw refuse(name, `at least one version must be available under the version policy of model '${name}'`);

  const filename = config.default_model_filename !== '' ? config.default_model_filename : 'model.onnx';
  const versions: RepositoryModel['versions'] = [];
  for (const version of selected) {
    const vdir = join(dir, version);
    let modelFile: string | undefined;
    if (kind === 'onnx') {
      modelFile = join(vdir, filename);
      if (!(await isFile(modelFile)))
        throw refuse(name, `version ${version}: model file '${modelFile}' not found`);
    }
    versions.push({ version, dir: vdir, modelFile });
  }
  return { name, dir, config, kind, inputs, outputs, versions };
}

/** Checks ensembles against their members: steps, tensor wiring, batch sizes; returns steps in run order. */
export function checkEnsemble(model: RepositoryModel, all: Map<string, RepositoryModel>): number[] {
  const steps = model.config.ensemble_scheduling?.step ?? [];
  const available = new Set(model.inputs.map((i) => i.name));
  const producedBy = new Map<string, number>();
  steps.forEach((step, index) => {
    const member = all.get(step.model_name);
    if (member === undefined) {
      throw refuse(model.name, `ensemble step ${index} refers to unknown model '${step.model_name}'`);
    }
    if (member.kind === 'ensemble')
      throw refuse(
        model.name,
        `nested ensemble '${step.model_name}' is not supported by the local model server`,
      );
    const v = Number(step.model_version);
    if (v !== -1 && !member.versions.some((x) => x.version === String(v))) {
      throw refuse(
        model.name,
        `ensemble step ${index} refers to unavailable version ${v} of '${member.name}'`,
      );
    }
    if (model.config.max_batch_size > member.config.max_batch_size) {
      throw refuse(
        model.name,
        `ensemble max_batch_size ${model.config.max_batch_size} exceeds max_batch_size ${member.config.max_batch_size} of member '${member.name}'`,
      );
    }
    for (const key of Object.keys(step.input_map)) {
      if (!member.inputs.some((i) => i.name === key)) {
        throw refuse(
          model.name,
          `ensemble step ${index}: '${key}' is not an input of model '${member.name}'`,
        );
      }
    }
    for (const input of member.inputs) {
      if (!input.optional && step.input_map[input.name] === undefined) {
        throw refuse(
          model.name,
          `ensemble step ${index}: input '${input.name}' of model '${member.name}' is not mapped`,
        );
      }
    }
    for (const [key, tensor] of Object.entries(step.output_map)) {
      if (!member.outputs.some((o) => o.name === key)) {
        throw refuse(
          model.name,
          `ensemble step ${index}: '${key}' is not an output of model '${member.name}'`,
        );
      }
      if (producedBy.has(tensor) || available.has(tensor)) {
        throw refuse(model.name, `ensemble tensor '${tensor}' is produced more than once`);
      }
      producedBy.set(tensor, index);
    }
  });
  // Every ensemble tensor must exist, and its datatype and dims must fit each model input it feeds.
  const tensorSpec = (tensor: string): TensorSpec | undefined => {
    const input = model.inputs.find((i) => i.name === tensor);
    if (input !== undefined) return input;
    const index = producedBy.get(tensor);
    if (index === undefined) return undefined;
    const step = steps[index]!;
    const output = Object.entries(step.output_map).find(([, t]) => t === tensor)?.[0];
    return all.get(step.model_name)?.outputs.find((o) => o.name === output);
  };
  const fits = (a: number[], b: number[]): boolean =>
    a.length === b.length && a.every((d, i) => d === -1 || b[i] === -1 || d === b[i]);
  for (const step of steps) {
    const member = all.get(step.model_name)!;
    for (const [input, tensor] of Object.entries(step.input_map)) {
      const source = tensorSpec(tensor);
      if (source === undefined) {
        throw refuse(
          model.name,
          `ensemble tensor '${tensor}' is neither an ensemble input nor produced by any step`,
        );
      }
      const target = member.inputs.find((i) => i.name === input)!;
      if (source.datatype !== target.datatype || !fits(source.dims, target.dims)) {
        throw refuse(
          model.name,
          `ensemble tensor '${tensor}' (${source.datatype} [${source.dims.join(',')}]) does not match input '${input}' ` +
            `of model '${member.name}' (${target.datatype} [${target.dims.join(',')}])`,
        );
      }
    }
  }

  for (const out of model.outputs) {
    if (!producedBy.has(out.name))
      throw refuse(model.name, `ensemble output '${out.name}' is not produced by any step`);
    const source = tensorSpec(out.name)!;
    if (source.datatype !== out.datatype || !fits(source.dims, out.dims)) {
      throw refuse(
        model.name,
        `ensemble output '${out.name}' does not match the datatype or dims of the step producing it`,
      );
    }
  }
  // Topological order (Kahn): a step runs once every tensor it reads exists.
  const order: number[] = [];
  const done = new Set<number>();
  const have = new Set(available);
  while (order.length < steps.length) {
    const ready = steps.findIndex(
      (step, i) => !done.has(i) && Object.values(step.input_map).every((t) => have.has(t)),
    );
    if (ready < 0) throw refuse(model.name, `ensemble steps form a cycle`);
    done.add(ready);
    order.push(ready);
    for (const t of Object.values(steps[ready]!.output_map)) have.add(t);
  }
  return order;
}

/** Scans the repository root; refuses the whole repository if any model would fail to load in Triton. */
export async function scanRepository(root: string, logger: Logger): Promise<Map<string, RepositoryModel>> {
  if (!(await isDir(root)))
    throw new AppError('FAILED_PRECONDITION', `model repository '${root}' is not a directory`);
  const entries = await readdir(root, { withFileTypes: true });
  const models = new Map<string, RepositoryModel>();
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!entry.isDirectory()) {
      // Triton only looks at sub-directories of the repository; plain files are ignored.
      logger.warn({ file: entry.name }, 'ignoring non-directory entry at the model repository root');
      continue;
    }
    models.set(entry.name, await loadModel(root, entry.name));
  }
  if (models.size === 0)
    throw new AppError('FAILED_PRECONDITION', `model repository '${root}' contains no models`);
  for (const model of models.values()) if (model.kind === 'ensemble') checkEnsemble(model, models);
  return models;
}
