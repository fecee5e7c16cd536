/**
 * The benchmark suite: starts what it needs (echo floor, local model server, gateways over lmdb and
 * Redis), drives them from the load-generator child through the scenarios in `scenarios/`, and assembles one
 * report. Sections that cannot run (a server that fails to start, Redis not reachable) are recorded in `notes`
 * instead of failing the run.
 */
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { mkdtemp, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ChildLoadRunner, InProcessLoadRunner, type LoadRunner } from './load-runner.js';
import { REPO_ROOT, type BenchOptions } from './options.js';
import { emptyReport, finalizeReport, type BenchReport } from './report.js';
import { ServerHost } from './servers.js';
import { gatewayOptions, readCatalog, type BenchContext, type Log } from './scenarios/context.js';
import { benchExclusionSection } from './scenarios/exclusion.js';
import { benchImport } from './scenarios/import.js';
import { benchIngest } from './scenarios/ingest.js';
import { benchMemory } from './scenarios/memory.js';
import { benchModelServerAlone } from './scenarios/model-server.js';
import { profileGateway } from './scenarios/profile.js';
import { calibrateRecommend, recommendOpenLoop, sweepEchoAndRecommend } from './scenarios/recommend.js';
import { benchRetrieverSection } from './scenarios/retriever.js';
import { benchStoreFloorSection } from './scenarios/store-floor.js';

export { ALL_SECTIONS, defaultOptions, type BenchOptions } from './options.js';

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
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
  const ctx: BenchContext = {
    options,
    runner,
    report,
    catalog: await readCatalog(options.bundleDir),
    runId,
    log,
    note(message) {
      report.notes.push(message);
      log(`note: ${message}`);
    },
    async startHost(role, hostOptions = {}, execArgv = []) {
      const host = await ServerHost.start(role, hostOptions, execArgv);
      hosts.push(host);
      return host;
    },
    async stopHost(host) {
      hosts.splice(hosts.indexOf(host), 1);
      await host.stop();
    },
    async newDataDir() {
      const dir = await mkdtemp(join(tmpdir(), 'automr-bench-'));
      tempDirs.push(dir);
      return dir;
    },
  };
  const has = (section: string): boolean => options.sections.has(section);

  try {
    let modelServer: ServerHost | undefined;
    let gateway: ServerHost | undefined;
    const needsGateway = ['recommend', 'open', 'ingest', 'memory'].some(has);
    if (needsGateway || has('model') || has('import')) {
      try {
        log('starting the local model server');
        modelServer = await ctx.startHost('model-server', { repository: ctx.catalog.modelRepository });
        log(`model server at ${modelServer.address}`);
      } catch (error) {
        ctx.note(`model server did not start: ${(error as Error).message}`);
      }
    }
    if (needsGateway && modelServer !== undefined) {
      try {
        gateway = await ctx.startHost(
          'gateway',
          gatewayOptions(modelServer.address, await ctx.newDataDir(), options),
        );
        log(`gateway (lmdb) at ${gateway.address}`);
      } catch (error) {
        ctx.note(`gateway sections skipped: ${(error as Error).message}`);
      }
    }

    const userPrefix = `bench-${runId}-u`;
    const calibration =
      gateway !== undefined && (has('recommend') || has('open'))
        ? await calibrateRecommend(ctx, gateway, userPrefix)
        : undefined;

    if (has('echo') || has('recommend')) {
      const echo = has('echo') ? await ctx.startHost('echo') : undefined;
      const recommend =
        calibration !== undefined && gateway !== undefined && has('recommend')
          ? { target: calibration.target, gateway, modelServer }
          : undefined;
      await sweepEchoAndRecommend(
        ctx,
        echo,
        recommend,
        calibration?.sizes ?? { request: 16, response: 1200 },
      );
      if (echo !== undefined) await ctx.stopHost(echo);
    }

    if (has('model') && modelServer !== undefined) await benchModelServerAlone(ctx, modelServer);

    const saturation =
      report.sweep.recommend.find((p) => p.concurrency === 64)?.rps ?? report.sweep.recommend.at(-1)?.rps;
    if (has('open') && calibration !== undefined && saturation !== undefined && saturation > 0)
      await recommendOpenLoop(ctx, calibration.target, saturation);

    if (has('ingest') && gateway !== undefined && modelServer !== undefined)
      await benchIngest(ctx, gateway, modelServer);
    if (has('import') && modelServer !== undefined) await benchImport(ctx, modelServer);
    if (has('store')) await benchStoreFloorSection(ctx);
    if (has('memory') && modelServer !== undefined) await benchMemory(ctx, modelServer.address);
    if (has('retriever')) await benchRetrieverSection(ctx);
    if (has('exclusion')) await benchExclusionSection(ctx);
    if (options.profile && modelServer !== undefined && (calibration !== undefined || has('ingest')))
      await profileGateway(ctx, modelServer, calibration?.target, userPrefix);
  } finally {
    await runner.close();
    for (const host of [...hosts].reverse()) await host.stop().catch(() => undefined);
    for (const dir of tempDirs) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  report.environment.loadavg_at_end = loadavg().map((v) => Math.round(v * 100) / 100);
  return finalizeReport(report);
}
