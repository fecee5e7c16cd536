/**
 * Where a Recommend's time goes at concurrency 1: one model server and one gateway (bench host processes, lmdb,
 * the bench's 100 users with full histories), warmed up by `warmup_ms` of Recommends at concurrency 64 (as the
 * bench's sweep is), then back-to-back Recommends from this process for `ms` milliseconds. Prints p50/p99 of the end-to-end latency, of the bench's overhead
 * (end-to-end minus the gateway's infer_ms and encode_ms), of the gateway's own stages (summary timings) and of
 * what lies outside them (end-to-end minus total_ms: two transport hops and the handler), and the gateway's CPU
 * per Recommend over the measured window.
 * Usage (after `npm run build`): node --import tsx scripts/measure-c1.ts [ms] [warmup_ms] [gateway K=V,...]
 * (C1_NODE_ARGS: node flags for the gateway process, e.g. --trace-gc.)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RecommenderClient } from '../src/client/recommender-client.js';
import { readCatalog } from '../src/bench/scenarios/context.js';
import { seed, seedEvents, waitForEncodings } from '../src/bench/scenarios/seeding.js';
import type * as ServersModule from '../src/bench/servers.js';

const ms = Number(process.argv[2] ?? 5000);
const warmupMs = Number(process.argv[3] ?? 2000);
const overrides = Object.fromEntries(
  (process.argv[4] ?? '')
    .split(',')
    .filter((kv) => kv.includes('='))
    .map((kv) => kv.split('=') as [string, string]),
);
const USERS = 100;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

// The built tree's servers (`npm run build` first), as the bench runs them.
const { ServerHost } = (await import(
  pathToFileURL(resolve('dist/bench/servers.js')).href
)) as typeof ServersModule;
type ServerHost = ServersModule.ServerHost;
const bundleDir = resolve('bundle');
const catalog = await readCatalog(bundleDir);
const dataDir = await mkdtemp(join(tmpdir(), 'automr-c1-'));
const hosts: ServerHost[] = [];
try {
  const modelServer = await ServerHost.start('model-server', { repository: catalog.modelRepository });
  hosts.push(modelServer);
  const gateway = await ServerHost.start(
    'gateway',
    { modelServer: modelServer.address, dataDir, bundle: bundleDir, memoryStore: 'lmdb', ...overrides },
    (process.env.C1_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
  );
  hosts.push(gateway);
  const client = new RecommenderClient(gateway.address);
  await client.waitForReady();
  await seed(client, seedEvents('c1-', USERS, 100, catalog.items, 'c1'));
  await waitForEncodings(
    client,
    Array.from({ length: 20 }, (_, i) => `c1-${i}`),
    60_000,
  );
  const rows = { e2e: [] as number[], overhead: [] as number[], outside: [] as number[] };
  const stages = {
    read: [] as number[],
    retrieve: [] as number[],
    infer: [] as number[],
    domainRest: [] as number[],
  };
  let i = 0;
  const one = async (record: boolean) => {
    const t0 = performance.now();
    const r = await client.recommend({ user_id: `c1-${i++ % USERS}`, top_n: 10 });
    const e2e = performance.now() - t0;
    const t = r.summary?.timings;
    if (!record || t === undefined || t === null) return;
    rows.e2e.push(e2e);
    rows.overhead.push(e2e - t.infer_ms - t.encode_ms);
    rows.outside.push(e2e - t.total_ms);
    stages.read.push(t.memory_read_ms);
    stages.retrieve.push(t.retrieve_ms);
    stages.infer.push(t.infer_ms);
    stages.domainRest.push(t.total_ms - t.memory_read_ms - t.retrieve_ms - t.infer_ms - t.encode_ms);
  };
  const until = (end: number) => performance.now() < end;
  for (const end = performance.now() + warmupMs; until(end);) await one(false);
  console.log('-- measured window starts');
  const before = await gateway.stats();
  for (const end = performance.now() + ms; until(end);) await one(true);
  const after = await gateway.stats();
  console.log('-- measured window ends');
  const n = rows.e2e.length;
  const cpu = ((after.cpuUs ?? 0) - (before.cpuUs ?? 0)) / 1000 / n;
  console.log(`${n} Recommends at c=1 in ${ms} ms; gateway CPU ${cpu.toFixed(3)} ms/Recommend`);
  for (const [name, xs] of [...Object.entries(rows), ...Object.entries(stages)])
    console.log(`${name.padEnd(10)} p50 ${pct(xs, 50).toFixed(3)} ms  p99 ${pct(xs, 99).toFixed(3)} ms`);
  client.close();
} finally {
  for (const host of hosts.reverse()) await host.stop();
  await rm(dataDir, { recursive: true, force: true });
}
