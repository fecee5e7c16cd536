/**
 * Structured JSON logging (pino). Library code takes a `Logger` from its caller; only entry points create
 * the root logger. Log lines carry the active trace and span ids when OpenTelemetry has a span in context.
 */
import { trace } from '@opentelemetry/api';
import { pino, type Logger as PinoLogger, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;

export interface LoggerOptions {
  name: string;
  level?: LevelWithSilent;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino({
    name: options.name,
    level: options.level ?? (process.env.LOG_LEVEL as LevelWithSilent | undefined) ?? 'info',
    base: { service: options.name },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin() {
      const span = trace.getActiveSpan();
      if (span === undefined) return {};
      const { traceId, spanId } = span.spanContext();
      return { trace_id: traceId, span_id: spanId };
    },
  });
}

/** A logger that drops everything, for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
