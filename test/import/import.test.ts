/**
 * Bulk import on synthetic data: the memory it builds equals, event for event and vector for vector, what the same
 * rows sent through gRPC Ingest build (history cap, late events, duplicates, a bad row included); and an import
 * killed with SIGKILL mid-way resumes from its state file and stores every row exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LmdbMemoryStore } from '../../src/gateway/adapters/lmdb-store.js';
import { TritonModelServer } from '../../src/gateway/adapters/triton-model-server.js';
import { loadBundle } from '../../src/gateway/bundle.js';
import { defaultConfig } from '../../src/gateway/config.js';
import { retainedEntries } from '../../src/gateway/domain/memory.js';
import type { StoredEntry } from '../../src/gateway/domain/ports.js';
import { createIngest } from '../../src/gateway/ingest-wiring.js';
import { startGateway } from '../../src/gateway/server.js';
import { encodeUsers, importRaw } from '../../src/import/importer.js';
import { csvSource } from '../../src/import/rows.js';
import { startModelServer } from '../../src/model-server/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import { BUNDLE_DIR, client, ingest, MODELS_DIR, REPO, tempDir } from '../gateway/helpers.js';

interface Row {
  event_id: string;
  user_id: string;
  item_id: string;
  timestamp_ms: number;
}

/** Users with 5..150 events (beyond the 100 + 9 kept), some late, some resent, one bad row. */
async function syntheticRows(): Promise<Row[]> {
  const bundle = await loadBundle(BUNDLE_DIR);
  const items = bundle.catalog.map((c) => c.itemId);
  const rows: Row[] = [];
  for (let u = 0; u < 10; u++) {
    const n = 5 + u * 16;
    for (let i = 0; i < n; i++) {
      const late = i % 11 === 5 ? -40_000 : 0;
      rows.push({
        event_id: `u${u}-e${i}`,
        user_id: `user-${u}`,
        item_id: i % 17 === 3 ? 'not-in-catalog' : (items[(u * 7 + i * 3) % items.length] as string),
        timestamp_ms: 1_700_000_000_000 + i * 1_000 + late,
      });
      if (i % 13 === 4) rows.push({ ...(rows[rows.length - 1] as Row) });
    }
  }
  // Interleave users as a live stream would.
  rows.sort((a, b) => a.timestamp_ms - b.timestamp_ms || a.user_id.localeCompare(b.user_id));
  rows.splice(7, 0, { event_id: 'bad', user_id: '', item_id: 'x', timestamp_ms: 1 });
  return rows;
}

function writeCsv(file: string, rows: Row[]): void {
  const lines = ['event_id,user_id,item_id,timestamp_ms'];
  for (const r of rows) lines.push([r.event_id, r.user_id, r.item_id, r.timestamp_ms].join(','));
  writeFileSync(file, lines.join('\n') + '\n');
}

async function readAll(dir: string, users: string[]): Promise<Map<string, readonly StoredEntry[]>> {
  const store = new LmdbMemoryStore(dir, { cachedUsers: 0 });
  try {
    const out = new Map<string, readonly StoredEntry[]>();
    for (const u of users) out.set(u, await store.read(u));
    return out;
  } finally {
    await store.close();
  }
}

async function consumedAll(dir: string, users: string[]): Promise<Map<string, string[]>> {
  const store = new LmdbMemoryStore(dir, { cachedUsers: 0 });
  try {
    const out = new Map<string, string[]>();
    for (const u of users) out.set(u, [...(await store.consumed(u))].sort());
    return out;
  } finally {
    await store.close();
  }
}

