/**
 * Closed- and open-loop load generation over an abstract unary call.
 *
 * Closed loop: `concurrency` callers each issue the next call as soon as the previous one returns; this
 * finds the saturation throughput but hides queueing (a slow server slows the arrivals). Open loop: calls
 * arrive on a fixed schedule whatever the server does, and latency is measured from each call's *intended*
 * start, so queueing behind a saturated server shows up in the percentiles (no coordinated omission).
 */
import { performance } from 'node:perf_hooks';
import { createHistogram, decodeHistogram, encodeHistogram, recordMs } from './histogram.js';
import { paceArrivals } from './pacing.js';

/** What one call reports back, besides success: the server's model-side accounting when it sends one. */
export interface CallOutcome {
  /** Time the server spent waiting on model-server calls for this request, in ns. */
  modelNs?: number;
  modelCalls?: number;
  modelRequestBytes?: number;
  modelResponseBytes?: number;
  /** Bytes of the response message(s) as received, when the call counts them. */
  responseBytes?: number;
}

export type UnaryCall = () => Promise<CallOutcome>;

export interface ClosedLoopSpec {
  type: 'closed';
  concurrency: number;
  warmupMs: number;
  durationMs: number;
}

export interface OpenLoopSpec {
  type: 'open';
  /** Arrivals per second. */
  rate: number;
  warmupMs: number;
  durationMs: number;
  /** Arrivals beyond this many calls in flight are counted as dropped instead of sent. */
  maxInFlight: number;
}

export type LoadSpec = ClosedLoopSpec | OpenLoopSpec;

export interface LoadResult {
  spec: LoadSpec;
  completed: number;
  /** Successful calls over the whole run, warmup included (to normalise server-side counters). */
  finished: number;
  errors: number;
  dropped: number;
  errorSamples: string[];
  elapsedS: number;
  rps: number;
  /** End-to-end latency (open loop: from the intended start), encoded HdrHistogram in ns. */
  latency: string;
  /** Open loop only: latency from the actual send, to separate generator lag from server queueing. */
  serviceLatency?: string;
  /** End-to-end minus model time, for calls whose server reported model time. */
  overhead?: string;
  modelCalls: number;
  modelRequestBytes: number;
  modelResponseBytes: number;
  /** Sum of response bytes over completed calls (server-streaming calls count them). */
  responseBytes: number;
  /** Calls that reported model accounting. */
  accounted: number;
}

class Collector {
  readonly latency = createHistogram();
  readonly serviceLatency = createHistogram();
  readonly overhead = createHistogram();
  completed = 0;
  finished = 0;
  errors = 0;
  dropped = 0;
  accounted = 0;
  modelCalls = 0;
  modelRequestBytes = 0;
  modelResponseBytes = 0;
  responseBytes = 0;
  readonly errorSamples: string[] = [];

  success(latencyMs: number, outcome: CallOutcome): void {
    this.completed += 1;
    recordMs(this.latency, latencyMs);
    this.responseBytes += outcome.responseBytes ?? 0;
    if (outcome.modelNs !== undefined) {
      this.accounted += 1;
      recordMs(this.overhead, Math.max(0, latencyMs - outcome.modelNs / 1e6));
      this.modelCalls += outcome.modelCalls ?? 0;
      this.modelRequestBytes += outcome.modelRequestBytes ?? 0;
      this.modelResponseBytes += outcome.modelResponseBytes ?? 0;
    }
  }

  failure(error: unknown): void {
    this.errors += 1;
    if (this.errorSamples.length < 5) {
      this.errorSamples.push(error instanceof Error ? error.message : String(error));
    }
  }

  result(spec: LoadSpec, elapsedMs: number, withService: boolean): LoadResult {
    const elapsedS = elapsedMs / 1000;
    return {
      spec,
      completed: this.completed,
      finished: this.finished,
      errors: this.errors,
      dropped: this.dropped,
      errorSamples: this.errorSamples,
      elapsedS,
      rps: elapsedS > 0 ? this.completed / elapsedS : 0,
      latency: encodeHistogram(this.latency),
      ...(withService ? { serviceLatency: encodeHistogram(this.serviceLatency) } : {}),
      ...(this.accounted > 0 ? { overhead: encodeHistogram(this.overhead) } : {}),
      modelCalls: this.modelCalls,
      modelRequestBytes: this.modelRequestBytes,
      modelResponseBytes: this.modelResponseBytes,
      responseBytes: this.responseBytes,
      accounted: this.accounted,
    };
  }
}

