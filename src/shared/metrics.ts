/** The gateway's metric instruments (exported for Prometheus by the meter provider that startTelemetry installs). */
import { metrics, type Histogram, type Counter, type UpDownCounter } from '@opentelemetry/api';

export interface GatewayMetrics {
  requestDuration: Histogram;
  stageDuration: Histogram;
  ingestLag: Histogram;
  ingestEvents: Counter;
  tritonErrors: Counter;
  memorySize: Histogram;
  encodeBacklog: UpDownCounter;
}

const MS_BUCKETS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

/** Instruments are created at gateway start, after startTelemetry registered the global meter provider. */
export function createGatewayMetrics(): GatewayMetrics {
  const meter = metrics.getMeter('automr-gateway');
  return {
    // OpenTelemetry RPC semantic conventions: seconds, rpc.system/service/method, rpc.grpc.status_code.
    requestDuration: meter.createHistogram('rpc.server.call.duration', {
      description: 'Measures the duration of inbound RPCs',
      unit: 's',
      advice: { explicitBucketBoundaries: MS_BUCKETS.map((ms) => ms / 1000) },
    }),
    stageDuration: meter.createHistogram('automr_stage_duration_ms', {
      description: 'latency of one pipeline stage (memory.read, encode, retrieve, infer, memory.write)',
      unit: 'ms',
      advice: { explicitBucketBoundaries: MS_BUCKETS },
    }),
    ingestLag: meter.createHistogram('automr_ingest_lag_ms', {
      description: 'time from an event timestamp to its durable write',
      unit: 'ms',
      advice: { explicitBucketBoundaries: [10, 100, 1000, 10_000, 60_000, 600_000, 3_600_000, 86_400_000] },
    }),
    ingestEvents: meter.createCounter('automr_ingest_events_total', {
      description: 'ingested events by ack status',
    }),
    tritonErrors: meter.createCounter('automr_triton_errors_total', {
      description: 'failed model-server calls by model',
    }),
    memorySize: meter.createHistogram('automr_memory_size', {
      description: 'history entries and usable memory elements seen per Recommend',
      advice: { explicitBucketBoundaries: [0, 1, 5, 10, 20, 50, 90, 100, 200] },
    }),
    encodeBacklog: meter.createUpDownCounter('automr_encode_backlog', {
      description: 'users waiting to be (re-)encoded',
    }),
  };
}