void test('import equals Ingest event for event and vector for vector', async () => {
  const rows = await syntheticRows();
  const users = [...new Set(rows.map((r) => r.user_id).filter((u) => u !== ''))];
  const modelServer = await startModelServer({ repository: MODELS_DIR, address: '127.0.0.1:0' });
  const viaIngest = tempDir('automr-import-ingest-');
  const viaImport = tempDir('automr-import-bulk-');
  try {
    const config = defaultConfig({
      addr: '127.0.0.1:0',
      dataDir: viaIngest,
      modelServer: modelServer.address,
      bundle: BUNDLE_DIR,
      metricsPort: 0,
    });
    const gateway = await startGateway(config, { logger: silentLogger() });
    const c = client(gateway.address);
    const { acks, error } = await ingest(c, rows);
    assert.equal(error, undefined);
    assert.equal(acks.length, rows.length);
    await gateway.encoder.idle();
    c.close();
    await gateway.close();

    const bundle = await loadBundle(BUNDLE_DIR);
    const store = new LmdbMemoryStore(viaImport);
    const triton = new TritonModelServer({ address: modelServer.address, bundle });
    const wiring = createIngest(
      { ...config, dataDir: viaImport },
      { store, modelServer: triton, bundle, logger: silentLogger() },
    );
    const file = path.join(viaImport, 'rows.csv');
    writeCsv(file, rows);
    const raw = await importRaw({
      source: csvSource(file),
      store,
      bundle,
      limits: wiring.limits,
      maxHistory: config.maxHistory,
      historyContext: retainedEntries(wiring.model) - wiring.model.maxHistory,
      statePath: path.join(viaImport, 'state.json'),
      batchRows: 64,
    });
    assert.equal(raw.state.rejected, 1);
    assert.equal(raw.state.accepted + raw.state.duplicates + raw.state.rejected, rows.length);
    const encoded = await encodeUsers({ encoder: wiring.encoder, users: raw.users });
    assert.equal(encoded.failed, 0);
    await wiring.encoder.stop(0);
    await store.close();
    triton.close();

    const a = await readAll(viaIngest, users);
    const b = await readAll(viaImport, users);
    let vectors = 0;
    for (const u of users) {
      const ea = a.get(u) ?? [];
      const eb = b.get(u) ?? [];
      // Raw entries (window context included) are equal; encodings are compared over the history view (the
      // newest maxHistory): Ingest may have encoded an entry that later became window context only, never used.
      const plain = (e: StoredEntry) => [e.eventId, e.itemId, e.token, e.timestampMs, e.seq];
      assert.deepEqual(eb.map(plain), ea.map(plain), `${u}: entries differ`);
      for (let i = Math.max(0, ea.length - config.maxHistory); i < ea.length; i++) {
        assert.equal(eb[i]?.encKey, ea[i]?.encKey, `${u}[${i}]: encoding keys differ`);
        const va = ea[i]?.vector;
        const vb = eb[i]?.vector;
        assert.equal(vb === undefined, va === undefined, `${u}[${i}]: encoded in one path only`);
        if (va === undefined || vb === undefined) continue;
        vectors++;
        const diff = Math.max(...va.map((x, k) => Math.abs(x - (vb[k] as number))));
        assert.ok(diff <= 1e-5, `${u}[${i}]: vectors differ by ${diff}`);
      }
    }
    assert.deepEqual(
      await consumedAll(viaImport, users),
      await consumedAll(viaIngest, users),
      'consumed sets',
    );
    assert.ok(vectors > 500, `only ${vectors} vectors compared`);
  } finally {
    await modelServer.close();
    rmSync(viaIngest, { recursive: true, force: true });
    rmSync(viaImport, { recursive: true, force: true });
  }
});

void test('an import killed mid-way resumes from its state file and stores every row once', async () => {
  const dir = tempDir('automr-import-resume-');
  try {
    const rows: Row[] = [];
    for (let i = 0; i < 6_000; i++) {
      rows.push({
        event_id: `e${i}`,
        user_id: `u${i % 50}`,
        item_id: 'i1',
        timestamp_ms: 1_600_000_000_000 + i,
      });
    }
    const file = path.join(dir, 'rows.csv');
    writeCsv(file, rows);
    const statePath = path.join(dir, 'state.json');
    const run = () =>
      spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          path.join(REPO, 'src/cli/import.ts'),
          '--csv',
          file,
          '--state',
          statePath,
          '--no-encode',
          '--batch',
          '50',
          '--data-dir',
          path.join(dir, 'data'),
          '--max-history',
          '10000',
        ],
        { cwd: REPO, stdio: ['ignore', 'pipe', 'ignore'] },
      );
    const first = run();
    const deadline = Date.now() + 60_000;
    while (!(
      existsSync(statePath) && (JSON.parse(readFileSync(statePath, 'utf8')) as { rows: number }).rows > 0
    )) {
      assert.ok(Date.now() < deadline, 'the first run made no progress');
      await new Promise((r) => setTimeout(r, 20));
    }
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    const stopped = JSON.parse(readFileSync(statePath, 'utf8')) as { rows: number; done: boolean };
    assert.equal(stopped.done, false, 'killed before the end');

    const second = run();
    let out = '';
    second.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise((r) => second.once('exit', r));
    assert.equal(code, 0);
    const summary = JSON.parse(out) as { resumedFrom: number; rows: number };
    assert.ok(summary.resumedFrom >= stopped.rows && summary.resumedFrom > 0, 'resumed, not restarted');
    assert.equal(summary.rows, rows.length);

    const stored = await readAll(path.join(dir, 'data'), [...new Set(rows.map((r) => r.user_id))]);
    for (const [u, entries] of stored) {
      const ids = entries.map((e) => e.eventId);
      assert.equal(new Set(ids).size, ids.length, `${u}: a row stored twice`);
      assert.deepEqual(
        new Set(ids),
        new Set(rows.filter((r) => r.user_id === u).map((r) => r.event_id)),
        `${u}: rows lost`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
