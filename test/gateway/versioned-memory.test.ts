/**
 * Versioned memory on one Redis (127.0.0.1:6379, unique prefix): encodings are kept per model version, so the
 * gateways of two bundle versions during a rolling update each keep their own vectors and neither re-encodes what
 * the other wrote; a version nobody writes any more is dropped after the grace period; re-encoding is lazy.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { RedisMemoryStore } from '../../src/gateway/adapters/redis-store.js';
import { TritonModelServer } from '../../src/gateway/adapters/triton-model-server.js';
import { loadBundle, type Bundle } from '../../src/gateway/bundle.js';
import { defaultConfig } from '../../src/gateway/config.js';
import type { ModelServer, NewEvent } from '../../src/gateway/domain/ports.js';
import { startGateway, type RunningGateway } from '../../src/gateway/server.js';
import { startModelServer, type RunningModelServer } from '../../src/model-server/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import { BUNDLE_DIR, bundleWithVersion, client, ingest, MODELS_DIR, recommend, waitFor } from './helpers.js';

const REDIS_URL = process.env.AUTOMR_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `automr-vm-${process.pid}-${Date.now()}`;
let redis: Redis;
let modelServer: RunningModelServer;
/** The new version's models: each gateway's model server serves its own bundle's version (as in a rollout). */
let modelServer2: RunningModelServer;
let bundle2Dir: string;

before(async () => {
  redis = new Redis(REDIS_URL);
  modelServer = await startModelServer({
    repository: MODELS_DIR,
    address: '127.0.0.1:0',
    logger: silentLogger(),
  });
  bundle2Dir = bundleWithVersion('rollout-v2', { ownRepository: true });
  modelServer2 = await startModelServer({
    repository: path.join(bundle2Dir, 'triton-models'),
    address: '127.0.0.1:0',
    logger: silentLogger(),
  });
});

after(async () => {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
  redis.disconnect();
  await modelServer.close();
  await modelServer2.close();
  rmSync(bundle2Dir, { recursive: true, force: true });
});

const ev = (userId: string, n: number): NewEvent => ({
  userId,
  eventId: `e${n}`,
  itemId: `item-${n}`,
  token: 3 + n,
  timestampMs: 1_000 + n,
});

/** Stores fail fast (no offline queue): wait until their connections are up. */
const connected = (...stores: RedisMemoryStore[]) =>
  Promise.all(stores.map((s) => waitFor(() => s.ready(), 5_000, 'redis connection')));

void test('store: each version reads its own encodings; trims and ForgetUser reach every version', async () => {
  const prefix = `${PREFIX}-store`;
  const a = new RedisMemoryStore({ url: REDIS_URL, prefix, modelVersion: 'A' });
  const b = new RedisMemoryStore({ url: REDIS_URL, prefix, modelVersion: 'B' });
  try {
    await connected(a, b);
    for (let i = 0; i < 3; i++) await a.append(ev('u', i), 3);
    const entries = await a.read('u');
    const put = (store: RedisMemoryStore, version: string, value: number) =>
      store.putVectors(
        'u',
        entries.map((e) => ({
          seq: e.seq,
          timestampMs: e.timestampMs,
          encKey: `${version}|${e.token}`,
          vector: new Float32Array([value, e.seq]),
        })),
      );
    await put(a, 'A', 1);
    await put(b, 'B', 2);
    const readA = await a.read('u');
    const readB = await b.read('u');
    assert.deepEqual(
      readA.map((e) => [e.encKey, e.vector?.[0]]),
      entries.map((e) => [`A|${e.token}`, 1]),
    );
    assert.deepEqual(
      readB.map((e) => [e.encKey, e.vector?.[0]]),
      entries.map((e) => [`B|${e.token}`, 2]),
      'B did not overwrite A, nor A B',
    );
    assert.deepEqual(
      (await b.readTail('u', 0, 0)).map((e) => e.encKey),
      entries.map((e) => `B|${e.token}`),
    );

    // The append that trims the oldest entry removes its encodings in both versions.
    await b.append(ev('u', 3), 3);
    const base = `${prefix}:{u:u}`;
    assert.equal(await redis.hlen(`${base}:v:A`), 2);
    assert.equal(await redis.hlen(`${base}:v:B`), 2);

    assert.equal(await a.forget('u'), 3);
    assert.deepEqual(await redis.keys(`${prefix}:*`), [], 'no version left behind');
  } finally {
    await a.close();
    await b.close();
  }
});

