/**
 * Bulk import (`npm run import`'s code path, `runImport`, in this process): raw events/s into lmdb and Redis through
 * the store's batched write path, and on lmdb the encode phase that follows (memory elements and users encoded per
 * second through the model server, with the model server's CPU per element). The rows are the project's synthetic
 * ones (users × 100 events, interleaved in time order, written to a CSV first) unless `--import-dataset` names a
 * MovieLens folder for a local run.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultConfig } from '../../gateway/config.js';
import { csvSource, datasetSource, type RowSource } from '../../import/rows.js';
import { runImport } from '../../import/run.js';
import { silentLogger } from '../../shared/logger.js';
import type { ImportFigure } from '../report.js';
import type { ServerHost } from '../servers.js';
import { gatewayOptions, type BenchContext } from './context.js';
import { deleteRedisPrefix } from './redis-keys.js';
import { seedEvents } from './seeding.js';

const EVENTS_PER_USER = 100;

async function syntheticCsv(ctx: BenchContext, users: number): Promise<string> {
  const events = seedEvents(`import-${ctx.runId}-u`, users, EVENTS_PER_USER, ctx.catalog.items, ctx.runId);
  const lines = ['event_id,user_id,item_id,timestamp_ms'];
  for (const e of events) lines.push([e.event_id, e.user_id, e.item_id, String(e.timestamp_ms)].join(','));
  const file = join(await ctx.newDataDir(), 'import.csv');
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

export async function benchImport(ctx: BenchContext, modelServer: ServerHost): Promise<void> {
  const { options, report, log } = ctx;
  const users = options.quick ? 500 : 2_000;
  let source: RowSource;
  let label: string;
  if (options.importDataset === undefined) {
    source = csvSource(await syntheticCsv(ctx, users));
    label = `synthetic ${users}x${EVENTS_PER_USER}`;
  } else {
    source = datasetSource(options.importDataset);
    label = options.importDataset;
  }
  for (const store of ['lmdb', 'redis'] as const) {
    const redisPrefix = `automr-bench-import-${ctx.runId}`;
    // Encoding does not depend on the store: measured once, on lmdb.
    const encode = store === 'lmdb';
    try {
      const config = defaultConfig({
        ...gatewayOptions(modelServer.address, await ctx.newDataDir(), options),
        ...(store === 'redis' ? { memoryStore: options.redisUrl, redisPrefix } : {}),
      });
      const before = await modelServer.stats();
      const summary = await runImport(config, { source, encode }, silentLogger());
      const after = await modelServer.stats();
      const figure: ImportFigure = {
        store,
        source: label,
        rows: summary.rows,
        accepted: summary.accepted,
        rejected: summary.rejected,
        raw_s: summary.rawSeconds,
        raw_eps: summary.rawEventsPerSecond,
        users: summary.users,
      };
      if (summary.encodeSeconds !== undefined && summary.encodedElements !== undefined) {
        figure.encode_s = summary.encodeSeconds;
        figure.encoded_elements = summary.encodedElements;
        figure.encode_elements_per_s = summary.encodeElementsPerSecond ?? 0;
        figure.encode_users_per_s = summary.encodeUsersPerSecond ?? 0;
        figure.encode_failed_users = summary.encodeFailedUsers ?? 0;
        if (summary.encodedElements > 0) {
          const cpuUs = (after.cpuUs ?? 0) - (before.cpuUs ?? 0);
          figure.model_server_cpu_ms_per_element =
            Math.round((cpuUs / summary.encodedElements / 1000) * 1000) / 1000;
        }
      }
      report.sweep.import.push(figure);
      log(
        `import ${store} (${label}): ${figure.raw_eps} raw events/s` +
          (figure.encode_elements_per_s === undefined
            ? ''
            : `, encode ${figure.encode_elements_per_s} elements/s (${figure.encode_users_per_s} users/s)`),
      );
    } catch (error) {
      ctx.note(`import (${store}) skipped: ${(error as Error).message}`);
    } finally {
      if (store === 'redis') await deleteRedisPrefix(options.redisUrl, redisPrefix).catch(() => undefined);
    }
  }
}
