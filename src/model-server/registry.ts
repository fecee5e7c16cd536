/**
 * The loaded repository: one ServedVersion per model version (an ONNX session behind its scheduler, or
 * an ensemble runner), lookup with Triton's version semantics and NOT_FOUND messages, and inference with
 * statistics. Ensemble steps run in dependency order; intermediate tensors stay in process and every
 * member call goes through the member's own scheduler, so member requests batch with direct traffic.
 */
import { SpanStatusCode, trace, type Context } from '@opentelemetry/api';
import { AppError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { Tensor } from '../triton/tensor.js';
import { OnnxExecutor, type OnnxThreadOptions } from './onnx-model.js';
import { checkEnsemble, scanRepository, type RepositoryModel } from './repository.js';
import { ModelScheduler } from './scheduler.js';
import { ModelStats } from './stats.js';
import { checkInputs } from './validate.js';

const tracer = trace.getTracer('automr-model-server');

export interface ServedVersion {
  model: RepositoryModel;
  version: string;
  stats: ModelStats;
  /** Runs validated inputs; the batch size is dim 0 for batching models, else 1. */
  infer(inputs: Map<string, Tensor>, batchSize: number, ctx: Context): Promise<Map<string, Tensor>>;
  /** Whether this version can serve now (its session, or every member of an ensemble, is alive). */
  healthy(): boolean;
  release(): Promise<void>;
}

class OnnxVersion implements ServedVersion {
  readonly stats = new ModelStats();
  private readonly scheduler: ModelScheduler;

  constructor(
    readonly model: RepositoryModel,
    readonly version: string,
    private readonly executor: OnnxExecutor,
  ) {
    const db = model.config.dynamic_batching;
    this.scheduler = new ModelScheduler(
      {
        model: model.name,
        version,
        maxBatchSize: model.config.max_batch_size,
        dynamicBatching:
          db == null
            ? undefined
            : {
                maxQueueDelayUs: Number(db.max_queue_delay_microseconds),
                preferredBatchSizes: db.preferred_batch_size,
              },
      },
      executor,
      this.stats,
    );
  }

  async infer(inputs: Map<string, Tensor>, batchSize: number, ctx: Context): Promise<Map<string, Tensor>> {
    const start = process.hrtime.bigint();
    try {
      const out = await this.scheduler.submit(inputs, batchSize, ctx);
      this.stats.recordRequest(true, batchSize, Number(process.hrtime.bigint() - start));
      return out;
    } catch (error) {
      this.stats.recordRequest(false, batchSize, Number(process.hrtime.bigint() - start));
      throw error;
    }
  }

  healthy(): boolean {
    return this.executor.alive();
  }

  release(): Promise<void> {
    return this.executor.release();
  }
}

class EnsembleVersion implements ServedVersion {
  readonly stats = new ModelStats();

  constructor(
    readonly model: RepositoryModel,
    readonly version: string,
    private readonly order: number[],
    private readonly registry: ModelRegistry,
  ) {}

  async infer(inputs: Map<string, Tensor>, batchSize: number, ctx: Context): Promise<Map<string, Tensor>> {
    const start = process.hrtime.bigint();
    try {
      const out = await this.runSteps(inputs, ctx);
      const ns = Number(process.hrtime.bigint() - start);
      this.stats.recordExecution(batchSize, ns, 1);
      this.stats.recordRequest(true, batchSize, ns);
      return out;
    } catch (error) {
      this.stats.recordRequest(false, batchSize, Number(process.hrtime.bigint() - start));
      throw error;
    }
  }

  private async runSteps(inputs: Map<string, Tensor>, ctx: Context): Promise<Map<string, Tensor>> {
    const steps = this.model.config.ensemble_scheduling?.step ?? [];
    const tensors = new Map(inputs);
    for (const index of this.order) {
      const step = steps[index]!;
      const v = Number(step.model_version);
      const member = this.registry.get(step.model_name, v === -1 ? '' : String(v));
      const span = tracer.startSpan(
        'triton.ensemble.step',
        {
          attributes: {
            'triton.ensemble.name': this.model.name,
            'triton.ensemble.step': index,
            'triton.model.name': member.model.name,
            'triton.model.version': member.version,
          },
        },
        ctx,
      );
      try {
        const memberInputs = new Map<string, Tensor>();
        for (const [input, tensorName] of Object.entries(step.input_map)) {
          const t = tensors.get(tensorName);
          if (t === undefined) throw new AppError('INTERNAL', `ensemble tensor '${tensorName}' is missing`);
          memberInputs.set(input, { ...t, name: input });
        }
        const batch = checkInputs(member.model, [...memberInputs.values()]);
        const out = await member.infer(memberInputs, batch, trace.setSpan(ctx, span));
        for (const [output, tensorName] of Object.entries(step.output_map)) {
          const t = out.get(output);
          if (t === undefined)
            throw new AppError('INTERNAL', `model '${member.model.name}' returned no '${output}'`);
          tensors.set(tensorName, { ...t, name: tensorName });
        }
      } catch (error) {
        span.recordException(error as Error);
        span.setStatus({ code: SpanStatusCode.ERROR });
        throw error;
      } finally {
        span.end();
      }
    }
    const result = new Map<string, Tensor>();
    for (const o of this.model.outputs) result.set(o.name, tensors.get(o.name)!);
    return result;
  }

  healthy(): boolean {
    const steps = this.model.config.ensemble_scheduling?.step ?? [];
    return steps.every((step) => {
      const v = Number(step.model_version);
      try {
        return this.registry.get(step.model_name, v === -1 ? '' : String(v)).healthy();
      } catch {
        return false;
      }
    });
  }

  release(): Promise<void> {
    return Promise.resolve();
  }
}

export interface ServedModel {
  model: RepositoryModel;
  /** Ascending by version number. */
  versions: Map<string, ServedVersion>;
}

export class ModelRegistry {
  private constructor(readonly models: Map<string, ServedModel>) {}

  static async load(root: string, threads: OnnxThreadOptions, logger: Logger): Promise<ModelRegistry> {
    const repo = await scanRepository(root, logger);
    const registry = new ModelRegistry(new Map());
    try {
      for (const model of repo.values()) {
        if (model.kind !== 'onnx') continue;
        const versions = new Map<string, ServedVersion>();
        registry.models.set(model.name, { model, versions });
        for (const v of model.versions) {
          const executor = await OnnxExecutor.load(model, v.modelFile!, threads);
          versions.set(v.version, new OnnxVersion(model, v.version, executor));
          logger.info({ model: model.name, version: v.version }, 'model version loaded');
        }
      }
      for (const model of repo.values()) {
        if (model.kind !== 'ensemble') continue;
        const order = checkEnsemble(model, repo);
        const versions = new Map<string, ServedVersion>();
        for (const v of model.versions)
          versions.set(v.version, new EnsembleVersion(model, v.version, order, registry));
        registry.models.set(model.name, { model, versions });
        logger.info({ model: model.name, versions: [...versions.keys()] }, 'ensemble loaded');
      }
    } catch (error) {
      await registry.release();
      throw error;
    }
    return registry;
  }

  /** Triton's lookup: empty version = latest served version. */
  get(name: string, version: string): ServedVersion {
    const served = this.models.get(name);
    if (served === undefined)
      throw new AppError('NOT_FOUND', `Request for unknown model: '${name}' is not found`);
    if (version === '') {
      const latest = [...served.versions.values()].at(-1);
      if (latest === undefined)
        throw new AppError('UNAVAILABLE', `Request for unknown model: '${name}' has no available versions`);
      return latest;
    }
    const v = served.versions.get(version);
    if (v === undefined) {
      throw new AppError('NOT_FOUND', `Request for unknown model: '${name}' version ${version} is not found`);
    }
    return v;
  }

  /** True when every loaded version can serve. */
  healthy(): boolean {
    return [...this.models.values()].every((m) => [...m.versions.values()].every((v) => v.healthy()));
  }

  async release(): Promise<void> {
    for (const served of this.models.values()) {
      for (const v of served.versions.values()) await v.release();
    }
  }
}
