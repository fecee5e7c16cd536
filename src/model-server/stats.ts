/** Per model-version counters with Triton's meaning (ModelStatistics in the protocol). */
export interface Duration {
  count: number;
  ns: number;
}

const zero = (): Duration => ({ count: 0, ns: 0 });

export class ModelStats {
  lastInferenceMs = 0;
  /** Successful inferences; a request of batch size b counts b. */
  inferenceCount = 0;
  /** Model executions; one dynamically formed batch counts 1. */
  executionCount = 0;
  readonly success = zero();
  readonly fail = zero();
  readonly queue = zero();
  readonly computeInput = zero();
  readonly computeInfer = zero();
  readonly computeOutput = zero();
  readonly batches = new Map<number, Duration>();

  recordRequest(ok: boolean, batchSize: number, ns: number): void {
    const d = ok ? this.success : this.fail;
    d.count += 1;
    d.ns += ns;
    if (ok) this.inferenceCount += batchSize;
    this.lastInferenceMs = Date.now();
  }

  recordQueue(ns: number): void {
    this.queue.count += 1;
    this.queue.ns += ns;
  }

  recordExecution(batchSize: number, ns: number, requests: number): void {
    this.executionCount += 1;
    this.computeInfer.count += requests;
    this.computeInfer.ns += ns;
    const b = this.batches.get(batchSize) ?? zero();
    b.count += 1;
    b.ns += ns;
    this.batches.set(batchSize, b);
  }
}
