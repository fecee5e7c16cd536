/**
 * Per model-version scheduling. Without dynamic_batching every request runs on its own, one execution
 * at a time (one CPU instance). With dynamic_batching, queued requests whose non-batch shapes are equal
 * (Triton batches nothing else unless ragged batching is configured) are joined along the batch
 * dimension up to max_batch_size, waiting at most max_queue_delay_microseconds for more to arrive; the
 * outputs are split back to each caller.
 */
import { context as otelContext, SpanStatusCode, trace, type Context, type Link } from '@opentelemetry/api';
import type { Tensor } from '../triton/tensor.js';
import { concatBatch, sliceBatch } from './batch.js';
import type { ModelStats } from './stats.js';

export interface Executor {
  run(inputs: Map<string, Tensor>): Promise<Map<string, Tensor>>;
}

export interface SchedulerOptions {
  model: string;
  version: string;
  maxBatchSize: number;
  /** Undefined: no dynamic batching. */
  dynamicBatching: { maxQueueDelayUs: number; preferredBatchSizes: number[] } | undefined;
}

interface Job {
  inputs: Map<string, Tensor>;
  batchSize: number;
  key: string;
  ctx: Context;
  enqueuedNs: bigint;
  resolve: (outputs: Map<string, Tensor>) => void;
  reject: (error: unknown) => void;
}

const tracer = trace.getTracer('automr-model-server');

function batchKey(inputs: Map<string, Tensor>): string {
  return [...inputs.values()]
    .map((t) => `${t.name}:${t.datatype}:${t.shape.slice(1).join('x')}`)
    .sort()
    .join('|');
}

export class ModelScheduler {
  private readonly queue: Job[] = [];
  private busy = false;
  private timer: NodeJS.Timeout | undefined;
  private pumpQueued = false;

  constructor(
    private readonly options: SchedulerOptions,
    private readonly executor: Executor,
    readonly stats: ModelStats,
  ) {}

  /** Queues one validated request (batch size = dim 0 when batching) and resolves with its outputs. */
  submit(inputs: Map<string, Tensor>, batchSize: number, ctx: Context): Promise<Map<string, Tensor>> {
    return new Promise((resolve, reject) => {
      this.queue.push({
        inputs,
        batchSize,
        key: batchKey(inputs),
        ctx,
        enqueuedNs: process.hrtime.bigint(),
        resolve,
        reject,
      });
      // Deferred to the next turn so requests that arrive together are seen together.
      if (!this.pumpQueued) {
        this.pumpQueued = true;
        setImmediate(() => {
          this.pumpQueued = false;
          this.pump();
        });
      }
    });
  }

  /** Requests queued or running. */
  pending(): number {
    return this.queue.length + (this.busy ? 1 : 0);
  }

  private pump(): void {
    if (this.busy || this.queue.length === 0) return;
    const head = this.queue[0]!;
    const db = this.options.dynamicBatching;
    if (db === undefined) {
      this.queue.shift();
      void this.execute([head]);
      return;
    }
    const max = this.options.maxBatchSize;
    let total = 0;
    for (const job of this.queue) if (job.key === head.key) total += job.batchSize;
    const waitedUs = Number(process.hrtime.bigint() - head.enqueuedNs) / 1000;
    const preferred = db.preferredBatchSizes.includes(total);
    if (total >= max || preferred || waitedUs >= db.maxQueueDelayUs) {
      if (this.timer !== undefined) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      const batch: Job[] = [];
      let size = 0;
      for (let i = 0; i < this.queue.length;) {
        const job = this.queue[i]!;
        if (job.key === head.key && size + job.batchSize <= max) {
          batch.push(job);
          size += job.batchSize;
          this.queue.splice(i, 1);
        } else i += 1;
      }
      void this.execute(batch);
    } else if (this.timer === undefined) {
      const remainingMs = Math.max(0, (db.maxQueueDelayUs - waitedUs) / 1000);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, remainingMs);
    }
  }

  private async execute(jobs: Job[]): Promise<void> {
    this.busy = true;
    const start = process.hrtime.bigint();
    for (const job of jobs) this.stats.recordQueue(Number(start - job.enqueuedNs));
    const batched = this.options.maxBatchSize > 0;
    const total = jobs.reduce((n, j) => n + j.batchSize, 0);
    const links: Link[] = jobs.flatMap((j) => {
      const sc = trace.getSpanContext(j.ctx);
      return sc === undefined ? [] : [{ context: sc }];
    });
    const span = tracer.startSpan(
      'triton.execute',
      {
        attributes: {
          'triton.model.name': this.options.model,
          'triton.model.version': this.options.version,
          'triton.batch.size': total,
          'triton.batch.requests': jobs.length,
        },
        links,
      },
      jobs[0]!.ctx,
    );
    try {
      let inputs: Map<string, Tensor>;
      if (jobs.length === 1) inputs = jobs[0]!.inputs;
      else {
        inputs = new Map();
        for (const name of jobs[0]!.inputs.keys())
          inputs.set(name, concatBatch(jobs.map((j) => j.inputs.get(name)!)));
      }
      const outputs = await otelContext.with(trace.setSpan(jobs[0]!.ctx, span), () =>
        this.executor.run(inputs),
      );
      this.stats.recordExecution(total, Number(process.hrtime.bigint() - start), jobs.length);
      if (jobs.length === 1 || !batched) {
        jobs[0]!.resolve(outputs);
      } else {
        let row = 0;
        for (const job of jobs) {
          const mine = new Map<string, Tensor>();
          for (const [name, t] of outputs) mine.set(name, sliceBatch(t, row, job.batchSize));
          row += job.batchSize;
          job.resolve(mine);
        }
      }
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR });
      for (const job of jobs) job.reject(error);
    } finally {
      span.end();
      this.busy = false;
      this.pump();
    }
  }
}
