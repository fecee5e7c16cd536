/**
 * Recommend against its floor: users are seeded with full histories, one calibration call measures the message
 * sizes the echo floor then mirrors, and the echo floor and Recommend run in alternating short slices per
 * concurrency (drift on a shared machine hits both alike), with each server's CPU per request; then the open loop.
 */
import { join } from 'node:path';
import { RecommenderClient } from '../../client/recommender-client.js';
import { PROTO_DIR, RECOMMENDER_PROTO, SERVICE_NAME } from '../../shared/recommender-proto.js';
import { decodeHistogram, summarize } from '../histogram.js';
import { loadMethod, type TargetSpec } from '../grpc-target.js';
import { mergeResults, type LoadResult, type LoadSpec } from '../loadgen.js';
import type { HostStats, ServerHost } from '../servers.js';
import { closedLoop, sweepPoint, type BenchContext } from './context.js';
import { seed, seedEvents, waitForEncodings } from './seeding.js';
import { tokenMetadataFromEnv } from '../../shared/transport.js';

export const RECOMMENDER_PROTO_PATH = join(PROTO_DIR, RECOMMENDER_PROTO);

/** The load generator's Recommend target over the seeded users (its loader uses camelCase field names). */
export function recommendTargetOf(address: string, requests: unknown[]): TargetSpec {
  return {
    kind: 'proto',
    address,
    protoPath: RECOMMENDER_PROTO_PATH,
    includeDirs: [PROTO_DIR],
    service: SERVICE_NAME,
    method: 'Recommend',
    generator: { kind: 'cycle', requests },
  };
}

export interface Calibration {
  target: TargetSpec;
  sizes: { request: number; response: number };
}

