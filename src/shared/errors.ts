/**
 * The project's one error type. Domain code throws `AppError` with a code named after the canonical
 * gRPC status codes, without importing grpc-js; the boundary (`grpc-status.ts`) maps it to a status.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  | 'CANCELLED'
  | 'UNIMPLEMENTED'
  | 'INTERNAL'
  | 'UNKNOWN';

export interface AppErrorOptions {
  cause?: unknown;
  /** True when the failed operation may be retried without risk of doing work twice. */
  retryable?: boolean;
  /** Structured context for logs; never sent to clients. */
  details?: Record<string, unknown>;
  /** For RESOURCE_EXHAUSTED / UNAVAILABLE: how long the client should wait before retrying (google.rpc.RetryInfo). */
  retryAfterMs?: number;
}

export class AppError extends Error {
  override readonly name = 'AppError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
    this.retryAfterMs = options.retryAfterMs;
  }

  static is(value: unknown): value is AppError {
    return value instanceof AppError;
  }
}

export const invalidArgument = (message: string, details?: Record<string, unknown>): AppError =>
  new AppError('INVALID_ARGUMENT', message, { details });

/** A dependency (store, bus, model server) cannot be reached; retrying later is safe. */
export const unavailable = (message: string, cause?: unknown): AppError =>
  new AppError('UNAVAILABLE', message, { cause, retryable: true });

/** Converts anything thrown into an AppError; unknown failures become INTERNAL with a generic message. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (isAbortError(error)) return new AppError('CANCELLED', 'operation was cancelled', { cause: error });
  return new AppError('INTERNAL', 'internal error', { cause: error });
}

function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

/** The AppError a fired signal stands for: its reason when that is one, else CANCELLED or DEADLINE_EXCEEDED. */
export function abortError(signal: AbortSignal): AppError {
  const reason: unknown = signal.reason;
  if (reason instanceof AppError) return reason;
  if (reason instanceof Error && reason.name === 'TimeoutError') {
    return new AppError('DEADLINE_EXCEEDED', 'deadline exceeded', { cause: reason });
  }
  return new AppError('CANCELLED', 'operation was cancelled', { cause: reason });
}

/** Throws the signal's reason as a CANCELLED/DEADLINE_EXCEEDED AppError when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw abortError(signal);
}

/**
 * A signal that fires when either `a` or `b` does, with that one's reason (as `AbortSignal.any`), and `dispose` to
 * detach it once the work it guards is over. Not `AbortSignal.any`: on Node 20 every signal it makes stays in its
 * sources' dependant sets for good, ~100 bytes per call on a long-lived source such as the breaker's outage signal.
 */
export function eitherSignal(a: AbortSignal, b: AbortSignal): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const fired = a.aborted ? a : b.aborted ? b : undefined;
  if (fired !== undefined) {
    controller.abort(fired.reason);
    return { signal: controller.signal, dispose: () => undefined };
  }
  const onA = () => {
    dispose();
    controller.abort(a.reason);
  };
  const onB = () => {
    dispose();
    controller.abort(b.reason);
  };
  const dispose = () => {
    a.removeEventListener('abort', onA);
    b.removeEventListener('abort', onB);
  };
  a.addEventListener('abort', onA, { once: true });
  b.addEventListener('abort', onB, { once: true });
  return { signal: controller.signal, dispose };
}

/** Settles with `promise`, or rejects with the signal's reason (as throwIfAborted) as soon as the signal fires. */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
