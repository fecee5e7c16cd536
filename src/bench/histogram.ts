/**
 * Latency histograms for the benchmark suite, backed by hdr-histogram-js (HdrHistogram: fixed relative
 * error, cheap recording, mergeable across processes through the compressed base64 encoding).
 * Values are recorded in integer nanoseconds.
 */
import * as hdr from 'hdr-histogram-js';

export type Histogram = hdr.Histogram;

/** 3 significant digits over 1 ns .. ~2 min, 64-bit counters. */
export function createHistogram(): Histogram {
  return hdr.build({
    bitBucketSize: 64,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000_000,
    numberOfSignificantValueDigits: 3,
    autoResize: true,
  });
}

/** Records a duration given in milliseconds (as from `performance.now()` differences). */
export function recordMs(histogram: Histogram, ms: number): void {
  histogram.recordValue(Math.max(1, Math.round(ms * 1e6)));
}

export function encodeHistogram(histogram: Histogram): string {
  return hdr.encodeIntoCompressedBase64(histogram);
}

export function decodeHistogram(encoded: string): Histogram {
  return hdr.decodeFromCompressedBase64(encoded, 64);
}

export interface LatencySummary {
  count: number;
  mean_ms: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
}

const NS_PER_MS = 1e6;

function round(value: number, digits = 3): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** Percentiles in milliseconds (rounded to the microsecond); all zero for an empty histogram. */
export function summarize(histogram: Histogram): LatencySummary {
  const count = histogram.totalCount;
  if (count === 0) {
    return { count: 0, mean_ms: 0, p50_ms: 0, p95_ms: 0, p99_ms: 0, p999_ms: 0, max_ms: 0 };
  }
  const at = (p: number): number => round(histogram.getValueAtPercentile(p) / NS_PER_MS);
  return {
    count,
    mean_ms: round(histogram.mean / NS_PER_MS),
    p50_ms: at(50),
    p95_ms: at(95),
    p99_ms: at(99),
    p999_ms: at(99.9),
    max_ms: at(100),
  };
}
