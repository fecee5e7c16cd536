/**
 * Gateway start-up over a store holding many users, after a bundle change (the stored encodings are not this
 * bundle's, as in a rollout): time until the gateway is SERVING, and what it spends in the 3 s after it (CPU,
 * store reads, prompts encoded) before any request arrives. Lazy re-encoding keeps all of it flat in the users.
 * Usage: node --import tsx scripts/measure-startup.ts [users,...] [events per user]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LmdbMemoryStore } from '../src/gateway/adapters/lmdb-store.js';
import { TritonModelServer } from '../src/gateway/adapters/triton-model-server.js';
import { loadBundle } from '../src/gateway/bundle.js';
import { defaultConfig } from '../src/gateway/config.js';
import type { MemoryStore, ModelServer } from '../src/gateway/domain/ports.js';
import { startGateway } from '../src/gateway/server.js';
import { startModelServer } from '../src/model-server/server.js';
import { silentLogger } from '../src/shared/logger.js';

const REPO = path.resolve(import.meta.dirname, '..');
const userCounts = (process.argv[2] ?? '0,1000,10000').split(',').map(Number);
const eventsPerUser = Number(process.argv[3] ?? 10);
const SETTLE_MS = 3_000;

async function seed(dir: string, users: number): Promise<void> {
  const store = new LmdbMemoryStore(dir);
  const writes: Promise<unknown>[] = [];
  for (let u = 0; u < users; u++) {
    for (let i = 0; i < eventsPerUser; i++) {
      const token = 3 + ((u * 7 + i * 13) % 200);
      writes.push(
        store.append(
          {
            userId: `u${u}`,
            eventId: `e${i}`,
            itemId: String(token - 3).padStart(3, '0'),
            token,
            timestampMs: 1e12 + i,
          },
          100,
          9,
        ),
      );
    }
    if (writes.length >= 5_000) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
  await store.close();
}

const modelServer = await startModelServer({
  repository: path.join(REPO, 'triton-models'),
  address: '127.0.0.1:0',
  logger: silentLogger(),
});
const bundle = await loadBundle(path.join(REPO, 'bundle'));
console.log(
  '| users | events/user | start-up to SERVING (ms) | CPU in the 3 s after (ms) | store reads | prompts encoded |',
);
console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
for (const users of userCounts) {
  const dir = mkdtempSync(path.join(tmpdir(), 'automr-startup-'));
  await seed(dir, users);
  const inner = new LmdbMemoryStore(dir);
  let reads = 0;
  const store: MemoryStore = Object.assign(Object.create(inner) as MemoryStore, {
    read: (u: string) => (reads++, inner.read(u)),
    readTail: (u: string, s: number, c: number) => (reads++, inner.readTail(u, s, c)),
  });
  const triton = new TritonModelServer({ address: modelServer.address, bundle });
  let prompts = 0;
  const counting: ModelServer = {
    ready: (s) => triton.ready(s),
    encode: (p, s) => ((prompts += p.length), triton.encode(p, s)),
    recommend: (...args: Parameters<ModelServer['recommend']>) => triton.recommend(...args),
    close: () => triton.close(),
  };
  const t0 = performance.now();
  const gateway = await startGateway(
    defaultConfig({ addr: '127.0.0.1:0', dataDir: dir, metricsPort: 0, modelServer: modelServer.address }),
    { logger: silentLogger(), store, modelServer: counting, bundle },
  );
  const startupMs = performance.now() - t0;
  const cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  const cpu = process.cpuUsage(cpu0);
  console.log(
    `| ${users} | ${eventsPerUser} | ${startupMs.toFixed(0)} | ${((cpu.user + cpu.system) / 1000).toFixed(0)} | ${reads} | ${prompts} |`,
  );
  await gateway.close();
  rmSync(dir, { recursive: true, force: true });
}
await modelServer.close();
