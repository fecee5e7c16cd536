/**
 * Durable Ingest: 4 streams × 64 outstanding events (closed loop), then an open loop at 80 % of that rate, then
 * (with `--ingest-batch N`, default 16) the same closed loop through IngestBatch with N events per message, on the
 * embedded store and on Redis, with ack latency, the encoding lag left at stop and CPU per event.
 */
import { RecommenderClient } from '../../client/recommender-client.js';
import { PROTO_DIR, SERVICE_NAME } from '../../shared/recommender-proto.js';
import { decodeHistogram, summarize } from '../histogram.js';
import type { IngestLoadSpec } from '../ingest-load.js';
import type { BenchOptions } from '../options.js';
import type { IngestFigure } from '../report.js';
import type { ServerHost } from '../servers.js';
import { gatewayOptions, type BenchCatalog, type BenchContext } from './context.js';
import { RECOMMENDER_PROTO_PATH } from './recommend.js';
import { busyCores, sampleMachineCpu } from '../machine-cpu.js';
import { deleteRedisPrefix } from './redis-keys.js';
import { waitForEncodings } from './seeding.js';
import { tokenMetadataFromEnv } from '../../shared/transport.js';

/** Closed and open loop through Ingest (one event per message), closed loop through IngestBatch. */
export type IngestMode = 'closed' | 'open' | 'batch';

const modeLabel = (spec: IngestLoadSpec, mode: IngestMode): string =>
  mode === 'closed'
    ? `closed ${spec.streams}x${spec.window}`
    : mode === 'open'
      ? `open ${spec.rate ?? 0}/s`
      : `batch ${spec.streams}x${spec.window}/${spec.batch ?? 0}`;

export function ingestSpec(
  address: string,
  options: BenchOptions,
  catalog: BenchCatalog,
  runId: string,
  mode: IngestMode,
  rate?: number,
): IngestLoadSpec {
  return {
    address,
    protoPath: RECOMMENDER_PROTO_PATH,
    includeDirs: [PROTO_DIR],
    service: SERVICE_NAME,
    method: mode === 'batch' ? 'IngestBatch' : 'Ingest',
    streams: options.ingestStreams,
    window: options.ingestWindow,
    ...(mode === 'open' ? { rate: rate ?? 10_000 } : {}),
    ...(mode === 'batch' ? { batch: options.ingestBatch } : {}),
    warmupMs: options.warmupMs,
    durationMs: options.durationMs,
    users: options.quick ? 2_000 : 10_000,
    userPrefix: `ingest-${runId}-${mode}-u`,
    items: catalog.items,
    runId: `${runId}-${mode}`,
    baseTimestampMs: Date.UTC(2025, 0, 1),
  };
}

async function benchIngestOn(
  ctx: BenchContext,
  store: string,
  gateway: ServerHost,
  modelServer: ServerHost,
): Promise<void> {
  const { options, runner, report, log } = ctx;
  const client = new RecommenderClient(gateway.address, tokenMetadataFromEnv());
  try {
    await client.waitForReady();
    let closedEps = 0;
    const modes: IngestMode[] = options.ingestBatch > 0 ? ['closed', 'open', 'batch'] : ['closed', 'open'];
    for (const mode of modes) {
      // Open loop at 80% of this store's closed-loop saturation: ack latency at a sustainable rate.
      const rate = Math.max(100, Math.round(closedEps * 0.8));
      const spec = ingestSpec(gateway.address, options, ctx.catalog, `${ctx.runId}-${store}`, mode, rate);
      const before = await Promise.all([gateway.stats(), modelServer.stats()]);
      const machineBefore = sampleMachineCpu();
      const result = await runner.ingest(spec);
      const machineCores = busyCores(machineBefore, sampleMachineCpu());
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
        mode: modeLabel(spec, mode),
        eps: Math.round(result.eps),
        ack_latency: summarize(decodeHistogram(result.latency)),
        accepted: result.accepted,
        rejected: result.rejected,
        errors: result.errors,
        pending_encodings_at_stop: drain.pendingAtStart,
        machine_busy_cores: Math.round(machineCores * 100) / 100,
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
        `ingest ${store} ${figure.mode}: ${figure.eps} events/s, ack p99 ${figure.ack_latency.p99_ms} ms, gateway CPU ${String(gatewayCpu)} ms/event, model server CPU ${String(modelCpu)} ms/event, machine ${machineCores.toFixed(2)} cores busy`,
      );
    }
  } finally {
    client.close();
  }
}

/** Ingest on the lmdb gateway already running, then on a Redis gateway started for it (its keys deleted after). */
export async function benchIngest(
  ctx: BenchContext,
  gateway: ServerHost,
  modelServer: ServerHost,
): Promise<void> {
  await benchIngestOn(ctx, 'lmdb', gateway, modelServer);
  let redisGateway: ServerHost | undefined;
  const prefix = `automr-bench-${ctx.runId}`;
  try {
    redisGateway = await ctx.startHost('gateway', {
      ...gatewayOptions(modelServer.address, await ctx.newDataDir(), ctx.options),
      memoryStore: ctx.options.redisUrl,
      redisPrefix: prefix,
    });
    await benchIngestOn(ctx, 'redis', redisGateway, modelServer);
  } catch (error) {
    ctx.note(`Redis ingest skipped: ${(error as Error).message}`);
  } finally {
    if (redisGateway !== undefined) await ctx.stopHost(redisGateway);
    await deleteRedisPrefix(ctx.options.redisUrl, prefix).catch(() => undefined);
  }
}
