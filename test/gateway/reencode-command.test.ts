/**
 * `npm run reencode`: the real command (src/cli/reencode.ts) re-encodes every user of a store for a new bundle
 * ahead of a cut-over, at the configured rate, with progress on stderr.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { LmdbMemoryStore } from '../../src/gateway/adapters/lmdb-store.js';
import { encKeyOf, windowTokens } from '../../src/gateway/domain/memory.js';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import { bundleWithVersion, ingest, REPO, startStack, type Stack, waitFor } from './helpers.js';

const USERS = 6;
let stack: Stack;
let bundle2Dir: string;
/** The new version's models (the command refuses a model server that serves another version). */
let modelServer2: RunningModelServer;

before(async () => {
  stack = await startStack('automr-reenc-cmd-');
  bundle2Dir = bundleWithVersion('cutover-v2', { ownRepository: true });
  modelServer2 = await startModelServer({
    repository: path.join(bundle2Dir, 'triton-models'),
    address: '127.0.0.1:0',
    logger: silentLogger(),
  });
  const catalog = stack.gateway.bundle.catalog;
  for (let u = 0; u < USERS; u++) {
    const events = Array.from({ length: 12 }, (_, i) => ({
      event_id: `c${i}`,
      user_id: `cmd-user-${u}`,
      item_id: catalog[(u * 13 + i * 7) % catalog.length]!.itemId,
      timestamp_ms: 1_700_000_000_000 + i,
    }));
    assert.equal((await ingest(stack.client, events)).acks.length, 12);
  }
  await waitFor(() => Promise.resolve(stack.gateway.encoder.backlog() === 0), 10_000, 'v1 encoding');
  // The store is the command's now (LMDB is one process's); the model server stays up.
  stack.client.close();
  await stack.gateway.close();
});

after(async () => {
  await stack.modelServer.close();
  await modelServer2.close();
  rmSync(stack.dataDir, { recursive: true, force: true });
  rmSync(bundle2Dir, { recursive: true, force: true });
});

function runCommand(): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/reencode.ts')], {
    cwd: REPO,
    env: {
      ...process.env,
      AUTOMR_DATA_DIR: stack.dataDir,
      AUTOMR_BUNDLE: bundle2Dir,
      AUTOMR_MODEL_SERVER: modelServer2.address,
      AUTOMR_REENCODE_RATE: '10',
      AUTOMR_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve) =>
    child.on('exit', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started })),
  );
}

void test('reencode encodes every user for the new version at the configured rate', async () => {
  const first = await runCommand();
  assert.equal(first.code, 0, first.stderr);
  assert.match(
    first.stdout,
    new RegExp(`re-encoded ${USERS} of ${USERS} users for model version cutover-v2`),
  );
  assert.match(first.stderr, new RegExp(`reencode .* ${USERS}/${USERS} users`), 'progress is shown');
  // 10 users per second: the 6th user starts no sooner than 0.5 s after the first.
  assert.ok(first.ms >= 500, `rate limit held (${first.ms} ms)`);

  const store = new LmdbMemoryStore(stack.dataDir);
  try {
    for (let u = 0; u < USERS; u++) {
      const entries = await store.read(`cmd-user-${u}`);
      assert.equal(entries.length, 12);
      entries.forEach((e, i) => assert.equal(e.encKey, encKeyOf('cutover-v2', windowTokens(entries, i, 10))));
    }
  } finally {
    await store.close();
  }
});
