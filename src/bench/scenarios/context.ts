/** What every scenario of a benchmark run shares: the options, the load runner, the report being filled and the hosts. */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { decodeHistogram, summarize } from '../histogram.js';
import type { LoadResult } from '../loadgen.js';
import type { LoadRunner } from '../load-runner.js';
import type { BenchOptions } from '../options.js';
import type { BenchReport, SweepPoint } from '../report.js';
import type { ServerHost } from '../servers.js';

export type Log = (message: string) => void;

export interface BenchCatalog {
  items: string[];
  modelRepository: string;
}

export interface BenchContext {
  options: BenchOptions;
  runner: LoadRunner;
  report: BenchReport;
  catalog: BenchCatalog;
  runId: string;
  log: Log;
  /** Records a note in the report (a section that could not run, errors seen) and logs it. */
  note: (message: string) => void;
  startHost: (
    role: string,
    hostOptions?: Record<string, unknown>,
    execArgv?: string[],
  ) => Promise<ServerHost>;
  stopHost: (host: ServerHost) => Promise<void>;
  /** A temporary directory removed when the run ends. */
  newDataDir: () => Promise<string>;
}

export async function readCatalog(bundleDir: string): Promise<BenchCatalog> {
  const manifest = JSON.parse(await readFile(join(bundleDir, 'manifest.json'), 'utf8')) as {
    catalog: { item_id: string }[];
    model_repository: string;
  };
  return {
    items: manifest.catalog.map((c) => c.item_id),
    modelRepository: resolve(bundleDir, manifest.model_repository),
  };
}

export function closedLoop(options: BenchOptions, concurrency: number) {
  return { type: 'closed', concurrency, warmupMs: options.warmupMs, durationMs: options.durationMs } as const;
}

export function sweepPoint(concurrency: number, result: LoadResult): SweepPoint {
  return {
    concurrency,
    rps: Math.round(result.rps * 10) / 10,
    latency: summarize(decodeHistogram(result.latency)),
    errors: result.errors,
    ...(result.overhead === undefined ? {} : { overhead: summarize(decodeHistogram(result.overhead)) }),
  };
}

/** The options of a bench gateway host on the embedded store in `dataDir`. */
export function gatewayOptions(
  modelServer: string,
  dataDir: string,
  options: BenchOptions,
): Record<string, unknown> {
  return { modelServer, dataDir, bundle: options.bundleDir, memoryStore: 'lmdb', ...options.gatewayConfig };
}