/** Seeds the Recommend users on `gateway` and measures one Recommend's request and response bytes. */
export async function calibrateRecommend(
  ctx: BenchContext,
  gateway: ServerHost,
  userPrefix: string,
): Promise<Calibration | undefined> {
  const { options, runner, report, log, note } = ctx;
  const client = new RecommenderClient(gateway.address, tokenMetadataFromEnv());
  try {
    await client.waitForReady();
    log(`seeding ${options.users} users x ${options.eventsPerUser} events`);
    await seed(
      client,
      seedEvents(userPrefix, options.users, options.eventsPerUser, ctx.catalog.items, ctx.runId),
    );
    const sample = Array.from({ length: Math.min(20, options.users) }, (_, i) => `${userPrefix}${i}`);
    const drained = await waitForEncodings(client, sample, 60_000);
    log(`seed encodings drained in ${String(drained.drainMs)} ms`);
    const requests = Array.from({ length: options.users }, (_, i) => ({
      userId: `${userPrefix}${i}`,
      topN: 10,
      memoryK: 0,
    }));
    const target = recommendTargetOf(gateway.address, requests);
    const method = loadMethod({
      protoPath: RECOMMENDER_PROTO_PATH,
      includeDirs: [PROTO_DIR],
      service: SERVICE_NAME,
      method: 'Recommend',
    });
    const calibration = await runner.run(target, {
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
    const sizes = { request: requestBytes, response: responseBytes };
    report.message_bytes = sizes;
    if (calibration.errors > 0) note(`Recommend calibration errors: ${calibration.errorSamples.join('; ')}`);
    return { target, sizes };
  } catch (error) {
    note(`Recommend calibration failed: ${(error as Error).message}`);
    return undefined;
  } finally {
    client.close();
  }
}

/** One slice of load, with the CPU each watched host used and the model traffic it caused. */
async function measure(
  ctx: BenchContext,
  target: TargetSpec,
  spec: LoadSpec,
  watched: (ServerHost | undefined)[],
) {
  const stats = () =>
    Promise.all(watched.map((h) => (h === undefined ? Promise.resolve(undefined) : h.stats())));
  const before = await stats();
  const result = await ctx.runner.run(target, spec);
  const after = await stats();
  const delta = (i: number, pick: (s: HostStats) => number): number => {
    const a = after[i];
    const b = before[i];
    return a === undefined || b === undefined ? 0 : pick(a) - pick(b);
  };
  return { result, delta };
}

const perCall = (us: number, calls: number): number | undefined =>
  calls > 0 ? Math.round((us / calls / 1000) * 1000) / 1000 : undefined;

/**
 * Each target under closed-loop load at concurrency 64 (or the sweep's highest) for `serverWarmupMs`, not measured:
 * measured cold, the first point of the sweep (concurrency 1) came out slower (gateway CPU per Recommend at c=1
 * 1.7–2.8 ms vs 1.2–1.4 ms warm, overhead p50 0.7–1.25 vs 0.55–0.69 ms; docs/PERF-NOTES.md).
 */
async function warmUpServers(ctx: BenchContext, targets: TargetSpec[]): Promise<void> {
  const { options, runner, log } = ctx;
  if (options.serverWarmupMs <= 0 || targets.length === 0) return;
  // At the bench's saturation point (64) even when the sweep stops below it: many requests in little time.
  const concurrency = Math.max(64, ...options.concurrencies);
  log(`warming up the servers: ${options.serverWarmupMs} ms each at c=${concurrency}, not measured`);
  for (const target of targets)
    await runner.run(target, {
      type: 'closed',
      concurrency,
      warmupMs: 0,
      durationMs: options.serverWarmupMs,
    });
}

/** The echo floor and Recommend at each concurrency, in alternating slices (either may be absent). */
export async function sweepEchoAndRecommend(
  ctx: BenchContext,
  echo: ServerHost | undefined,
  recommend: { target: TargetSpec; gateway: ServerHost; modelServer: ServerHost | undefined } | undefined,
  sizes: { request: number; response: number },
): Promise<void> {
  const { options, report, log, note } = ctx;
  const echoTarget: TargetSpec | undefined =
    echo === undefined
      ? undefined
      : { kind: 'echo', address: echo.address, requestBytes: sizes.request, responseBytes: sizes.response };
  await warmUpServers(
    ctx,
    [echoTarget, recommend?.target].filter((t) => t !== undefined),
  );
  for (const concurrency of options.concurrencies) {
    // Alternate short slices of the floor and the gateway (one warmup each, then `rounds` slices).
    const rounds = options.rounds;
    const slice = {
      ...closedLoop(options, concurrency),
      durationMs: Math.round(options.durationMs / rounds),
    };
    const echoParts: LoadResult[] = [];
    const recParts: LoadResult[] = [];
    const cpu = { echo: 0, gateway: 0, model: 0 };
    const traffic = { calls: 0, request: 0, response: 0 };
    for (let round = 0; round < rounds; round += 1) {
      const spec = round === 0 ? slice : { ...slice, warmupMs: 0 };
      if (echoTarget !== undefined) {
        const { result, delta } = await measure(ctx, echoTarget, spec, [echo]);
        echoParts.push(result);
        cpu.echo += delta(0, (s) => s.cpuUs ?? 0);
      }
      if (recommend !== undefined) {
        const { result, delta } = await measure(ctx, recommend.target, spec, [
          recommend.gateway,
          recommend.modelServer,
        ]);
        recParts.push(result);
        cpu.gateway += delta(0, (s) => s.cpuUs ?? 0);
        cpu.model += delta(1, (s) => s.cpuUs ?? 0);
        traffic.calls += delta(1, (s) => s.modelCalls);
        traffic.request += delta(1, (s) => s.modelRequestBytes);
        traffic.response += delta(1, (s) => s.modelResponseBytes);
      }
    }
    if (echoParts.length > 0) {
      const result = mergeResults(echoParts);
      const sweep = sweepPoint(concurrency, result);
      const cpuMs = perCall(cpu.echo, result.finished);
      if (cpuMs !== undefined) sweep.server_cpu_ms_per_request = cpuMs;
      report.sweep.echo.push(sweep);
      log(`echo c=${concurrency}: ${result.rps.toFixed(0)} rps, server CPU ${String(cpuMs)} ms/call`);
    }
    if (recParts.length > 0) {
      const result = mergeResults(recParts);
      const sweep = sweepPoint(concurrency, result);
      const gatewayCpu = perCall(cpu.gateway, result.finished);
      const modelCpu = perCall(cpu.model, result.finished);
      if (gatewayCpu !== undefined) sweep.server_cpu_ms_per_request = gatewayCpu;
      if (modelCpu !== undefined) sweep.model_server_cpu_ms_per_request = modelCpu;
      if (traffic.calls > 0 && result.finished > 0)
        sweep.model_calls_per_request = Math.round((traffic.calls / result.finished) * 100) / 100;
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
}

/** Recommend at fixed arrival rates below and at the closed-loop saturation; latency from each intended start. */
export async function recommendOpenLoop(
  ctx: BenchContext,
  target: TargetSpec,
  saturation: number,
): Promise<void> {
  const { options, runner, report, log } = ctx;
  for (const fraction of options.quick ? [0.5, 0.9] : [0.25, 0.5, 0.75, 0.9, 1.0]) {
    const rate = Math.max(1, Math.round(saturation * fraction));
    const result = await runner.run(target, {
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
    if (result.errors > 0)
      ctx.note(
        `Recommend open loop ${rate}/s: ${result.errors} errors, e.g. ${result.errorSamples[0] ?? ''}`,
      );
    log(`recommend open loop ${rate}/s: p99 ${summarize(decodeHistogram(result.latency)).p99_ms} ms`);
  }
}
