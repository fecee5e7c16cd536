/**
 * The benchmark suite: starts what it needs (echo floor, local model server, gateways over lmdb and
 * Redis), drives them from the load-generator child, and assembles one report. Sections that cannot run
 * (a server that fails to start, Redis not reachable) are recorded in `notes` instead of failing the run.
 */
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { mkdtemp, readdir, readFile, rm, stat, mkdir } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { decodeHistogram, summarize } from './histogram.js';
import { ChildLoadRunner, InProcessLoadRunner, type LoadRunner } from './load-runner.js';
import { mergeResults, type LoadResult, type LoadSpec } from './loadgen.js';
import { loadMethod, type TargetSpec } from './grpc-target.js';
import type { IngestLoadSpec } from './ingest-load.js';
import {
  AutoMrClient,
  PROTO_ROOT,
  RECOMMENDER_PROTO,
  RECOMMENDER_SERVICE,
  type IngestEvent,
} from './automr-client.js';
import { ServerHost, type HostStats } from './servers.js';
import { benchRetriever } from './retriever-bench.js';
import { benchStoreFloor } from './store-floor.js';
import { summarizeProfileFile, renderProfileSummary } from './profile-summary.js';
import {
  emptyReport,
  finalizeReport,
  type BenchReport,
  type IngestFigure,
  type SweepPoint,
} from './report.js';

export interface BenchOptions {
  quick: boolean;
  concurrencies: number[];
  warmupMs: number;
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
  /** Users seeded for the Recommend load, and events each. */
  users: number;
  eventsPerUser: number;
}

export const ALL_SECTIONS = [
  'echo',
  'recommend',
  'model',
  'open',
  'ingest',
  'store',
  'retriever',
  'memory',
] as const;

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function defaultOptions(quick: boolean): BenchOptions {
  return {
    quick,
    concurrencies: [1, 4, 16, 64],
    warmupMs: quick ? 1_000 : 2_000,
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
    users: quick ? 100 : 500,
    eventsPerUser: 100,
  };
}

type Log = (message: string) => void;

interface Catalog {
  items: string[];
  modelRepository: string;
}

async function readCatalog(bundleDir: string): Promise<Catalog> {
  const manifest = JSON.parse(await readFile(join(bundleDir, 'manifest.json'), 'utf8')) as {
    catalog: { item_id: string }[];
    model_repository: string;
  };
  return {
    items: manifest.catalog.map((c) => c.item_id),
    modelRepository: resolve(bundleDir, manifest.model_repository),
  };
}

function point(concurrency: number, result: LoadResult): SweepPoint {
  return {
    concurrency,
    rps: Math.round(result.rps * 10) / 10,
    latency: summarize(decodeHistogram(result.latency)),
    errors: result.errors,
    ...(result.overhead === undefined ? {} : { overhead: summarize(decodeHistogram(result.overhead)) }),
  };
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** Allocated bytes of every file under `dir` (what the store really occupies on disk). */
async function allocatedBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const info = await stat(join(entry.parentPath, entry.name));
    total += info.blocks * 512;
  }
  return total;
}

function seedEvents(
  prefix: string,
  users: number,
  perUser: number,
  items: string[],
  runId: string,
): IngestEvent[] {
  const events: IngestEvent[] = [];
  const base = Date.UTC(2024, 0, 1);
  for (let e = 0; e < perUser; e += 1) {
    for (let u = 0; u < users; u += 1) {
      const n = e * users + u;
      events.push({
        eventId: `${runId}-seed-${u}-${e}`,
        userId: `${prefix}${u}`,
        itemId: items[(n * 7919 + u * 31) % items.length] ?? '0',
        timestampMs: base + e * 60_000 + u,
      });
    }
  }
  return events;
}

/** Ingests over 8 parallel streams, each user's events on one stream in order (one stream is far slower). */
async function seed(client: AutoMrClient, events: IngestEvent[], streams = 8): Promise<void> {
  const parts: IngestEvent[][] = Array.from({ length: streams }, () => []);
  const streamOf = new Map<string, number>();
  for (const event of events) {
    let s = streamOf.get(event.userId);
    if (s === undefined) {
      s = streamOf.size % streams;
      streamOf.set(event.userId, s);
    }
    parts[s]?.push(event);
  }
  const acks = await Promise.all(parts.map((part) => client.ingest(part, 256)));
  const bad = acks.flat().find((a) => a.status !== 'STATUS_ACCEPTED');
  if (bad !== undefined)
    throw new Error(`seeding: event ${bad.eventId} answered ${bad.status} ${bad.message ?? ''}`);
}

