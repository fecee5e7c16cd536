/** What a benchmark run measures and for how long (`npm run bench -- --help` lists the flags that set them). */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchOptions {
  quick: boolean;
  concurrencies: number[];
  warmupMs: number;
  /**
   * Closed-loop load at concurrency 64 on the echo server and the gateway before the sweep, not measured: measured
   * cold, the first point (concurrency 1) came out up to 2× slower.
   */
  serverWarmupMs: number;
  durationMs: number;
  loadgen: 'child' | 'inprocess';
  /** Profile the gateway at saturation (Recommend, then Ingest) with `node --cpu-prof`. */
  profile: boolean;
  profileDir: string;
  redisUrl: string;
  bundleDir: string;
  sections: Set<string>;
  /** Alternating floor/gateway slices per concurrency (drift on a shared machine hits both alike). */
  rounds: number;
  /** Ingest load shape: open streams and events outstanding per stream (closed loop). */
  ingestStreams: number;
  ingestWindow: number;
  /** Events per IngestBatch message in the batched closed loop (0: not run). */
  ingestBatch: number;
  /** Users seeded for the Recommend load, and events each. */
  users: number;
  eventsPerUser: number;
  /** A MovieLens folder the import section reads instead of its synthetic rows (local runs only). */
  importDataset?: string;
  /** Config of every gateway the run starts, by GatewayConfig key (A/B runs of an option). */
  gatewayConfig: Record<string, string | number>;
}

export const ALL_SECTIONS = [
  'echo',
  'recommend',
  'model',
  'open',
  'ingest',
  'import',
  'store',
  'retriever',
  'memory',
  'exclusion',
] as const;

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function defaultOptions(quick: boolean): BenchOptions {
  return {
    quick,
    concurrencies: [1, 4, 16, 64],
    warmupMs: quick ? 1_000 : 2_000,
    serverWarmupMs: quick ? 3_000 : 6_000,
    durationMs: quick ? 3_000 : 10_000,
    loadgen: 'child',
    profile: false,
    profileDir: resolve(REPO_ROOT, 'out/profiles'),
    redisUrl: 'redis://127.0.0.1:6379',
    bundleDir: resolve(REPO_ROOT, 'bundle'),
    sections: new Set(ALL_SECTIONS),
    rounds: quick ? 3 : 5,
    ingestStreams: 4,
    ingestWindow: 64,
    ingestBatch: 16,
    users: quick ? 100 : 500,
    eventsPerUser: 100,
    gatewayConfig: {},
  };
}
