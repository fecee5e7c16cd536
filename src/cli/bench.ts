/**
 * `npm run bench [-- --quick] [--out FILE] ...`: runs the benchmark suite and prints a markdown table to
 * stdout (progress goes to stderr); `--out` also writes the full JSON report.
 * `--summarize-profile FILE.cpuprofile` only prints the top self-time functions of a V8 CPU profile.
 */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ALL_SECTIONS, defaultOptions, runBench } from '../bench/runner.js';
import { renderMarkdown } from '../bench/report.js';
import { renderProfileSummary, summarizeProfileFile } from '../bench/profile-summary.js';
import { runMain } from './exit-code.js';

const HELP = `Usage: npm run bench -- [options]
  --quick                 short run (under five minutes)
  --out FILE              write the JSON report to FILE
  --sections LIST         comma-separated subset of ${ALL_SECTIONS.join(',')}
  --concurrency LIST      closed-loop concurrencies (default 1,4,16,64)
  --duration-ms N         measured time per point (default 10000, quick 3000)
  --warmup-ms N           warmup per point (default 2000, quick 1000)
  --server-warmup-ms N    before the echo/Recommend sweep, each server under closed-loop load at concurrency 64
                          for N ms, not measured (default 6000, quick 3000; 0 = none)
  --users N               users seeded for the Recommend load (each with a full history of 100 events)
  --ingest-streams N      Ingest streams (default 4)
  --ingest-window N       events outstanding per Ingest stream (default 64)
  --ingest-batch N        events per IngestBatch message in the batched closed loop (default 16; 0 skips it)
  --rounds N              alternating echo/gateway slices per concurrency (default 5, quick 3)
  --loadgen child|inprocess  where the load generator runs (default child)
  --profile               also profile the gateway at saturation (node --cpu-prof)
  --profile-dir DIR       where profiles go (default out/profiles)
  --redis URL             Redis for the Redis figures (default redis://127.0.0.1:6379)
  --import-dataset DIR    the import section reads this MovieLens folder (e.g. ../shared/data/ml-100k)
                          instead of its synthetic rows
  --bundle DIR            bundle folder (default bundle/)
  --gateway K=V,...       gateway config overrides by GatewayConfig key (e.g. recommendBatch=1,batchDelayMs=1)
  --summarize-profile F   print the top self-time functions of a .cpuprofile and exit
Environment: AUTOMR_TOKEN is sent as the bearer token on every call (the gateways the bench starts inherit
AUTOMR_AUTH and its files from the environment).`;

function list(value: string): number[] {
  return value.split(',').map((v) => {
    const n = Number(v.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`not a positive integer: ${v}`);
    return n;
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      sections: { type: 'string' },
      concurrency: { type: 'string' },
      'duration-ms': { type: 'string' },
      'warmup-ms': { type: 'string' },
      'server-warmup-ms': { type: 'string' },
      users: { type: 'string' },
      rounds: { type: 'string' },
      'ingest-streams': { type: 'string' },
      'ingest-window': { type: 'string' },
      'ingest-batch': { type: 'string' },
      loadgen: { type: 'string' },
      profile: { type: 'boolean', default: false },
      'profile-dir': { type: 'string' },
      redis: { type: 'string' },
      'import-dataset': { type: 'string' },
      bundle: { type: 'string' },
      gateway: { type: 'string' },
      'summarize-profile': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  if (values['summarize-profile'] !== undefined) {
    const file = values['summarize-profile'];
    console.log(renderProfileSummary(await summarizeProfileFile(file, 20), file));
    return 0;
  }
  const options = defaultOptions(values.quick === true);
  if (values.sections !== undefined) {
    const wanted = values.sections.split(',').map((s) => s.trim());
    for (const section of wanted) {
      if (!(ALL_SECTIONS as readonly string[]).includes(section))
        throw new Error(`unknown section ${section}`);
    }
    options.sections = new Set(wanted);
  }
  if (values.concurrency !== undefined) options.concurrencies = list(values.concurrency);
  if (values['duration-ms'] !== undefined)
    options.durationMs = list(values['duration-ms'])[0] ?? options.durationMs;
  if (values['warmup-ms'] !== undefined) options.warmupMs = Number(values['warmup-ms']);
  if (values['server-warmup-ms'] !== undefined) options.serverWarmupMs = Number(values['server-warmup-ms']);
  if (values.rounds !== undefined) options.rounds = list(values.rounds)[0] ?? options.rounds;
  if (values['ingest-streams'] !== undefined) options.ingestStreams = list(values['ingest-streams'])[0] ?? 4;
  if (values['ingest-window'] !== undefined) options.ingestWindow = list(values['ingest-window'])[0] ?? 64;
  if (values['ingest-batch'] !== undefined) {
    const batch = Number(values['ingest-batch']);
    if (!Number.isInteger(batch) || batch < 0)
      throw new Error(`not an integer >= 0: ${values['ingest-batch']}`);
    options.ingestBatch = batch;
  }
  if (values.users !== undefined) options.users = list(values.users)[0] ?? options.users;
  if (values.loadgen !== undefined) {
    if (values.loadgen !== 'child' && values.loadgen !== 'inprocess')
      throw new Error('--loadgen is child or inprocess');
    options.loadgen = values.loadgen;
  }
  options.profile = values.profile === true;
  if (values['profile-dir'] !== undefined) options.profileDir = resolve(values['profile-dir']);
  if (values.redis !== undefined) options.redisUrl = values.redis;
  if (values['import-dataset'] !== undefined) options.importDataset = resolve(values['import-dataset']);
  if (values.bundle !== undefined) options.bundleDir = resolve(values.bundle);
  if (values.gateway !== undefined) {
    for (const pair of values.gateway.split(',')) {
      const [key, value] = pair.split('=').map((s) => s.trim());
      if (key === undefined || key === '' || value === undefined)
        throw new Error(`--gateway wants key=value: ${pair}`);
      options.gatewayConfig[key] = value !== '' && Number.isFinite(Number(value)) ? Number(value) : value;
    }
  }

  const started = Date.now();
  const report = await runBench(options, (message) => console.error(`[bench] ${message}`));
  report.environment.wall_s = Math.round((Date.now() - started) / 1000);
  console.log(renderMarkdown(report));
  if (values.out !== undefined) {
    await writeFile(values.out, `${JSON.stringify(report, null, 2)}\n`);
    console.error(`[bench] wrote ${values.out}`);
  }
  return 0;
}

runMain(main);
