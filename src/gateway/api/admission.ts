/**
 * Per-gateway load bounds. Recommend: at most `maxRecommends` at once (a counter: a bulkhead with no queue, without
 * a policy's promises and events per call); one more is refused at once with RESOURCE_EXHAUSTED and a RetryInfo hint
 * rather than queued behind the others.
 * Ingest: at most `maxIngestEvents` events being stored at once over all streams; streams are paused (HTTP/2
 * flow control pushes back on the producers) while the gateway is at the bound, and a stream opened then is
 * refused with RESOURCE_EXHAUSTED and a retry hint.
 */
import { AppError } from '../../shared/errors.js';

export interface AdmissionLimits {
  maxRecommends: number;
  maxIngestEvents: number;
  /** Retry hint sent with a refusal (default 100 ms). */
  retryAfterMs?: number;
}

export class Admission {
  private recommendsInFlight = 0;
  private ingestInFlight = 0;
  private readonly paused = new Set<() => void>();

  constructor(private readonly limits: AdmissionLimits) {}

  private busy(what: string): AppError {
    return new AppError(
      'RESOURCE_EXHAUSTED',
      `gateway is at its bound of concurrent ${what}; retry shortly`,
      {
        retryable: true,
        retryAfterMs: this.limits.retryAfterMs ?? 100,
      },
    );
  }

  /** Runs a Recommend within the bound, or throws RESOURCE_EXHAUSTED at once. */
  async recommend<T>(fn: () => Promise<T>): Promise<T> {
    if (this.recommendsInFlight >= this.limits.maxRecommends) throw this.busy('Recommend calls');
    this.recommendsInFlight++;
    try {
      return await fn();
    } finally {
      this.recommendsInFlight--;
    }
  }

  /** Throws RESOURCE_EXHAUSTED when a new Ingest stream should not start now. */
  admitIngestStream(): void {
    if (this.ingestInFlight >= this.limits.maxIngestEvents) throw this.busy('Ingest events');
  }

  /** Counts one event in; true when its stream should pause (`resume` is called once there is room). */
  ingestStarted(resume: () => void): boolean {
    this.ingestInFlight++;
    if (this.ingestInFlight < this.limits.maxIngestEvents) return false;
    this.paused.add(resume);
    return true;
  }

  ingestFinished(): void {
    this.ingestInFlight--;
    if (this.ingestInFlight >= this.limits.maxIngestEvents || this.paused.size === 0) return;
    const waiting = [...this.paused];
    this.paused.clear();
    for (const resume of waiting) resume();
  }

  /** A stream that ended no longer waits for room. */
  forget(resume: () => void): void {
    this.paused.delete(resume);
  }
}
