/**
 * CPU profiles of a separate gateway at saturation (Recommend, then Ingest and IngestBatch, each when its section runs): the
 * profiler perturbs what it measures, so the measured sections never run under it.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { RecommenderClient } from '../../client/recommender-client.js';
import type { TargetSpec } from '../grpc-target.js';
import { renderProfileSummary, summarizeProfileFile } from '../profile-summary.js';
import type { ServerHost } from '../servers.js';
import { closedLoop, gatewayOptions, type BenchContext } from './context.js';
import { ingestSpec } from './ingest.js';
import { seed, seedEvents, waitForEncodings } from './seeding.js';
import { tokenMetadataFromEnv } from '../../shared/transport.js';

/** `recommendTarget` undefined: Ingest only (the Recommend load was not calibrated in this run). */
export async function profileGateway(
  ctx: BenchContext,
  modelServer: ServerHost,
  recommendTarget: TargetSpec | undefined,
  userPrefix: string,
): Promise<void> {
  const { options, runner, report, runId, log } = ctx;
  await mkdir(options.profileDir, { recursive: true });
  const profiled = await ctx.startHost(
    'gateway',
    gatewayOptions(modelServer.address, await ctx.newDataDir(), options),
  );
  const client = new RecommenderClient(profiled.address, tokenMetadataFromEnv());
  // Recommend at saturation and, when the sweep has it, at concurrency 1 (where nothing is shared across requests).
  const sections = [
    ...(recommendTarget === undefined ? [] : (['recommend'] as const)),
    ...(recommendTarget !== undefined && options.concurrencies.includes(1)
      ? (['recommend-c1'] as const)
      : []),
    ...(options.sections.has('ingest') ? (['ingest'] as const) : []),
    ...(options.sections.has('ingest') && options.ingestBatch > 0 ? (['ingest-batch'] as const) : []),
  ];
  try {
    await client.waitForReady();
    if (recommendTarget !== undefined) {
      await seed(
        client,
        seedEvents(userPrefix, options.users, options.eventsPerUser, ctx.catalog.items, `${runId}p`),
      );
      await waitForEncodings(client, [`${userPrefix}0`], 60_000);
    }
    for (const section of sections) {
      const file = join(options.profileDir, `gateway-${section}-${runId}.cpuprofile`);
      const measured = closedLoop(options, section === 'recommend-c1' ? 1 : 64);
      const target =
        (section === 'recommend' || section === 'recommend-c1') && recommendTarget !== undefined
          ? { ...recommendTarget, address: profiled.address }
          : undefined;
      if (target !== undefined) await runner.run(target, { ...measured, durationMs: 1000 });
      await profiled.startProfile();
      if (target !== undefined) {
        await runner.run(target, { ...measured, warmupMs: 0 });
      } else {
        await runner.ingest({
          ...ingestSpec(
            profiled.address,
            options,
            ctx.catalog,
            `${runId}p`,
            section === 'ingest' ? 'closed' : 'batch',
          ),
          warmupMs: 0,
        });
      }
      await profiled.stopProfile(file);
      const summary = await summarizeProfileFile(file, 12);
      const title =
        section === 'recommend-c1' ? 'gateway recommend at c=1' : `gateway ${section} at saturation`;
      report.profiles[title] = {
        file,
        top: summary.functions,
        packages: summary.packages,
        inclusive: summary.inclusive,
      };
      log(renderProfileSummary(summary, title));
    }
  } finally {
    client.close();
    await ctx.stopHost(profiled);
  }
}
