/**
 * Whether a tracer provider is registered. Without one every span is a no-op, so hot paths (Ingest: a span per
 * event and one per store write) skip creating spans and switching contexts; with one they keep their spans.
 */
import { ProxyTracerProvider, trace } from '@opentelemetry/api';

/** The api's no-op provider (what a proxy without a delegate hands out). */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

export function tracingActive(): boolean {
  const provider = trace.getTracerProvider();
  const actual = provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider;
  return actual !== NOOP_PROVIDER;
}
