/**
 * The replay with each user's history before the first target loaded by the bulk import (`history: 'import'`)
 * serves every sample the same rank as the replay that sends everything through Ingest, on a synthetic dataset
 * over the committed bundle's catalog (real model server and gateway, started by the replay); and so does the
 * manual flow: the history file imported (`npm run import -- --csv`'s path) into a gateway's store, then a replay
 * against that running gateway with `history: 'preloaded'`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadBundle } from '../../src/gateway/bundle.js';
import { defaultConfig } from '../../src/gateway/config.js';
import { startGateway } from '../../src/gateway/server.js';
import { csvSource } from '../../src/import/rows.js';
import { runImport } from '../../src/import/run.js';
import { startModelServer } from '../../src/model-server/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import { loadDataset } from '../../src/replay/dataset.js';
import { runReplay, writeHistoryCsv, type ReplayOptions, type TargetsFile } from '../../src/replay/replay.js';
import { BUNDLE_DIR, MODELS_DIR, tempDir } from '../gateway/helpers.js';

const USERS = 16;
const EVENTS_PER_USER = 40;
/** Target positions of every user: the history before 30 is imported, the events between targets ingested. */
const TARGET_POSITIONS = [30, 34, 38];

/** A deterministic stream of users × events over 50 catalog items (each item seen ≥ 5 times: the k-core keeps all). */
async function writeSyntheticDataset(dir: string): Promise<void> {
  const items = (await loadBundle(BUNDLE_DIR)).catalog.slice(0, 50).map((c) => c.itemId);
  let state = 12345;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31);
  const lines = ['user,item,timestamp'];
  for (let u = 0; u < USERS; u++) {
    // Each user drifts through the catalog, so histories differ and memory has something to retrieve.
    for (let p = 0; p < EVENTS_PER_USER; p++) {
      const item = items[(u * 3 + p + (next() % 7)) % items.length] as string;
      lines.push(`${100 + u},${item},${1_600_000_000 + p * 3_600 + u * 7}`);
    }
  }
  writeFileSync(path.join(dir, 'interactions.csv'), `${lines.join('\n')}\n`);
}

async function writeTargets(dir: string): Promise<string> {
  const dataset = await loadDataset(dir);
  const samples = dataset.users.flatMap((user, u) =>
    TARGET_POSITIONS.map((pos) => ({
      user_id: user,
      pos,
      target_item_id: dataset.itemSeqs[u]?.[pos] ?? '',
      timestamp: dataset.timeSeqs[u]?.[pos] ?? 0,
      automr_rank: 0,
    })),
  );
  const targets: TargetsFile = {
    dataset: 'synthetic-replay',
    fingerprint: dataset.fingerprint,
    policy: { exclude_consumed: true },
    automr_row: { method: 'automr', n: samples.length, ci95: {} },
    samples,
  };
  const file = path.join(dir, 'targets.json');
  writeFileSync(file, JSON.stringify(targets));
  return file;
}

void test('a replay after a bulk import of the history serves the same rank per sample as one through Ingest', async () => {
  const dir = tempDir('automr-replay-import-');
  try {
    await writeSyntheticDataset(dir);
    const targetsFile = await writeTargets(dir);
    const options: ReplayOptions = {
      datasetDir: dir,
      bundleDir: BUNDLE_DIR,
      targetsFile,
      store: 'lmdb',
      concurrency: 4,
      topN: 100,
      memoryK: 1,
      userPrefix: 'syn-',
      minAgreement: 0,
      encodingWaitMs: 60_000,
      log: () => undefined,
    };

    const csv = path.join(dir, 'history.csv');
    const written = await writeHistoryCsv(options, csv);
    const rows = readFileSync(csv, 'utf8').trim().split('\n');
    assert.equal(rows[0], 'event_id,user_id,item_id,timestamp_ms');
    assert.equal(written.events, USERS * (TARGET_POSITIONS[0] as number));
    assert.equal(rows.length, written.events + 1);
    assert.match(rows[1] ?? '', /^100:0,syn-100,\d{3},1600000000000$/);

    const viaIngest = await runReplay({ ...options, history: 'ingest' });
    const viaImport = await runReplay({ ...options, history: 'import' });

    assert.equal(viaIngest.samples, USERS * TARGET_POSITIONS.length);
    assert.equal(viaImport.events_imported, written.events);
    assert.equal(viaIngest.events_imported, 0);
    assert.equal(viaImport.events_ingested + viaImport.events_imported, viaIngest.events_ingested);
    for (const report of [viaIngest, viaImport])
      assert.equal(report.recommends_still_lagging, 0, `${report.history}: a Recommend ran before encoding`);
    assert.ok(
      new Set(viaIngest.ranks.map((r) => r.served)).size > 3,
      'the served ranks vary from sample to sample (the comparison means something)',
    );
    assert.deepEqual(viaImport.ranks, viaIngest.ranks);
    assert.deepEqual(viaImport.served, viaIngest.served);

    const modelServer = await startModelServer({ repository: MODELS_DIR, address: '127.0.0.1:0' });
    try {
      const config = defaultConfig({
        addr: '127.0.0.1:0',
        dataDir: path.join(dir, 'preloaded'),
        modelServer: modelServer.address,
        bundle: BUNDLE_DIR,
        metricsPort: 0,
      });
      const imported = await runImport(config, { source: csvSource(csv) }, silentLogger());
      assert.equal(imported.accepted, written.events);
      const gateway = await startGateway(config, { logger: silentLogger() });
      try {
        const preloaded = await runReplay({ ...options, address: gateway.address, history: 'preloaded' });
        assert.equal(preloaded.events_ingested, viaImport.events_ingested);
        assert.deepEqual(preloaded.ranks, viaIngest.ranks);
      } finally {
        await gateway.close();
      }
    } finally {
      await modelServer.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
