/**
 * The circuit breaker (cockatiel) in front of the model server, applied by the adapter to each model-server call
 * it makes: one batched ModelInfer (the coalesced automr_recommend of many Recommends, or one llm_lower batch)
 * is one outcome, however many callers share it. Consecutive outages (unreachable, timed out) open it; while open
 * every call fails in microseconds with UNAVAILABLE and a retry hint instead of waiting out its deadline; after
 * `resetMs` one trial call decides. The health probe drives it too: a failed probe opens it at once and aborts the
 * calls hanging on the unreachable server; a passing probe ends that. Errors leave as AppErrors without the
 * server's address (the cause, with it, is kept for logs).
 */
import {
  BrokenCircuitError,
  circuitBreaker,
  ConsecutiveBreaker,
  handleWhen,
  IsolatedCircuitError,
  type CircuitBreakerPolicy,
} from 'cockatiel';
import { setMaxListeners } from 'node:events';
import { AppError, eitherSignal } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';

export interface GuardOptions {
  /** Consecutive outage failures that open the breaker. */
  failures: number;
  /** How long the breaker stays open before a trial call. */
  resetMs: number;
  logger?: Logger;
}

/** Wraps an error that must not count against the model server (the caller cancelled or ran out of time). */
class CallerAborted extends Error {
  constructor(readonly error: unknown) {
    super('the caller aborted the call');
  }
}

/** Every model call in flight listens on it (one listener each, removed when the call ends): no listener cap. */
function outageController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}

const isOutage = (error: unknown): boolean =>
  error instanceof AppError && (error.code === 'UNAVAILABLE' || error.code === 'DEADLINE_EXCEEDED');

export class ModelServerBreaker {
  private readonly breaker: CircuitBreakerPolicy;
  /** Set while the last health probe failed: the breaker is held open and hanging calls were aborted. */
  private isolation: { dispose(): void } | undefined;
  private outage = outageController();

  constructor(private readonly options: GuardOptions) {
    this.breaker = circuitBreaker(
      handleWhen((error) => !(error instanceof CallerAborted) && isOutage(error)),
      { halfOpenAfter: options.resetMs, breaker: new ConsecutiveBreaker(options.failures) },
    );
    this.breaker.onBreak(() => options.logger?.warn('model-server circuit breaker open'));
    this.breaker.onReset(() => options.logger?.info('model-server circuit breaker closed'));
  }

  /** A health probe's answer (probes never go through the breaker): opens or releases the breaker. */
  probed(ready: boolean): void {
    if (!ready && this.isolation === undefined) {
      this.isolation = this.breaker.isolate();
      this.outage.abort(new AppError('UNAVAILABLE', 'model server unavailable', { retryable: true }));
      this.outage = outageController();
    } else if (ready && this.isolation !== undefined) {
      this.isolation.dispose();
      this.isolation = undefined;
    }
  }

  close(): void {
    this.isolation?.dispose();
    this.isolation = undefined;
  }

  /**
   * Runs one model-server call (one RPC, whatever number of callers it serves) as one breaker outcome. `signal`
   * is the call's own: when it fired (every caller of a batch left), the failure does not count.
   */
  async call<T>(fn: (signal: AbortSignal) => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    const outage = this.outage.signal;
    const link = signal === undefined ? undefined : eitherSignal(signal, outage);
    const combined = link?.signal ?? outage;
    try {
      return await this.breaker.execute(async () => {
        try {
          return await fn(combined);
        } catch (error) {
          if (signal?.aborted === true) throw new CallerAborted(error);
          throw error;
        }
      });
    } catch (error) {
      if (error instanceof CallerAborted) throw error.error;
      throw this.sanitized(error, outage.aborted);
    } finally {
      link?.dispose();
    }
  }

  /** The client sees what happened, never where: addresses and driver texts stay in the cause. */
  private sanitized(error: unknown, aborted: boolean): AppError {
    const retryAfterMs = this.options.resetMs;
    if (error instanceof BrokenCircuitError || error instanceof IsolatedCircuitError || aborted)
      return new AppError('UNAVAILABLE', 'model server unavailable', {
        cause: error,
        retryable: true,
        retryAfterMs,
      });
    if (error instanceof AppError && error.code === 'UNAVAILABLE')
      return new AppError('UNAVAILABLE', 'model server unavailable', { cause: error, retryable: true });
    if (error instanceof AppError && error.code === 'DEADLINE_EXCEEDED')
      return new AppError('UNAVAILABLE', 'model server did not answer in time', {
        cause: error,
        retryable: true,
      });
    if (error instanceof AppError && (error.code === 'CANCELLED' || error.code === 'RESOURCE_EXHAUSTED'))
      return new AppError(error.code, `model server: ${error.code.toLowerCase().replace('_', ' ')}`, {
        cause: error,
        retryable: error.code === 'RESOURCE_EXHAUSTED',
      });
    return new AppError('INTERNAL', 'model server call failed', { cause: error });
  }
}