/** Polls GetMemory for `users` until every entry is encoded; returns the time it took and the pending count at start. */
async function waitForEncodings(
  client: AutoMrClient,
  users: string[],
  timeoutMs: number,
): Promise<{ pendingAtStart: number; drainMs: number | undefined }> {
  const started = Date.now();
  let pendingAtStart = -1;
  for (;;) {
    let pending = 0;
    for (const user of users) {
      const entries = await client.getMemory(user);
      pending += entries.filter((e) => e.encoded !== true).length;
    }
    if (pendingAtStart < 0) pendingAtStart = pending;
    if (pending === 0) return { pendingAtStart, drainMs: Date.now() - started };
    if (Date.now() - started > timeoutMs) return { pendingAtStart, drainMs: undefined };
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function runBench(options: BenchOptions, log: Log): Promise<BenchReport> {
  const runId = randomBytes(4).toString('hex');
  const report = emptyReport({
    mode: options.quick ? 'quick' : 'full',
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model ?? 'unknown',
    total_mem_gb: Math.round(totalmem() / 2 ** 30),
    loadavg_at_start: loadavg().map((v) => Math.round(v * 100) / 100),
    node: process.version,
    loadgen: options.loadgen === 'child' ? 'child process' : 'in process',
    warmup_ms: options.warmupMs,
    duration_ms: options.durationMs,
    concurrencies: options.concurrencies,
    git_commit: gitCommit(),
    started_at: new Date().toISOString(),
    run_id: runId,
  });
  const runner: LoadRunner = options.loadgen === 'child' ? new ChildLoadRunner() : new InProcessLoadRunner();
  const hosts: ServerHost[] = [];
  const tempDirs: string[] = [];
  const catalog = await readCatalog(options.bundleDir);
  const has = (section: string): boolean => options.sections.has(section);
  const note = (message: string): void => {
    report.notes.push(message);
    log(`note: ${message}`);
  };
  const startHost = async (
    role: string,
    hostOptions: Record<string, unknown> = {},
    execArgv: string[] = [],
  ) => {
    const host = await ServerHost.start(role, hostOptions, execArgv);
    hosts.push(host);
    return host;
  };
  const stopHost = async (host: ServerHost): Promise<void> => {
    hosts.splice(hosts.indexOf(host), 1);
    await host.stop();
  };
  const newDataDir = async (): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), 'automr-bench-'));
    tempDirs.push(dir);
    return dir;
  };
  const closed = (concurrency: number) =>
    ({ type: 'closed', concurrency, warmupMs: options.warmupMs, durationMs: options.durationMs }) as const;

  try {
    // --- servers -------------------------------------------------------------------------------
    let modelServer: ServerHost | undefined;
    let gateway: ServerHost | undefined;
    const needsGateway = ['recommend', 'open', 'ingest', 'memory'].some(has);
    if (needsGateway || has('model')) {
      try {
        log('starting the local model server');
        modelServer = await startHost('model-server', { repository: catalog.modelRepository });
        log(`model server at ${modelServer.address}`);
      } catch (error) {
        note(`model server did not start: ${(error as Error).message}`);
      }
    }
    if (needsGateway && modelServer !== undefined) {
      try {
        gateway = await startHost(
          'gateway',
          gatewayOptions(modelServer.address, await newDataDir(), options),
        );
        log(`gateway (lmdb) at ${gateway.address}`);
      } catch (error) {
        note(`gateway sections skipped: ${(error as Error).message}`);
      }
    }

    // --- calibration: seed users, measure message sizes ------------------------------------------
    let recommendTarget: TargetSpec | undefined;
    let echoSizes = { request: 16, response: 1200 };
    const userPrefix = `bench-${runId}-u`;
    if (gateway !== undefined && (has('recommend') || has('open'))) {
      const client = new AutoMrClient(gateway.address);
      try {
        await client.waitForReady();
        log(`seeding ${options.users} users x ${options.eventsPerUser} events`);
        await seed(
          client,
          seedEvents(userPrefix, options.users, options.eventsPerUser, catalog.items, runId),
        );
        const sample = Array.from({ length: Math.min(20, options.users) }, (_, i) => `${userPrefix}${i}`);
        const drained = await waitForEncodings(client, sample, 60_000);
        log(`seed encodings drained in ${String(drained.drainMs)} ms`);
        const requests = Array.from({ length: options.users }, (_, i) => ({
          userId: `${userPrefix}${i}`,
          topN: 10,
          memoryK: 0,
        }));
        recommendTarget = {
          kind: 'proto',
          address: gateway.address,
          protoPath: RECOMMENDER_PROTO,
          includeDirs: [PROTO_ROOT],
          service: RECOMMENDER_SERVICE,
          method: 'Recommend',
          generator: { kind: 'cycle', requests },
        };
        const method = loadMethod({
          protoPath: RECOMMENDER_PROTO,
          includeDirs: [PROTO_ROOT],
          service: RECOMMENDER_SERVICE,
          method: 'Recommend',
        });
        const calibration = await runner.run(recommendTarget, {
          type: 'closed',
          concurrency: 1,
          warmupMs: 200,
          durationMs: 500,
        });
        const requestBytes = Math.round(
          requests.reduce((s, r) => s + method.requestSerialize(r).length, 0) / requests.length,
        );
        const responseBytes =
          calibration.completed > 0 ? Math.round(calibration.responseBytes / calibration.completed) : 1200;
        echoSizes = { request: requestBytes, response: responseBytes };
        report.message_bytes = echoSizes;
        if (calibration.errors > 0)
          note(`Recommend calibration errors: ${calibration.errorSamples.join('; ')}`);
      } catch (error) {
        note(`Recommend calibration failed: ${(error as Error).message}`);
        recommendTarget = undefined;
      } finally {
        client.close();
      }
    }

    // --- echo floor and Recommend, interleaved per concurrency so drift hits both alike -------------
    if (has('echo') || has('recommend')) {
      const echo = has('echo') ? await startHost('echo') : undefined;
      const echoTarget: TargetSpec | undefined =
        echo === undefined
          ? undefined
          : {
              kind: 'echo',
              address: echo.address,
              requestBytes: echoSizes.request,
              responseBytes: echoSizes.response,
            };
      const runRecommend = recommendTarget !== undefined && gateway !== undefined && has('recommend');
      // One slice of load, with the CPU each server host used and the model traffic it caused.
      const measure = async (target: TargetSpec, spec: LoadSpec, watched: (ServerHost | undefined)[]) => {
        const before = await Promise.all(
          watched.map((h) => (h === undefined ? Promise.resolve(undefined) : h.stats())),
        );
        const result = await runner.run(target, spec);
        const after = await Promise.all(
          watched.map((h) => (h === undefined ? Promise.resolve(undefined) : h.stats())),
        );
        const delta = (i: number, pick: (s: HostStats) => number): number => {
          const a = after[i];
          const b = before[i];
          return a === undefined || b === undefined ? 0 : pick(a) - pick(b);
        };
        return { result, delta };
      };
      for (const concurrency of options.concurrencies) {
        // Alternate short slices of the floor and the gateway (one warmup each, then `rounds` slices).
        const rounds = options.rounds;
        const slice = { ...closed(concurrency), durationMs: Math.round(options.durationMs / rounds) };
        const echoParts: LoadResult[] = [];
        const recParts: LoadResult[] = [];
        const cpu = { echo: 0, gateway: 0, model: 0 };
        const traffic = { calls: 0, request: 0, response: 0 };
        for (let round = 0; round < rounds; round += 1) {
          const spec = round === 0 ? slice : { ...slice, warmupMs: 0 };
          if (echoTarget !== undefined) {
            const { result, delta } = await measure(echoTarget, spec, [echo]);
            echoParts.push(result);
            cpu.echo += delta(0, (s) => s.cpuUs ?? 0);
          }
          if (runRecommend && recommendTarget !== undefined) {
            const { result, delta } = await measure(recommendTarget, spec, [gateway, modelServer]);
            recParts.push(result);
            cpu.gateway += delta(0, (s) => s.cpuUs ?? 0);
            cpu.model += delta(1, (s) => s.cpuUs ?? 0);
            traffic.calls += delta(1, (s) => s.modelCalls);
            traffic.request += delta(1, (s) => s.modelRequestBytes);
            traffic.response += delta(1, (s) => s.modelResponseBytes);
          }
        }
        const perCall = (us: number, calls: number): number | undefined =>
          calls > 0 ? Math.round((us / calls / 1000) * 1000) / 1000 : undefined;
        if (echoParts.length > 0) {
          const result = mergeResults(echoParts);
          const sweep = point(concurrency, result);
          const cpuMs = perCall(cpu.echo, result.finished);
          if (cpuMs !== undefined) sweep.server_cpu_ms_per_request = cpuMs;
          report.sweep.echo.push(sweep);
          log(`echo c=${concurrency}: ${result.rps.toFixed(0)} rps, server CPU ${String(cpuMs)} ms/call`);
        }
        if (recParts.length > 0) {
          const result = mergeResults(recParts);
          const sweep = point(concurrency, result);
          const gatewayCpu = perCall(cpu.gateway, result.finished);
          const modelCpu = perCall(cpu.model, result.finished);
          if (gatewayCpu !== undefined) sweep.server_cpu_ms_per_request = gatewayCpu;
          if (modelCpu !== undefined) sweep.model_server_cpu_ms_per_request = modelCpu;
          report.sweep.recommend.push(sweep);
          if (result.errors > 0)
            note(`Recommend c=${concurrency}: ${result.errors} errors, e.g. ${result.errorSamples[0] ?? ''}`);
          if (
            (concurrency === 64 || report.model_bytes_per_request === null) &&
            traffic.calls > 0 &&
            result.finished > 0
          ) {
            // Counters cover every slice, warmup included, as does `finished`.
            report.model_bytes_per_request = {
              request: Math.round(traffic.request / result.finished),
              response: Math.round(traffic.response / result.finished),
              calls: Math.round((traffic.calls / result.finished) * 100) / 100,
            };
          }
          log(
            `recommend c=${concurrency}: ${result.rps.toFixed(0)} rps, p99 ${sweep.latency.p99_ms} ms, overhead p99 ${String(sweep.overhead?.p99_ms)} ms, gateway CPU ${String(gatewayCpu)} ms/req, model server CPU ${String(modelCpu)} ms/req`,
          );
        }
      }
      if (echo !== undefined) await stopHost(echo);
    }

    // --- the model server alone (same ensemble call the gateway makes), to show what bounds Recommend --
    if (has('model') && modelServer !== undefined) {
      const target = modelServerTarget(modelServer.address, await readManifestShape(options.bundleDir));
      for (const concurrency of [1, 64]) {
        try {
          const result = await runner.run(target, closed(concurrency));
          report.sweep.model_server.push(point(concurrency, result));
          if (result.errors > 0) note(`model server c=${concurrency}: ${result.errorSamples[0] ?? ''}`);
          log(`model server alone c=${concurrency}: ${result.rps.toFixed(0)} rps`);
        } catch (error) {
          note(`model server floor skipped: ${(error as Error).message}`);
          break;
        }
      }
    }

    // --- open loop: queueing below and at saturation -------------------------------------------------
    const saturation =
      report.sweep.recommend.find((p) => p.concurrency === 64)?.rps ?? report.sweep.recommend.at(-1)?.rps;
    if (has('open') && recommendTarget !== undefined && saturation !== undefined && saturation > 0) {
      for (const fraction of options.quick ? [0.5, 0.9] : [0.25, 0.5, 0.75, 0.9, 1.0]) {
        const rate = Math.max(1, Math.round(saturation * fraction));
        const result = await runner.run(recommendTarget, {
          type: 'open',
          rate,
          warmupMs: options.warmupMs,
          durationMs: options.durationMs,
          maxInFlight: 4096,
        });
        report.sweep.recommend_open_loop.push({
          target_rps: rate,
          achieved_rps: Math.round(result.rps),
          latency: summarize(decodeHistogram(result.latency)),
          service_latency: summarize(decodeHistogram(result.serviceLatency ?? result.latency)),
          dropped: result.dropped,
          errors: result.errors,
        });
        log(`recommend open loop ${rate}/s: p99 ${summarize(decodeHistogram(result.latency)).p99_ms} ms`);
      }
    }

    // --- ingest: lmdb (the gateway above) and Redis ------------------------------------------------
    if (has('ingest') && gateway !== undefined && modelServer !== undefined) {
      await benchIngest('lmdb', gateway, modelServer, runner, options, catalog, report, runId, log);
      let redisGateway: ServerHost | undefined;
      const prefix = `automr-bench-${runId}`;
      try {
        redisGateway = await startHost('gateway', {
          ...gatewayOptions(modelServer.address, await newDataDir(), options),
          memoryStore: options.redisUrl,
          redisPrefix: prefix,
        });
        await benchIngest('redis', redisGateway, modelServer, runner, options, catalog, report, runId, log);
      } catch (error) {
        note(`Redis ingest skipped: ${(error as Error).message}`);
      } finally {
        if (redisGateway !== undefined) await stopHost(redisGateway);
        await deleteRedisPrefix(options.redisUrl, prefix).catch(() => undefined);
      }
    }

    // --- the ingest floor: lmdb alone with the gateway's durable write pattern ------------------------
    if (has('store')) {
      const floor = await benchStoreFloor(
        options.ingestStreams * options.ingestWindow,
        options.quick ? 2_000 : 10_000,
        options.durationMs,
      );
      report.store_floor = floor;
      log(
        `store floor (lmdb alone, ${floor.outstanding} outstanding): ${floor.eps} events/s, ack p99 ${floor.ack_latency.p99_ms} ms`,
      );
    }

    // --- memory: bytes per user at full history ------------------------------------------------------
    if (has('memory') && modelServer !== undefined) {
      await benchMemory(
        modelServer.address,
        options,
        catalog,
        report,
        runId,
        newDataDir,
        startHost,
        stopHost,
        note,
        log,
      );
    }

    // --- retriever ------------------------------------------------------------------------------------
    if (has('retriever')) {
      const figures = await benchRetriever(options.bundleDir, 90, options.quick ? 2_000 : 5_000);
      report.retriever = figures;
      const served = figures[0];
      if (served !== undefined) {
        report.retriever_p50_us = served.p50_us;
        report.retriever_p99_us = served.p99_us;
      }
      for (const f of figures)
        log(
          `retriever, ${f.implementation} (90 elements): p50 ${f.p50_us} us, p99 ${f.p99_us} us over ${f.calls} calls`,
        );
    }

    // --- profiles (separate runs: the profiler perturbs what it measures) ------------------------------
    if (options.profile && modelServer !== undefined && recommendTarget !== undefined) {
      await mkdir(options.profileDir, { recursive: true });
      const profiled = await startHost(
        'gateway',
        gatewayOptions(modelServer.address, await newDataDir(), options),
      );
      const client = new AutoMrClient(profiled.address);
      try {
        await client.waitForReady();
        await seed(
          client,
          seedEvents(userPrefix, options.users, options.eventsPerUser, catalog.items, `${runId}p`),
        );
        await waitForEncodings(client, [`${userPrefix}0`], 60_000);
        for (const section of ['recommend', 'ingest'] as const) {
          const file = join(options.profileDir, `gateway-${section}-${runId}.cpuprofile`);
          const measured = section === 'recommend' ? closed(64) : undefined;
          if (measured !== undefined)
            await runner.run(
              { ...recommendTarget, address: profiled.address },
              { ...measured, durationMs: 1000 },
            );
          await profiled.startProfile();
          if (measured !== undefined) {
            await runner.run({ ...recommendTarget, address: profiled.address }, { ...measured, warmupMs: 0 });
          } else {
            await runner.ingest({
              ...ingestSpec(profiled.address, options, catalog, `${runId}p`, 'closed'),
              warmupMs: 0,
            });
          }
          await profiled.stopProfile(file);
          const summary = await summarizeProfileFile(file, 12);
          report.profiles[`gateway ${section} at saturation`] = {
            file,
            top: summary.functions,
            packages: summary.packages,
            inclusive: summary.inclusive,
          };
          log(renderProfileSummary(summary, `gateway ${section} at saturation`));
        }
      } finally {
        client.close();
        await stopHost(profiled);
      }
    }
  } finally {
    await runner.close();
    for (const host of [...hosts].reverse()) await host.stop().catch(() => undefined);
    for (const dir of tempDirs) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  report.environment.loadavg_at_end = loadavg().map((v) => Math.round(v * 100) / 100);
  return finalizeReport(report);
}

