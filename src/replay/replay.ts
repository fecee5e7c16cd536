/**
 * Served-path parity: streams a dataset's events through the running service's Ingest (each user's
 * events in time order, timestamps in ms), calls Recommend (memory_k 1, with the consumed-item exclusion the
 * offline automr row was evaluated with) right before each test target is ingested, and computes the offline
 * metrics from what was served. It starts the local model server and a
 * gateway on the given bundle itself unless `address` names a running gateway.
 *
 * A user's history before the first test target can instead come from the bulk import (`history`): the replay
 * writes exactly those events (same event ids and user ids as it would ingest) as the import's CSV and runs the
 * import into its gateway's store before starting it ('import'), or expects a running gateway's memory to hold
 * them already ('preloaded', after `npm run import -- --csv` of `writeHistoryCsv`'s file); either way only the
 * events from the first target on go through Ingest.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { RecommenderClient, type IngestEvent, type RecommendResult } from '../client/recommender-client.js';
import { ServerHost } from '../bench/servers.js';
import { defaultConfig } from '../gateway/config.js';
import { csvSource } from '../import/rows.js';
import { runImport } from '../import/run.js';
import { silentLogger } from '../shared/logger.js';
import { loadDataset, type PreparedDataset } from './dataset.js';
import {
  compareWithOffline,
  rankAgreement,
  rankIn,
  summarizeRanks,
  type MetricComparison,
  type Metrics,
  type OfflineRow,
  type RankAgreement,
} from './metrics.js';

export interface ReplayOptions {
  datasetDir: string;
  bundleDir: string;
  targetsFile: string;
  /** A running gateway; when absent the replay starts its own model server + gateway. */
  address?: string;
  /** Memory store of a started gateway: 'lmdb' or a redis:// URL. */
  store: string;
  /** Users replayed concurrently (each user's own events stay strictly ordered). */
  concurrency: number;
  limitUsers?: number;
  topN: number;
  memoryK: number;
  /** Recommend's `exclude_consumed`; undefined = what the targets file's policy says (off without one). */
  excludeConsumed?: boolean;
  userPrefix: string;
  /** History kept per user by a started gateway (its `--max-history`); undefined = the gateway's default. */
  maxHistory?: number;
  /**
   * Least share of samples whose served rank equals the offline rank (ranks past top_n equal). Served and
   * offline run the same exported graphs, so anything but (near) total agreement is skew, even while the
   * aggregate metrics stay inside their intervals (the history-cap window bug moved 4% of ranks and no mean).
   */
  minAgreement: number;
  /** How long to wait for a user's memory to be fully encoded before a Recommend counts. */
  encodingWaitMs: number;
  /**
   * Where each user's events before the first target come from: 'ingest' (default), 'import' (bulk-imported
   * into the started gateway's store before it starts) or 'preloaded' (already in the memory of `address`).
   */
  history?: HistorySource;
  /** Redis key prefix of a started gateway on Redis (default: a unique one, deleted by nobody). */
  redisPrefix?: string;
  log: (message: string) => void;
}

export type HistorySource = 'ingest' | 'import' | 'preloaded';

export interface TargetSample {
  user_id: string;
  pos: number;
  target_item_id: string;
  timestamp: number;
  automr_rank: number;
}

export interface TargetsFile {
  dataset: string;
  fingerprint: string;
  /** The bundle's serving policy; `automr_rank` was computed with its exclusion setting. */
  policy?: { exclude_consumed?: boolean; memory_k?: number };
  automr_row: OfflineRow;
  samples: TargetSample[];
}

export interface ReplayReport {
  dataset: string;
  fingerprint: string;
  bundle_fingerprint: string | null;
  model_version: string | null;
  samples: number;
  users: number;
  events_ingested: number;
  /** Where the history before each user's first target came from, and how many events that was (import). */
  history: HistorySource;
  events_imported: number;
  /** Whether Recommend excluded each user's consumed items. */
  exclude_consumed: boolean;
  served: Metrics;
  comparison: MetricComparison[];
  all_within: boolean;
  /** Share of samples with the same rank as offline, and whether it reaches `minAgreement`. */
  agreement_share: number;
  agreement_ok: boolean;
  /** Parity: every metric within its interval and per-sample agreement at least `minAgreement`. */
  parity: boolean;
  /** Served ranks against the offline per-sample automr ranks (ranks >= top_n count as equal). */
  agreement: RankAgreement;
  /** Each replayed sample's served rank (targets-file order), to compare runs sample by sample. */
  ranks: { user_id: string; pos: number; served: number; offline: number }[];
  recommends_waiting_for_encoding: number;
  recommends_still_lagging: number;
  unknown_items: number;
  wall_s: number;
}

