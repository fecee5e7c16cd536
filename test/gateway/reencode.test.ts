/**
 * Bundle version change: elements encoded by another model version are never used; they are re-encoded from raw
 * history in the background while Recommend reports the lag. Late events re-encode the windows they change.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { defaultConfig } from '../../src/gateway/config.js';
import { startGateway } from '../../src/gateway/server.js';
import { loadBundle } from '../../src/gateway/bundle.js';
import { LmdbMemoryStore } from '../../src/gateway/adapters/lmdb-store.js';
import { TritonModelServer } from '../../src/gateway/adapters/triton-model-server.js';
import { encKeyOf, windowTokens } from '../../src/gateway/domain/memory.js';
import { silentLogger } from '../../src/shared/logger.js';
import { AppError } from '../../src/shared/errors.js';
import {
  BUNDLE_DIR,
  bundleWithVersion,
  client,
  ingest,
  MODELS_DIR,
  recommend,
  tempDir,
  waitFor,
} from './helpers.js';

let modelServer: RunningModelServer;
/** Serves version 2's models (a gateway is not served by models of another version). */
let modelServer2: RunningModelServer;
let dataDir: string;
let bundle2Dir: string;

before(async () => {
  modelServer = await startModelServer({
    repository: MODELS_DIR,
    address: '127.0.0.1:0',
    logger: silentLogger(),
  });
  dataDir = tempDir('automr-reenc-');
  bundle2Dir = bundleWithVersion('test-version-2', { ownRepository: true });
  modelServer2 = await startModelServer({
    repository: path.join(bundle2Dir, 'triton-models'),
    address: '127.0.0.1:0',
    logger: silentLogger(),
  });
});

after(async () => {
  await modelServer.close();
  await modelServer2.close();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(bundle2Dir, { recursive: true, force: true });
});

void test('a bundle change re-encodes stale elements in the background and never mixes versions', async () => {
  const config = defaultConfig({
    addr: '127.0.0.1:0',
    dataDir,
    modelServer: modelServer.address,
    metricsPort: 0,
    encodeWaitMs: 100,
  });
  const user = 'reenc-user';

  // Version 1 encodes the history.
  const gw1 = await startGateway({ ...config, bundle: BUNDLE_DIR }, { logger: silentLogger() });
  const c1 = client(gw1.address);
  const catalog = gw1.bundle.catalog;
  const events = Array.from({ length: 25 }, (_, i) => ({
    event_id: `r${i}`,
    user_id: user,
    item_id: catalog[(i * 11) % catalog.length]!.itemId,
    timestamp_ms: 1_700_000_000_000 + i * 10,
  }));
  assert.equal((await ingest(c1, events)).acks.length, 25);
  await waitFor(() => Promise.resolve(gw1.encoder.backlog() === 0), 10_000, 'v1 encoding');
  c1.close();
  await gw1.close();

  // Version 2: the background encoder is held back (batches > 1 prompt wait) to observe the lag.
  const bundle2 = await loadBundle(bundle2Dir);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const triton = new TritonModelServer({ address: modelServer2.address, bundle: bundle2 });
  const gated = {
    ready: (s?: AbortSignal) => triton.ready(s),
    encode: async (prompts: number[][], s?: AbortSignal) => {
      if (prompts.length > 1) await gate;
      return triton.encode(prompts, s);
    },
    recommend: (p: number[], m: Float32Array[], x: Uint8Array, s?: AbortSignal) =>
      triton.recommend(p, m, x, s),
    close: () => triton.close(),
  };
  const store = new LmdbMemoryStore(dataDir);
  const gw2 = await startGateway(
    { ...config, bundle: bundle2Dir },
    { logger: silentLogger(), store, modelServer: gated, bundle: bundle2 },
  );
  const c2 = client(gw2.address);
  const getMemory = () => c2.getMemory(user);
  try {
    assert.ok(
      (await getMemory()).every((e) => !e.encoded),
      'v1 encodings do not count as encoded for v2',
    );
    const lagging = await recommend(c2, user, 10, 2);
    assert.equal(lagging.error, undefined);
    assert.equal(lagging.items.length, 10);
    assert.equal(lagging.summary?.encoding_lagging, true);
    assert.equal(lagging.summary?.pending_encodings, 25);
    assert.equal(lagging.summary?.memory_size, 0, 'no v1 element is used as memory');
    assert.deepEqual(lagging.summary?.retrieved, []);
    assert.equal(lagging.summary?.model_version, 'test-version-2');

    release();
    await waitFor(async () => (await getMemory()).every((e) => e.encoded), 10_000, 'v2 re-encoding');
    const entries = await store.read(user);
    entries.forEach((e, i) =>
      assert.equal(e.encKey, encKeyOf('test-version-2', windowTokens(entries, i, bundle2.window))),
    );
    const caughtUp = await recommend(c2, user, 10, 2);
    assert.equal(caughtUp.summary?.encoding_lagging, false);
    assert.equal(caughtUp.summary?.memory_size, 25 - bundle2.window);
    assert.equal(caughtUp.summary?.retrieved.length, 2);

    // A late event lands in timestamp order and re-encodes exactly the windows it changes.
    const late = {
      event_id: 'late',
      user_id: user,
      item_id: catalog[5]!.itemId,
      timestamp_ms: 1_700_000_000_000 + 55,
    };
    assert.equal((await ingest(c2, [late])).acks[0]?.status, 'STATUS_ACCEPTED');
    await waitFor(async () => (await getMemory()).every((e) => e.encoded), 10_000, 'late-event re-encoding');
    const after = await store.read(user);
    assert.equal(after[6]?.eventId, 'late');
    after.forEach((e, i) =>
      assert.equal(e.encKey, encKeyOf('test-version-2', windowTokens(after, i, bundle2.window))),
    );
  } finally {
    c2.close();
    await gw2.close();
  }
});

void test('encoding failures are retried and never lose an event', async () => {
  const bundle = await loadBundle(BUNDLE_DIR);
  const triton = new TritonModelServer({ address: modelServer.address, bundle });
  let failures = 0;
  const flaky = {
    ready: (s?: AbortSignal) => triton.ready(s),
    encode: (prompts: number[][], s?: AbortSignal) => {
      if (failures < 3) {
        failures++;
        return Promise.reject(new AppError('UNAVAILABLE', 'model server restarting', { retryable: true }));
      }
      return triton.encode(prompts, s);
    },
    recommend: (p: number[], m: Float32Array[], x: Uint8Array, s?: AbortSignal) =>
      triton.recommend(p, m, x, s),
    close: () => triton.close(),
  };
  const dir = tempDir('automr-flaky-');
  const gw = await startGateway(
    defaultConfig({ addr: '127.0.0.1:0', dataDir: dir, bundle: BUNDLE_DIR, metricsPort: 0 }),
    { logger: silentLogger(), modelServer: flaky, bundle },
  );
  const c = client(gw.address);
  try {
    const events = Array.from({ length: 12 }, (_, i) => ({
      event_id: `f${i}`,
      user_id: 'flaky-user',
      item_id: bundle.catalog[i]!.itemId,
      timestamp_ms: 1_700_000_000_000 + i,
    }));
    const { acks } = await ingest(c, events);
    assert.ok(
      acks.length === 12 && acks.every((a) => a.status === 'STATUS_ACCEPTED'),
      'acks do not wait for encoding',
    );
    const mem = () => c.getMemory('flaky-user');
    await waitFor(async () => (await mem()).every((e) => e.encoded), 15_000, 'encoding after retries');
    assert.equal(failures, 3);
    assert.equal((await mem()).length, 12);
  } finally {
    c.close();
    await gw.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
