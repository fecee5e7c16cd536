/** Bytes per user at full history (100 events, encoded): lmdb's allocated file size, Redis `MEMORY USAGE`. */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RecommenderClient } from '../../client/recommender-client.js';
import type { ServerHost } from '../servers.js';
import { gatewayOptions, type BenchContext } from './context.js';
import { deleteRedisPrefix, redisBytes } from './redis-keys.js';
import { seed, seedEvents, waitForEncodings } from './seeding.js';
import { tokenMetadataFromEnv } from '../../shared/transport.js';

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

export async function benchMemory(ctx: BenchContext, modelServerAddress: string): Promise<void> {
  const { options, report, runId, log } = ctx;
  const users = options.quick ? 100 : 500;
  const perUser = 100;
  const prefix = `mem-${runId}-u`;
  const events = seedEvents(prefix, users, perUser, ctx.catalog.items, `${runId}-mem`);
  const sample = Array.from({ length: 10 }, (_, i) => `${prefix}${i}`);
  for (const store of ['lmdb', 'redis'] as const) {
    const dataDir = await ctx.newDataDir();
    const redisPrefix = `automr-bench-mem-${runId}`;
    let host: ServerHost | undefined;
    try {
      host = await ctx.startHost('gateway', {
        ...gatewayOptions(modelServerAddress, dataDir, options),
        ...(store === 'redis' ? { memoryStore: options.redisUrl, redisPrefix } : {}),
      });
      const client = new RecommenderClient(host.address, tokenMetadataFromEnv());
      await client.waitForReady();
      const before = store === 'lmdb' ? await allocatedBytes(dataDir) : 0;
      await seed(client, events);
      await waitForEncodings(client, sample, 60_000);
      client.close();
      let bytes: number;
      if (store === 'lmdb') {
        await ctx.stopHost(host);
        host = undefined;
        bytes = (await allocatedBytes(dataDir)) - before;
      } else {
        bytes = (await redisBytes(options.redisUrl, redisPrefix)).bytes;
      }
      report.bytes_per_user[store] = Math.round(bytes / users);
      log(`memory ${store}: ${Math.round(bytes / users)} bytes per user (${perUser} events each)`);
    } catch (error) {
      ctx.note(`memory (${store}) skipped: ${(error as Error).message}`);
    } finally {
      if (host !== undefined) await ctx.stopHost(host);
      if (store === 'redis') await deleteRedisPrefix(options.redisUrl, redisPrefix).catch(() => undefined);
    }
  }
}