export async function readManifestShape(
  bundleDir: string,
): Promise<{ d: number; window: number; ensemble: string; version: string }> {
  const manifest = JSON.parse(await readFile(join(bundleDir, 'manifest.json'), 'utf8')) as {
    d_model: number;
    window: number;
    models: { ensemble: string; version: string };
  };
  return {
    d: manifest.d_model,
    window: manifest.window,
    ensemble: manifest.models.ensemble,
    version: manifest.models.version,
  };
}

/** One automr_recommend ModelInfer with a full prompt (bos + window items) and one memory slot, raw contents. */
export function modelServerTarget(
  address: string,
  shape: { d: number; window: number; ensemble: string; version: string },
): TargetSpec {
  const t = shape.window + 1;
  const ids = new BigInt64Array(t).map((_, i) => BigInt(i === 0 ? 1 : 3 + ((i * 37) % 200)));
  const mask = new BigInt64Array(t).fill(1n);
  const memory = new Float32Array(shape.d).map((_, i) => Math.sin(i) * 0.1);
  const memoryMask = new BigInt64Array([1n]);
  const raw = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const request = {
    modelName: shape.ensemble,
    modelVersion: '',
    inputs: [
      { name: 'input_ids', datatype: 'INT64', shape: [1, t] },
      { name: 'attention_mask', datatype: 'INT64', shape: [1, t] },
      { name: 'memory', datatype: 'FP32', shape: [1, 1, shape.d] },
      { name: 'memory_mask', datatype: 'INT64', shape: [1, 1] },
    ],
    outputs: [{ name: 'top_ids' }, { name: 'top_scores' }],
    rawInputContents: [raw(ids), raw(mask), raw(memory), raw(memoryMask)],
  };
  return {
    kind: 'proto',
    address,
    protoPath: join(PROTO_ROOT, 'inference/grpc_service.proto'),
    includeDirs: [PROTO_ROOT],
    service: 'inference.GRPCInferenceService',
    method: 'ModelInfer',
    generator: { kind: 'cycle', requests: [request] },
  };
}