void test('store: a version not written within the grace period is dropped by the next write of another', async () => {
  const prefix = `${PREFIX}-grace`;
  const old = new RedisMemoryStore({ url: REDIS_URL, prefix, modelVersion: 'old', vectorGraceMs: 200 });
  const cur = new RedisMemoryStore({ url: REDIS_URL, prefix, modelVersion: 'new', vectorGraceMs: 200 });
  const base = `${prefix}:{u:g}`;
  try {
    await connected(old, cur);
    await old.append(ev('g', 1), 10);
    const [e] = await old.read('g');
    const update = (version: string) => [
      { seq: e!.seq, timestampMs: e!.timestampMs, encKey: `${version}|4`, vector: new Float32Array([1]) },
    ];
    await old.putVectors('g', update('old'));
    await cur.putVectors('g', update('new'));
    assert.equal(await redis.exists(`${base}:v:old`), 1, 'within the grace both versions are kept');
    await new Promise((r) => setTimeout(r, 300));
    await cur.putVectors('g', update('new'));
    assert.equal(await redis.exists(`${base}:v:old`), 0, 'dropped after the grace');
    assert.deepEqual(await redis.hkeys(`${base}:vv`), ['new']);
    assert.equal((await cur.read('g'))[0]?.encKey, 'new|4');
  } finally {
    await old.forget('g');
    await old.close();
    await cur.close();
  }
});

/** The real model server behind a counter of encoded prompts. */
function counting(bundle: Bundle, address: string): { server: ModelServer; prompts: () => number } {
  const triton = new TritonModelServer({ address, bundle });
  let prompts = 0;
  return {
    prompts: () => prompts,
    server: {
      ready: (s) => triton.ready(s),
      encode: (p, s) => {
        prompts += p.length;
        return triton.encode(p, s);
      },
      recommend: (p, m, s) => triton.recommend(p, m, s),
      close: () => triton.close(),
    },
  };
}

void test('two gateways of different bundle versions on one Redis do not thrash each other', async () => {
  const prefix = `${PREFIX}-gw`;
  const config = defaultConfig({
    addr: '127.0.0.1:0',
    memoryStore: REDIS_URL,
    redisPrefix: prefix,
    modelServer: modelServer.address,
    metricsPort: 0,
    encodeWaitMs: 5_000,
    reencodeRate: 1000,
  });
  const bundle1 = await loadBundle(BUNDLE_DIR);
  const bundle2 = await loadBundle(bundle2Dir);
  const m1 = counting(bundle1, modelServer.address);
  const m2 = counting(bundle2, modelServer2.address);
  const user = 'rollout-user';
  const catalog = bundle1.catalog;
  const event = (i: number) => ({
    event_id: `r${i}`,
    user_id: user,
    item_id: catalog[(i * 11) % catalog.length]!.itemId,
    timestamp_ms: 1_700_000_000_000 + i * 10,
  });
  let gw1: RunningGateway | undefined;
  let gw2: RunningGateway | undefined;
  try {
    gw1 = await startGateway(
      { ...config, bundle: BUNDLE_DIR },
      { logger: silentLogger(), modelServer: m1.server, bundle: bundle1 },
    );
    const c1 = client(gw1.address);
    assert.equal(
      (
        await ingest(
          c1,
          Array.from({ length: 25 }, (_, i) => event(i)),
        )
      ).acks.length,
      25,
    );
    await waitFor(() => Promise.resolve(gw1!.encoder.backlog() === 0), 10_000, 'v1 encoding');
    assert.equal(m1.prompts(), 25);

    // The new version starts over the same store: no scan at start-up, nothing encoded until the user is seen.
    gw2 = await startGateway(
      { ...config, bundle: bundle2Dir },
      { logger: silentLogger(), modelServer: m2.server, bundle: bundle2 },
    );
    const c2 = client(gw2.address);
    const memory = (c: typeof c1) => c.getMemory(user);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(m2.prompts(), 0, 'start-up encodes nothing');
    assert.ok((await memory(c2)).every((e) => !e.encoded));

    // An append through v2 finds v1 encodings before it and re-encodes the user in the background (lazy).
    assert.equal((await ingest(c2, [event(25)])).acks[0]?.status, 'STATUS_ACCEPTED');
    await waitFor(async () => (await memory(c2)).every((e) => e.encoded), 10_000, 'lazy v2 re-encoding');
    assert.equal(m2.prompts(), 26);
    // v1's vectors are untouched: only the event v1 has not seen yet is unencoded for it.
    const v1View = await memory(c1);
    assert.deepEqual(
      v1View.map((e) => e.encoded),
      [...Array<boolean>(25).fill(true), false],
    );

    // Both versions serve the user; after each has caught up, alternating calls encode nothing more.
    assert.equal((await recommend(c1, user, 10, 2)).summary?.encoding_lagging, false);
    const settled = [m1.prompts(), m2.prompts()];
    for (let round = 0; round < 3; round++) {
      for (const c of [c1, c2]) {
        const r = await recommend(c, user, 10, 2);
        assert.equal(r.error, undefined);
        assert.equal(r.summary?.encoding_lagging, false);
        assert.equal(r.summary?.retrieved.length, 2);
      }
    }
    assert.deepEqual([m1.prompts(), m2.prompts()], settled, 'no version re-encodes what the other wrote');
    c1.close();
    c2.close();
  } finally {
    await gw1?.close();
    await gw2?.close();
  }
});
