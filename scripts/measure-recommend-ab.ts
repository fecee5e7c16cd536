/**
 * A/B of the gateway's CPU per Recommend between two built trees (each with `dist/`, e.g. a `git worktree` of the
 * commit before a change and this one), finer than whole-bench runs: one model server, one gateway per tree (each
 * in its own host process, lmdb in a temp dir, the bench's 100 users with full histories seeded into both), then
 * closed-loop Recommend at concurrency 64 in alternating slices (A B, B A, ...) so that both see the same machine.
 * After one uncounted slice each (JIT warm-up), prints each slice's gateway CPU ms per Recommend and req/s, and per
 * round the ratio B/A of its two adjacent slices.
 * Usage: node --import tsx scripts/measure-recommend-ab.ts TREE_A TREE_B [rounds] [slice_ms] [concurrency]
 * (AB_NODE_ARGS_A / AB_NODE_ARGS_B: node flags for that side's gateway, e.g. the same tree twice with V8 settings).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RecommenderClient } from '../src/client/recommender-client.js';
import { ChildLoadRunner } from '../src/bench/load-runner.js';
import { readCatalog } from '../src/bench/scenarios/context.js';
import { recommendTargetOf } from '../src/bench/scenarios/recommend.js';
import { seed, seedEvents, waitForEncodings } from '../src/bench/scenarios/seeding.js';
import type * as ServersModule from '../src/bench/servers.js';

const [treeA, treeB] = process.argv.slice(2, 4).map((t) => resolve(t));
const rounds = Number(process.argv[4] ?? 8);
const sliceMs = Number(process.argv[5] ?? 2500);
const concurrency = Number(process.argv[6] ?? 64);
if (treeA === undefined || treeB === undefined) {
  console.error('usage: measure-recommend-ab.ts TREE_A TREE_B [rounds] [slice_ms] [concurrency]');
  process.exit(2);
}
const USERS = 100;
const EVENTS = 100;

const serversOf = async (tree: string) =>
  (await import(pathToFileURL(join(tree, 'dist/bench/servers.js')).href)) as typeof ServersModule;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

const bundleDir = resolve('bundle');
const catalog = await readCatalog(bundleDir);
const runner = new ChildLoadRunner();
const dirs: string[] = [];
const hosts: ServersModule.ServerHost[] = [];
try {
  const modelServer = await (
    await serversOf(treeA)
  ).ServerHost.start('model-server', { repository: catalog.modelRepository });
  hosts.push(modelServer);
  const sides = [];
  for (const [label, tree] of [
    ['A', treeA],
    ['B', treeB],
  ] as const) {
    const dataDir = await mkdtemp(join(tmpdir(), 'automr-ab-'));
    dirs.push(dataDir);
    // AB_NODE_ARGS_A / AB_NODE_ARGS_B: node flags for that side's gateway process (e.g. V8 heap settings).
    const nodeArgs = (process.env[`AB_NODE_ARGS_${label}`] ?? '').split(' ').filter((a) => a !== '');
    const gateway = await (
      await serversOf(tree)
    ).ServerHost.start(
      'gateway',
      { modelServer: modelServer.address, dataDir, bundle: bundleDir, memoryStore: 'lmdb' },
      nodeArgs,
    );
    hosts.push(gateway);
    const client = new RecommenderClient(gateway.address);
    await client.waitForReady();
    await seed(client, seedEvents('ab-', USERS, EVENTS, catalog.items, 'ab'));
    const sample = Array.from({ length: 20 }, (_, i) => `ab-${i}`);
    await waitForEncodings(client, sample, 60_000);
    client.close();
    const requests = Array.from({ length: USERS }, (_, i) => ({ userId: `ab-${i}`, topN: 10, memoryK: 0 }));
    sides.push({
      label,
      tree,
      gateway,
      target: recommendTargetOf(gateway.address, requests),
      cpu: [] as number[],
    });
  }
  console.log(`A = ${treeA}\nB = ${treeB}\nc=${concurrency}, ${rounds} rounds of ${sliceMs} ms slices`);
  // One slice each first, not counted: both gateways' code optimised by V8 before anything is compared.
  for (const side of sides)
    await runner.run(side.target, { type: 'closed', concurrency, warmupMs: 0, durationMs: sliceMs });
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? sides : [...sides].reverse();
    const perReq = new Map<string, number>();
    for (const side of order) {
      const load = { type: 'closed', concurrency, warmupMs: 500, durationMs: sliceMs } as const;
      const before = await side.gateway.stats();
      const result = await runner.run(side.target, load);
      const after = await side.gateway.stats();
      // The CPU delta covers the warm-up too, as does `finished`.
      const ms = ((after.cpuUs ?? 0) - (before.cpuUs ?? 0)) / 1000 / result.finished;
      side.cpu.push(ms);
      perReq.set(side.label, ms);
      console.log(
        `round ${r + 1} ${side.label} (${basename(side.tree)}): ${ms.toFixed(3)} ms CPU/Recommend, ${result.rps.toFixed(0)} req/s, errors ${result.errors}`,
      );
    }
    ratios.push((perReq.get('B') as number) / (perReq.get('A') as number));
  }
  const [a, b] = sides as [(typeof sides)[0], (typeof sides)[0]];
  console.log(
    `median CPU ms/Recommend: A ${median(a.cpu).toFixed(3)}, B ${median(b.cpu).toFixed(3)}; ` +
      `B/A per round: ${ratios.map((x) => x.toFixed(2)).join(' ')} (median ${median(ratios).toFixed(3)})`,
  );
} finally {
  await runner.close();
  for (const host of hosts.reverse()) await host.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
}