function gatewayOptions(
  modelServer: string,
  dataDir: string,
  options: BenchOptions,
): Record<string, unknown> {
  return { modelServer, dataDir, bundle: options.bundleDir, memoryStore: 'lmdb' };
}

function ingestSpec(
  address: string,
  options: BenchOptions,
  catalog: Catalog,
  runId: string,
  mode: 'closed' | 'open',
  rate?: number,
): IngestLoadSpec {
  return {
    address,
    protoPath: RECOMMENDER_PROTO,
    includeDirs: [PROTO_ROOT],
    service: RECOMMENDER_SERVICE,
    method: 'Ingest',
    streams: options.ingestStreams,
    window: options.ingestWindow,
    ...(mode === 'open' ? { rate: rate ?? 10_000 } : {}),
    warmupMs: options.warmupMs,
    durationMs: options.durationMs,
    users: options.quick ? 2_000 : 10_000,
    userPrefix: `ingest-${runId}-${mode}-u`,
    items: catalog.items,
    runId: `${runId}-${mode}`,
    baseTimestampMs: Date.UTC(2025, 0, 1),
  };
}

async function benchIngest(
  store: string,
  gateway: ServerHost,
  modelServer: ServerHost,
  runner: LoadRunner,
  options: BenchOptions,
  catalog: Catalog,
  report: BenchReport,
  runId: string,
  log: Log,
): Promise<void> {
  const client = new AutoMrClient(gateway.address);
  try {
    await client.waitForReady();
    let closedEps = 0;
    for (const mode of ['closed', 'open'] as const) {
      // Open loop at 80% of this store's closed-loop saturation: ack latency at a sustainable rate.
      const rate = Math.max(100, Math.round(closedEps * 0.8));
      const spec = ingestSpec(gateway.address, options, catalog, `${runId}-${store}`, mode, rate);
      const before = await Promise.all([gateway.stats(), modelServer.stats()]);
      const result = await runner.ingest(spec);
      const after = await Promise.all([gateway.stats(), modelServer.stats()]);
      if (mode === 'closed') closedEps = result.eps;
      const sample = Array.from({ length: 10 }, (_, i) => `${spec.userPrefix}${i * 7}`);
      const drain = await waitForEncodings(client, sample, 30_000);
      const cpuPerEvent = (i: 0 | 1): number | undefined => {
        const used = (after[i].cpuUs ?? 0) - (before[i].cpuUs ?? 0);
        return result.allAcked > 0 ? Math.round((used / result.allAcked / 1000) * 1000) / 1000 : undefined;
      };
      const figure: IngestFigure = {
        store,
        mode: mode === 'closed' ? `closed ${spec.streams}x${spec.window}` : `open ${spec.rate ?? 0}/s`,
        eps: Math.round(result.eps),
        ack_latency: summarize(decodeHistogram(result.latency)),
        accepted: result.accepted,
        rejected: result.rejected,
        errors: result.errors,
        pending_encodings_at_stop: drain.pendingAtStart,
        ...(drain.drainMs === undefined ? {} : { encoding_drain_ms: drain.drainMs }),
      };
      const gatewayCpu = cpuPerEvent(0);
      const modelCpu = cpuPerEvent(1);
      if (gatewayCpu !== undefined) figure.gateway_cpu_ms_per_event = gatewayCpu;
      if (modelCpu !== undefined) figure.model_server_cpu_ms_per_event = modelCpu;
      report.sweep.ingest.push(figure);
      if (result.errors + result.rejected > 0)
        report.notes.push(`ingest ${store} ${mode}: ${result.errorSamples.join('; ')}`);
      log(
        `ingest ${store} ${figure.mode}: ${figure.eps} events/s, ack p99 ${figure.ack_latency.p99_ms} ms, gateway CPU ${String(gatewayCpu)} ms/event, model server CPU ${String(modelCpu)} ms/event`,
      );
    }
  } finally {
    client.close();
  }
}