export async function runLoad(call: UnaryCall, spec: LoadSpec): Promise<LoadResult> {
  return spec.type === 'closed' ? runClosedLoop(call, spec) : runOpenLoop(call, spec);
}

export async function runClosedLoop(call: UnaryCall, spec: ClosedLoopSpec): Promise<LoadResult> {
  const collector = new Collector();
  const start = performance.now();
  const measureStart = start + spec.warmupMs;
  const measureEnd = measureStart + spec.durationMs;
  let lastEnd = measureStart;

  const worker = async (): Promise<void> => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= measureEnd) return;
      try {
        const outcome = await call();
        const t1 = performance.now();
        collector.finished += 1;
        if (t0 >= measureStart) {
          collector.success(t1 - t0, outcome);
          lastEnd = Math.max(lastEnd, t1);
        }
      } catch (error) {
        if (t0 >= measureStart) collector.failure(error);
      }
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  return collector.result(spec, Math.max(lastEnd, measureEnd) - measureStart, false);
}

export async function runOpenLoop(call: UnaryCall, spec: OpenLoopSpec): Promise<LoadResult> {
  const collector = new Collector();
  const intervalMs = 1000 / spec.rate;
  const start = performance.now();
  const measureStart = start + spec.warmupMs;
  const end = measureStart + spec.durationMs;
  let inFlight = 0;
  let lastEnd = measureStart;
  let drained: (() => void) | undefined;

  const issue = (intended: number): void => {
    const measured = intended >= measureStart;
    if (inFlight >= spec.maxInFlight) {
      if (measured) collector.dropped += 1;
      return;
    }
    inFlight += 1;
    const sentAt = performance.now();
    call().then(
      (outcome) => {
        const now = performance.now();
        collector.finished += 1;
        if (measured) {
          collector.success(now - intended, outcome);
          recordMs(collector.serviceLatency, now - sentAt);
          lastEnd = Math.max(lastEnd, now);
        }
        inFlight -= 1;
        if (inFlight === 0) drained?.();
      },
      (error: unknown) => {
        if (measured) collector.failure(error);
        inFlight -= 1;
        if (inFlight === 0) drained?.();
      },
    );
  };

  await paceArrivals(start, end, intervalMs, issue);
  if (inFlight > 0) {
    await new Promise<void>((resolve) => {
      drained = resolve;
    });
  }
  return collector.result(spec, Math.max(lastEnd, end) - measureStart, true);
}

function mergeEncoded(parts: (string | undefined)[]): string | undefined {
  const present = parts.filter((p): p is string => p !== undefined);
  if (present.length === 0) return undefined;
  const merged = createHistogram();
  for (const part of present) merged.add(decodeHistogram(part));
  return encodeHistogram(merged);
}

/**
 * Combines the results of several runs of the same spec (the suite alternates short slices of the floor
 * and the gateway so that machine-wide drift hits both alike): counts add, histograms merge, and the rate
 * is total completions over total measured time.
 */
export function mergeResults(parts: LoadResult[]): LoadResult {
  const first = parts[0];
  if (first === undefined) throw new Error('nothing to merge');
  const sum = (pick: (r: LoadResult) => number): number => parts.reduce((s, r) => s + pick(r), 0);
  const elapsedS = sum((r) => r.elapsedS);
  const completed = sum((r) => r.completed);
  const serviceLatency = mergeEncoded(parts.map((r) => r.serviceLatency));
  const overhead = mergeEncoded(parts.map((r) => r.overhead));
  return {
    spec: first.spec,
    completed,
    finished: sum((r) => r.finished),
    errors: sum((r) => r.errors),
    dropped: sum((r) => r.dropped),
    errorSamples: parts.flatMap((r) => r.errorSamples).slice(0, 5),
    elapsedS,
    rps: elapsedS > 0 ? completed / elapsedS : 0,
    latency: mergeEncoded(parts.map((r) => r.latency)) ?? first.latency,
    ...(serviceLatency === undefined ? {} : { serviceLatency }),
    ...(overhead === undefined ? {} : { overhead }),
    modelCalls: sum((r) => r.modelCalls),
    modelRequestBytes: sum((r) => r.modelRequestBytes),
    modelResponseBytes: sum((r) => r.modelResponseBytes),
    responseBytes: sum((r) => r.responseBytes),
    accounted: sum((r) => r.accounted),
  };
}
