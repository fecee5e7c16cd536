/**
 * Spans through the OpenTelemetry API only (the SDK is set up by src/telemetry for entry points): the domain and
 * the adapters create spans here, and they are no-ops until a tracer provider is registered.
 */
import {
  context,
  INVALID_SPAN_CONTEXT,
  propagation,
  ProxyTracerProvider,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import { toAppError } from './errors.js';

export const tracer = () => trace.getTracer('automr-gateway');

/** What `inSpan` hands its function when no tracer provider is registered (records nothing). */
const NON_RECORDING_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/**
 * Runs `fn` in a child span of the active context; records errors and ends the span. Without a registered tracer
 * provider it just runs `fn`: every span would be a no-op, and starting one and switching contexts costs per call.
 */
export function inSpan<T>(
  name: string,
  fn: (span: Span) => Promise<T>,
  options?: { kind?: SpanKind; attributes?: Attributes; parent?: Context },
): Promise<T> {
  if (!tracingActive()) {
    // Not an async function: no wrapping promise and no extra microtask turns per call on the hot path.
    try {
      return fn(NON_RECORDING_SPAN);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : toAppError(error));
    }
  }
  return inRecordingSpan(name, fn, options ?? {});
}

async function inRecordingSpan<T>(
  name: string,
  fn: (span: Span) => Promise<T>,
  options: { kind?: SpanKind; attributes?: Attributes; parent?: Context },
): Promise<T> {
  const parent = options.parent ?? context.active();
  return tracer().startActiveSpan(
    name,
    { kind: options.kind ?? SpanKind.INTERNAL, attributes: options.attributes ?? {} },
    parent,
    async (span) => {
      try {
        return await fn(span);
      } catch (error) {
        const appError = toAppError(error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: appError.message });
        span.setAttribute('error.code', appError.code);
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/**
 * Runs `fn` in a server span continuing the caller's trace (W3C headers read by `headers` only when traced). Without
 * a registered tracer provider it just runs `fn` with a span that records nothing: no header copy, no span, no
 * context switch per call. `fn` ends the span.
 */
export function inServerSpan<T>(
  name: string,
  attributes: Attributes,
  headers: () => Record<string, string>,
  fn: (span: Span) => T,
): T {
  if (!tracingActive()) return fn(NON_RECORDING_SPAN);
  return tracer().startActiveSpan(name, { kind: SpanKind.SERVER, attributes }, extractContext(headers()), fn);
}

/** Extracts a W3C trace context from incoming request headers (gRPC metadata as a plain map). */
export function extractContext(headers: Record<string, string>): Context {
  return propagation.extract(context.active(), headers);
}

export { SpanKind };

/** The api's no-op provider (what a proxy without a delegate hands out). */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Whether a tracer provider is registered. Without one every span is a no-op, so hot paths (Ingest: a span per
 * event and one per store write) skip creating spans and switching contexts; with one they keep their spans.
 */
export function tracingActive(): boolean {
  const provider = trace.getTracerProvider();
  const actual = provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider;
  return actual !== NOOP_PROVIDER;
}