async function deleteRedisPrefix(url: string, prefix: string): Promise<number> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  let removed = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) removed += await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return removed;
}

async function redisBytes(url: string, prefix: string): Promise<{ bytes: number; keys: number }> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  let bytes = 0;
  let keys = 0;
  try {
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      for (const key of batch) {
        bytes += Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) || 0;
        keys += 1;
      }
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return { bytes, keys };
}

async function benchMemory(
  modelServerAddress: string,
  options: BenchOptions,
  catalog: Catalog,
  report: BenchReport,
  runId: string,
  newDataDir: () => Promise<string>,
  startHost: (role: string, o?: Record<string, unknown>) => Promise<ServerHost>,
  stopHost: (host: ServerHost) => Promise<void>,
  note: (m: string) => void,
  log: Log,
): Promise<void> {
  const users = options.quick ? 100 : 500;
  const perUser = 100;
  const prefix = `mem-${runId}-u`;
  const events = seedEvents(prefix, users, perUser, catalog.items, `${runId}-mem`);
  const sample = Array.from({ length: 10 }, (_, i) => `${prefix}${i}`);
  for (const store of ['lmdb', 'redis'] as const) {
    const dataDir = await newDataDir();
    const redisPrefix = `automr-bench-mem-${runId}`;
    let host: ServerHost | undefined;
    try {
      host = await startHost('gateway', {
        ...gatewayOptions(modelServerAddress, dataDir, options),
        ...(store === 'redis' ? { memoryStore: options.redisUrl, redisPrefix } : {}),
      });
      const client = new AutoMrClient(host.address);
      await client.waitForReady();
      const before = store === 'lmdb' ? await allocatedBytes(dataDir) : 0;
      await seed(client, events);
      await waitForEncodings(client, sample, 60_000);
      client.close();
      let bytes: number;
      if (store === 'lmdb') {
        await stopHost(host);
        host = undefined;
        bytes = (await allocatedBytes(dataDir)) - before;
      } else {
        bytes = (await redisBytes(options.redisUrl, redisPrefix)).bytes;
      }
      report.bytes_per_user[store] = Math.round(bytes / users);
      log(`memory ${store}: ${Math.round(bytes / users)} bytes per user (${perUser} events each)`);
    } catch (error) {
      note(`memory (${store}) skipped: ${(error as Error).message}`);
    } finally {
      if (host !== undefined) await stopHost(host);
      if (store === 'redis') await deleteRedisPrefix(options.redisUrl, redisPrefix).catch(() => undefined);
    }
  }
}