async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await readFile(file, 'utf8')) as T;
}

async function pool<T>(items: readonly T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++];
      if (item !== undefined) await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, width) }, worker));
}

interface ReplayPlan {
  targets: TargetsFile;
  modelRepository: string;
  topK: number | undefined;
  dataset: PreparedDataset;
  bundleFingerprint: string | null;
  catalog: Set<string>;
  userIndex: Map<string, number>;
  /** Each replayed user's samples, by position. */
  byUser: Map<string, TargetSample[]>;
  users: string[];
}

type PlanOptions = Pick<ReplayOptions, 'datasetDir' | 'bundleDir' | 'targetsFile' | 'limitUsers' | 'log'>;

/** Reads the targets, bundle manifest and dataset, and checks that the dataset is the one evaluated. */
async function planReplay(options: PlanOptions): Promise<ReplayPlan> {
  const { log } = options;
  const targets = await readJson<TargetsFile>(options.targetsFile);
  const manifest = await readJson<{
    model_version?: string;
    model_repository: string;
    top_k?: number;
    training_data?: { fingerprint?: string };
    catalog: { item_id: string }[];
  }>(join(options.bundleDir, 'manifest.json'));
  log(`reading ${options.datasetDir}`);
  const dataset = await loadDataset(options.datasetDir);
  if (dataset.fingerprint !== targets.fingerprint) {
    throw new Error(
      `dataset fingerprint ${dataset.fingerprint} differs from the targets file's ${targets.fingerprint}: ` +
        'the replay would not stream what was evaluated',
    );
  }
  const bundleFingerprint = manifest.training_data?.fingerprint ?? null;
  if (bundleFingerprint !== null && bundleFingerprint !== targets.fingerprint) {
    log(`warning: bundle trained on ${bundleFingerprint}, targets are of ${targets.fingerprint}`);
  }
  const userIndex = new Map(dataset.users.map((u, i) => [u, i]));
  const byUser = new Map<string, TargetSample[]>();
  for (const sample of targets.samples) {
    const u = userIndex.get(sample.user_id);
    const item = u === undefined ? undefined : dataset.itemSeqs[u]?.[sample.pos];
    if (item !== sample.target_item_id) {
      throw new Error(
        `target (${sample.user_id}, ${sample.pos}) is ${String(item)} in the dataset, ${sample.target_item_id} in the targets file`,
      );
    }
    const list = byUser.get(sample.user_id) ?? [];
    list.push(sample);
    byUser.set(sample.user_id, list);
  }
  for (const list of byUser.values()) list.sort((a, b) => a.pos - b.pos);
  let users = [...byUser.keys()];
  if (options.limitUsers !== undefined) users = users.slice(0, options.limitUsers);
  return {
    targets,
    modelRepository: manifest.model_repository,
    topK: manifest.top_k,
    dataset,
    bundleFingerprint,
    catalog: new Set(manifest.catalog.map((c) => c.item_id)),
    userIndex,
    byUser,
    users,
  };
}

/** The events of `user` at positions [from, to), exactly as the replay sends them (ids `<user>:<position>`). */
function userEvents(
  plan: ReplayPlan,
  user: string,
  userPrefix: string,
  from: number,
  to: number,
): IngestEvent[] {
  const u = plan.userIndex.get(user) ?? -1;
  const items = plan.dataset.itemSeqs[u] ?? [];
  const times = plan.dataset.timeSeqs[u] ?? [];
  const events: IngestEvent[] = [];
  for (let p = from; p < to; p += 1) {
    events.push({
      event_id: `${user}:${p}`,
      user_id: `${userPrefix}${user}`,
      item_id: items[p] ?? '',
      timestamp_ms: (times[p] ?? 0) * 1000,
    });
  }
  return events;
}

/** Every replayed user's events before its first target: what `history` import/preloaded take from the import. */
function historyEvents(plan: ReplayPlan, userPrefix: string): IngestEvent[] {
  return plan.users.flatMap((user) =>
    userEvents(plan, user, userPrefix, 0, plan.byUser.get(user)?.[0]?.pos ?? 0),
  );
}

