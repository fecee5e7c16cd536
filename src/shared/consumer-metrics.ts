/** Metric instruments of the event-stream consumer (exported by the meter provider that startTelemetry installs). */
import { metrics, type Counter, type Histogram } from '@opentelemetry/api';

export interface ConsumerMetrics {
  /** Settled messages by outcome (accepted, duplicate, dead_lettered, retried). */
  processed: Counter;
  redeliveries: Counter;
  deadLettered: Counter;
  /** From fetch to settle, per message. */
  latency: Histogram;
  /** Reports the consumer's lag (messages not yet settled) through `read` at every collection. */
  observeLag(read: () => number, source: string): void;
}

export function createConsumerMetrics(): ConsumerMetrics {
  const meter = metrics.getMeter('automr-events');
  const lag = meter.createObservableGauge('automr_events_pending', {
    description: 'event-stream messages not yet settled by this consumer (its lag)',
  });
  return {
    processed: meter.createCounter('automr_events_processed_total', {
      description: 'event-stream messages settled, by outcome',
    }),
    redeliveries: meter.createCounter('automr_events_redeliveries_total', {
      description: 'event-stream messages delivered more than once',
    }),
    deadLettered: meter.createCounter('automr_events_dead_lettered_total', {
      description: 'malformed or rejected events parked in the dead letter',
    }),
    latency: meter.createHistogram('automr_events_processing_ms', {
      description: 'time from fetch to ack, nak or dead letter of one message',
      unit: 'ms',
      advice: { explicitBucketBoundaries: [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000] },
    }),
    observeLag(read, source) {
      lag.addCallback((result) => result.observe(read(), { source }));
    },
  };
}
