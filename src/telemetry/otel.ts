/**
 * OpenTelemetry start-up for the gateway (and any other entry point): sdk-node with the W3C trace-context
 * propagator, trace exporters from the standard OTEL_* variables (none unless OTEL_TRACES_EXPORTER is set),
 * and Prometheus metrics on a port of their own. Tests pass their own span processors (InMemorySpanExporter).
 */
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { AppError } from '../shared/errors.js';

export interface TelemetryOptions {
  serviceName: string;
  /** Span processors to use instead of the OTEL_* configured exporters (tests). */
  spanProcessors?: SpanProcessor[];
  /** Prometheus scrape port; 0 or undefined = no Prometheus endpoint. */
  metricsPort?: number;
  metricsHost?: string;
}

export interface Telemetry {
  metricsPort: number | undefined;
  shutdown(): Promise<void>;
}

export async function startTelemetry(options: TelemetryOptions): Promise<Telemetry> {
  const tracesFromEnv = (process.env.OTEL_TRACES_EXPORTER ?? '').trim() !== '';
  // sdk-node defaults to an OTLP exporter; a laptop run must not try to reach a collector it does not have.
  const spanProcessors = options.spanProcessors ?? (tracesFromEnv ? undefined : []);
  let prometheus: PrometheusExporter | undefined;
  if (options.metricsPort !== undefined && options.metricsPort > 0) {
    const exporter = new PrometheusExporter({
      port: options.metricsPort,
      host: options.metricsHost ?? '127.0.0.1',
      preventServerStart: true,
    });
    await exporter.startServer().catch((error: unknown) => {
      throw new AppError(
        'FAILED_PRECONDITION',
        `cannot serve Prometheus metrics on port ${options.metricsPort}: ${(error as Error).message}; set AUTOMR_METRICS_PORT to a free port or 0 (off)`,
        { cause: error },
      );
    });
    prometheus = exporter;
  }
  const previousLogs = process.env.OTEL_LOGS_EXPORTER;
  // Logs go through pino to stdout; no OTLP log exporter unless asked for.
  if (previousLogs === undefined) process.env.OTEL_LOGS_EXPORTER = 'none';
  if (process.env.OTEL_METRICS_EXPORTER === undefined && prometheus === undefined)
    process.env.OTEL_METRICS_EXPORTER = 'none';
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName }),
    // Only OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME: the host and process detectors would publish host name,
    // PID, command line and process owner in every export (Prometheus target_info included).
    resourceDetectors: [envDetector],
    textMapPropagator: new W3CTraceContextPropagator(),
    ...(spanProcessors !== undefined ? { spanProcessors } : {}),
    ...(prometheus !== undefined ? { metricReader: prometheus } : {}),
    instrumentations: [],
  });
  sdk.start();
  return {
    metricsPort: options.metricsPort,
    shutdown: () => sdk.shutdown(),
  };
}