/** The import's CSV (`event_id,user_id,item_id,timestamp_ms`) of `events`. */
function importCsv(events: IngestEvent[]): string {
  const lines = ['event_id,user_id,item_id,timestamp_ms'];
  for (const e of events) {
    const fields = [e.event_id ?? '', e.user_id ?? '', e.item_id ?? '', String(e.timestamp_ms)];
    if (fields.some((f) => /[,\r\n]/.test(f)))
      throw new Error(
        `event ${fields[0]}: an id holds a comma or line break; the import's CSV cannot carry it`,
      );
    lines.push(fields.join(','));
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Writes the history the replay would ingest before each user's first target as the import's CSV (for
 * `npm run import -- --csv FILE` into a gateway's store, then a replay with `history: 'preloaded'` and the same
 * `userPrefix`).
 */
export async function writeHistoryCsv(
  options: PlanOptions & { userPrefix: string },
  file: string,
): Promise<{ users: number; events: number }> {
  const plan = await planReplay(options);
  const events = historyEvents(plan, options.userPrefix);
  await writeFile(file, importCsv(events));
  return { users: plan.users.length, events: events.length };
}

export async function runReplay(options: ReplayOptions): Promise<ReplayReport> {
  const started = Date.now();
  const { log } = options;
  const history = options.history ?? 'ingest';
  const plan = await planReplay(options);
  const { targets, dataset, catalog, byUser, users } = plan;
  const topN = Math.min(options.topN, plan.topK ?? options.topN);
  const excludeConsumed = options.excludeConsumed ?? targets.policy?.exclude_consumed ?? false;
  if (history === 'import' && options.address !== undefined)
    throw new Error(
      "history 'import' imports into the gateway the replay starts; for a running gateway, import writeHistoryCsv's file and use 'preloaded'",
    );
  const imported = history === 'ingest' ? [] : historyEvents(plan, options.userPrefix);
  let unknownItems = imported.filter((e) => !catalog.has(e.item_id ?? '')).length;

  const hosts: ServerHost[] = [];
  let dataDir: string | undefined;
  let address = options.address;
  try {
    if (address === undefined) {
      dataDir = await mkdtemp(join(tmpdir(), 'automr-replay-'));
      log('starting the local model server and a gateway on the bundle');
      const modelServer = await ServerHost.start('model-server', {
        repository: resolve(options.bundleDir, plan.modelRepository),
      });
      hosts.push(modelServer);
      const gatewayOptions = {
        modelServer: modelServer.address,
        dataDir,
        bundle: resolve(options.bundleDir),
        memoryStore: options.store,
        redisPrefix: options.redisPrefix ?? `automr-replay-${randomBytes(4).toString('hex')}`,
        ...(options.maxHistory === undefined ? {} : { maxHistory: options.maxHistory }),
      };
      if (history === 'import') {
        const file = join(dataDir, 'history.csv');
        await writeFile(file, importCsv(imported));
        log(
          `importing the history before the first target: ${imported.length} events of ${users.length} users`,
        );
        const summary = await runImport(
          defaultConfig(gatewayOptions),
          { source: csvSource(file) },
          silentLogger(),
        );
        if (summary.rejected > 0 || (summary.encodeFailedUsers ?? 0) > 0)
          throw new Error(
            `import: ${summary.rejected} rows rejected (${JSON.stringify(summary.rejections.slice(0, 3))}), ${String(summary.encodeFailedUsers)} users not encoded`,
          );
        log(
          `imported ${summary.accepted} events at ${summary.rawEventsPerSecond} events/s, ` +
            `encoded ${String(summary.encodedElements)} elements at ${String(summary.encodeElementsPerSecond)}/s`,
        );
      }
      const gateway = await ServerHost.start('gateway', { ...gatewayOptions, logLevel: 'error' });
      hosts.push(gateway);
      address = gateway.address;
    }
    const client = new RecommenderClient(address, { deadlineMs: 60_000 });
    await client.waitForReady();
    log(
      `replaying ${users.length} users, ${targets.samples.length} targets against ${address}` +
        ` (exclude_consumed ${excludeConsumed}, history ${history})`,
    );
    const request = {
      top_n: topN,
      memory_k: options.memoryK,
      exclude_consumed: excludeConsumed,
    };

    const servedRank = new Map<TargetSample, number>();
    let eventsIngested = 0;
    let waited = 0;
    let lagging = 0;
    let modelVersion: string | null = null;
    let done = 0;

    const recommendEncoded = async (userId: string): Promise<RecommendResult> => {
      const deadline = Date.now() + options.encodingWaitMs;
      let result = await client.recommend({ user_id: userId, ...request });
      if ((result.summary?.pending_encodings ?? 0) > 0) waited += 1;
      while ((result.summary?.pending_encodings ?? 0) > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        result = await client.recommend({ user_id: userId, ...request });
      }
      if ((result.summary?.pending_encodings ?? 0) > 0) lagging += 1;
      return result;
    };

    await pool(users, options.concurrency, async (user) => {
      const samples = byUser.get(user) ?? [];
      const servedUser = `${options.userPrefix}${user}`;
      // With an imported history, memory already holds everything before the first target.
      let ingested = history === 'ingest' ? 0 : (samples[0]?.pos ?? 0);
      for (const sample of samples) {
        const events = userEvents(plan, user, options.userPrefix, ingested, sample.pos);
        unknownItems += events.filter((e) => !catalog.has(e.item_id ?? '')).length;
        const acks = await client.ingest(events);
        const bad = acks.find((a) => a.status !== 'STATUS_ACCEPTED');
        if (bad !== undefined)
          throw new Error(`ingest of ${bad.event_id} answered ${bad.status}: ${bad.message}`);
        eventsIngested += events.length;
        ingested = sample.pos;
        const result = await recommendEncoded(servedUser);
        modelVersion ??= result.summary?.model_version ?? null;
        servedRank.set(
          sample,
          rankIn(
            result.items.map((i) => i.item_id),
            sample.target_item_id,
          ),
        );
      }
      done += 1;
      if (done % 100 === 0) log(`${done}/${users.length} users`);
    });
    client.close();

    const replayed = targets.samples.filter((s) => servedRank.has(s));
    const ranks = replayed.map((s) => servedRank.get(s) ?? topN);
    const served = summarizeRanks(ranks);
    const comparison = compareWithOffline(served, targets.automr_row);
    const partial = options.limitUsers !== undefined;
    const agreement = rankAgreement(
      ranks,
      replayed.map((s) => s.automr_rank),
      topN,
    );
    const agreementShare = agreement.samples === 0 ? 0 : agreement.sameRank / agreement.samples;
    const allWithin = !partial && comparison.every((c) => c.within !== false);
    return {
      dataset: targets.dataset,
      fingerprint: dataset.fingerprint,
      bundle_fingerprint: plan.bundleFingerprint,
      model_version: modelVersion,
      samples: replayed.length,
      users: users.length,
      events_ingested: eventsIngested,
      history,
      events_imported: imported.length,
      exclude_consumed: excludeConsumed,
      served,
      comparison,
      all_within: allWithin,
      agreement_share: Math.round(agreementShare * 10_000) / 10_000,
      agreement_ok: agreementShare >= options.minAgreement,
      parity: allWithin && agreementShare >= options.minAgreement,
      agreement,
      ranks: replayed.map((s, i) => ({
        user_id: s.user_id,
        pos: s.pos,
        served: ranks[i] ?? topN,
        offline: s.automr_rank,
      })),
      recommends_waiting_for_encoding: waited,
      recommends_still_lagging: lagging,
      unknown_items: unknownItems,
      wall_s: Math.round((Date.now() - started) / 100) / 10,
    };
  } finally {
    for (const host of hosts.reverse()) await host.stop().catch(() => undefined);
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  }
}

export function renderReplay(report: ReplayReport): string {
  const f = (v: number): string => v.toFixed(4);
  const lines = [
    `## Served-path replay: ${report.dataset} (${report.samples} targets, ${report.users} users, ${report.events_ingested} events ingested` +
      (report.history === 'ingest'
        ? ''
        : ` after ${report.events_imported} of history by the bulk import (${report.history})`) +
      `, ${report.wall_s} s, exclude_consumed ${report.exclude_consumed})`,
    '',
    '| metric | served | offline automr | offline 95% CI | within |',
    '| --- | --- | --- | --- | --- |',
    ...report.comparison.map(
      (c) =>
        `| ${c.metric} | ${f(c.served)} | ${f(c.offline)} | ${c.ci95 === null ? 'n/a' : `[${f(c.ci95[0])}, ${f(c.ci95[1])}]`} | ${c.within === null ? 'n/a' : c.within ? 'yes' : 'NO'} |`,
    ),
    '',
    `per-sample agreement with the offline automr ranks: same rank ${report.agreement.sameRank}/${report.agreement.samples}, ` +
      `same hit@1 ${report.agreement.sameHit1}, same hit@10 ${report.agreement.sameHit10}`,
    `Recommends that waited for encodings: ${report.recommends_waiting_for_encoding}; still lagging: ${report.recommends_still_lagging}; unknown items: ${report.unknown_items}`,
    `model_version ${String(report.model_version)}; dataset fingerprint ${report.fingerprint}; bundle trained on ${String(report.bundle_fingerprint)}`,
    report.all_within
      ? 'PARITY: every metric within the offline interval'
      : 'NO PARITY (or partial replay): see the table',
  ];
  return lines.join('\n');
}
