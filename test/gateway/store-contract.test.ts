/**
 * One contract, three stores: the embedded LMDB store (temp dir), Redis at 127.0.0.1:6379 (unique prefix) and a
 * real 3-master Redis Cluster this test starts itself (with a password, so the URL's credentials are exercised).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { open, type Key } from 'lmdb';
import { LmdbMemoryStore } from '../../src/gateway/adapters/lmdb-store.js';
import { RedisMemoryStore } from '../../src/gateway/adapters/redis-store.js';
import type { MemoryStore, NewEvent, StoredEntry } from '../../src/gateway/domain/ports.js';
import { startRedisCluster } from '../support/redis-cluster.js';

const REDIS_URL = process.env.AUTOMR_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

const ev = (userId: string, n: number, ts = 1_000 + n): NewEvent => ({
  userId,
  eventId: `e${n}`,
  itemId: `item-${n}`,
  token: 3 + n,
  timestampMs: ts,
});

/** Consumed-set bound the contract runs with (small, so eviction is exercised). */
const CONSUMED_MAX = 6;
const items = (...n: number[]) => n.map((i) => `item-${i}`).sort();

function contract(name: string, make: () => Promise<{ store: MemoryStore; cleanup: () => Promise<void> }>) {
  void describe(`MemoryStore contract: ${name}`, () => {
    let store: MemoryStore;
    let cleanup: () => Promise<void>;
    before(async () => {
      ({ store, cleanup } = await make());
      assert.equal(await store.ready(), true, `${name} store must be ready`);
    });
    after(async () => {
      await store.close();
      await cleanup();
    });

    void test('appends in timestamp order, arrival breaks ties, duplicates change nothing', async () => {
      assert.equal((await store.append(ev('u1', 1, 50), 100)).status, 'accepted');
      assert.equal((await store.append(ev('u1', 2, 10), 100)).status, 'accepted'); // late event
      assert.equal((await store.append(ev('u1', 3, 50), 100)).status, 'accepted'); // tie with e1
      assert.equal((await store.append(ev('u1', 1, 999), 100)).status, 'duplicate');
      const entries = await store.read('u1');
      assert.deepEqual(
        entries.map((e) => [e.eventId, e.timestampMs]),
        [
          ['e2', 10],
          ['e1', 50],
          ['e3', 50],
        ],
      );
      assert.equal(entries[0]!.itemId, 'item-2');
      assert.equal(entries[0]!.token, 5);
      assert.equal(entries[0]!.vector, undefined);
    });

    void test('idempotency keys are per user', async () => {
      assert.equal((await store.append(ev('u2', 1), 100)).status, 'accepted');
      assert.equal((await store.append(ev('u3', 1), 100)).status, 'accepted');
      assert.equal((await store.read('u2')).length, 1);
    });

    void test('history beyond the maximum drops the oldest', async () => {
      for (let i = 0; i < 8; i++) await store.append(ev('u4', i), 5);
      const entries = await store.read('u4');
      assert.deepEqual(
        entries.map((e) => e.eventId),
        ['e3', 'e4', 'e5', 'e6', 'e7'],
      );
      // An event older than everything retained is dropped at once.
      const old = await store.append(ev('u4', 100, 1), 5);
      assert.equal(old.status, 'accepted');
      assert.equal(old.dropped, true);
      assert.equal((await store.append(ev('u4', 101, 5000), 5)).dropped, false);
      assert.deepEqual(
        (await store.read('u4')).map((e) => e.eventId),
        ['e4', 'e5', 'e6', 'e7', 'e101'],
      );
    });

    void test('window context: keeps maxHistory + context raw entries; older ones are reported dropped', async () => {
      for (let i = 0; i < 8; i++) assert.equal((await store.append(ev('u8', i), 4, 2)).dropped, false);
      assert.deepEqual(
        (await store.read('u8')).map((e) => e.eventId),
        ['e2', 'e3', 'e4', 'e5', 'e6', 'e7'],
      );
      // Kept as context (5th newest), but not in the 4-event history: reported dropped.
      const late = await store.append(ev('u8', 100, 1_000 + 3.5), 4, 2);
      assert.equal(late.dropped, true);
      assert.deepEqual(
        (await store.read('u8')).map((e) => e.eventId),
        ['e3', 'e100', 'e4', 'e5', 'e6', 'e7'],
      );
    });

    void test('appendMany equals appending one by one, also for batches in flight together and past the pipeline window', async () => {
      // Two users per batch (each batch longer than Redis's 512-script window), late events, resends within and
      // across batches, a cap with context.
      const events = (user: string, from: number, to: number) =>
        Array.from({ length: to - from }, (_, k) => {
          const n = from + k;
          return ev(user, n % 97 === 5 ? n - 3 : n, 1_000 + n - (n % 7 === 3 ? 40 : 0));
        });
      const batches = [0, 300, 600].map((from) => [
        ...events('bulk-a', from, from + 300),
        ...events('bulk-b', from, from + 300),
      ]);
      const together = await Promise.all(batches.map((b) => store.appendMany(b, 200, 9)));
      // One by one in array order per user; the two users' chains run side by side (fewer LMDB commits to wait).
      const flat = batches.flat();
      const oneByOne: string[] = new Array<string>(flat.length);
      await Promise.all(
        ['bulk-a', 'bulk-b'].map(async (user) => {
          for (const [i, e] of flat.entries()) {
            if (e.userId !== user) continue;
            const single = { ...e, userId: user.replace('bulk-', 'single-') };
            oneByOne[i] = (await store.append(single, 200, 9)).status;
          }
        }),
      );
      assert.deepEqual(together.flat(), oneByOne);
      assert.ok(oneByOne.includes('duplicate'));
      for (const user of ['a', 'b']) {
        // The same entries in the same order (timestamp, then arrival); sequence values may differ by gaps
        // (LMDB's single append spends one on a resend of a stored event).
        const plain = (e: StoredEntry) => [e.eventId, e.itemId, e.token, e.timestampMs];
        const bulk = await store.read(`bulk-${user}`);
        assert.equal(bulk.length, 209);
        assert.deepEqual(bulk.map(plain), (await store.read(`single-${user}`)).map(plain));
      }
    });

    void test('vectors are stored with their key, only for existing entries', async () => {
      await store.append(ev('u5', 1), 100);
      await store.append(ev('u5', 2), 100);
      const [a, b] = await store.read('u5');
      await store.putVectors('u5', [
        {
          seq: a!.seq,
          timestampMs: a!.timestampMs,
          encKey: 'v1|1,4',
          vector: new Float32Array([0.5, -1, 2]),
        },
        { seq: 9999, timestampMs: a!.timestampMs, encKey: 'v1|x', vector: new Float32Array([1]) },
      ]);
      const [a2, b2] = await store.read('u5');
      assert.deepEqual([...a2!.vector!], [0.5, -1, 2]);
      assert.equal(a2!.encKey, 'v1|1,4');
      assert.equal(b2!.vector, undefined);
      assert.equal(b!.seq, b2!.seq);
      assert.equal((await store.read('u5')).length, 2);
    });

    void test('readTail: the entries from a timestamp on plus context before them, keys without vectors', async () => {
      for (let i = 0; i < 6; i++) await store.append(ev('u9', i, 100 + 10 * i), 100); // 100, 110, ..., 150
      await store.append(ev('u9', 6, 120), 100); // tie with e2: after it
      const all = await store.read('u9');
      const [e0] = all;
      await store.putVectors('u9', [
        { seq: e0!.seq, timestampMs: e0!.timestampMs, encKey: 'v1|3', vector: new Float32Array([1, 2]) },
      ]);
      const ids = async (since: number, context: number) =>
        (await store.readTail('u9', since, context)).map((e) => e.eventId);
      assert.deepEqual(await ids(120, 0), ['e2', 'e6', 'e3', 'e4', 'e5']);
      assert.deepEqual(await ids(120, 1), ['e1', 'e2', 'e6', 'e3', 'e4', 'e5']);
      assert.deepEqual(await ids(125, 2), ['e2', 'e6', 'e3', 'e4', 'e5']);
      assert.deepEqual(await ids(150, 0), ['e5']);
      assert.deepEqual(await ids(151, 1), ['e5'], 'nothing at or after: only the context');
      assert.deepEqual(
        await ids(0, 3),
        all.map((e) => e.eventId),
      );
      const tail = await store.readTail('u9', 0, 0);
      assert.deepEqual(
        tail.map((e) => [e.eventId, e.itemId, e.token, e.timestampMs, e.seq]),
        all.map((e) => [e.eventId, e.itemId, e.token, e.timestampMs, e.seq]),
      );
      assert.equal(tail[0]!.encKey, 'v1|3');
      assert.equal(tail[0]!.vector, undefined);
      assert.equal(tail[1]!.encKey, undefined);
      assert.deepEqual(await store.readTail('nobody', 0, 9), []);
    });

    void test('readTail agrees with read after every kind of write: in order, late, concurrent, vectors, cap, forget', async () => {
      let state = 7;
      const rand = (n: number) => {
        state = (state * 1103515245 + 12345) % 2 ** 31;
        return state % n;
      };
      const u = 'u-tail';
      const cap = 12;
      const context = 3;
      const view = (e: StoredEntry) => [e.eventId, e.token, e.timestampMs, e.seq, e.encKey ?? null];
      const check = async (since: number) => {
        const all = await store.read(u);
        const from = all.findIndex((e) => e.timestampMs >= since);
        const at = from < 0 ? all.length : from;
        const expected = all.slice(Math.max(0, at - context)).map(view);
        assert.deepEqual((await store.readTail(u, since, context)).map(view), expected, `since ${since}`);
      };
      let n = 0;
      let newest = 0;
      for (let step = 0; step < 120; step++) {
        const op = rand(10);
        if (op < 5) {
          // 1-3 appends at once, mostly in order, some late, some duplicates.
          const batch = Array.from({ length: 1 + rand(3) }, () => {
            const late = rand(4) === 0;
            const ts = late ? Math.max(0, newest - 1 - rand(30)) : (newest += 1 + rand(3));
            return rand(8) === 0 && n > 0 ? ev(u, rand(n), ts) : ev(u, n++, ts);
          });
          await Promise.all(batch.map((e) => store.append(e, cap, 2)));
        } else if (op < 8) {
          const tail = await store.readTail(u, newest - rand(20), context);
          const picked = tail.filter(() => rand(2) === 0);
          await store.putVectors(
            u,
            picked.map((e) => ({
              seq: e.seq,
              timestampMs: e.timestampMs,
              encKey: `v${step}|${e.seq}`,
              vector: new Float32Array([step, e.seq]),
            })),
          );
        } else if (op === 8 && rand(4) === 0) {
          await store.forget(u);
        }
        await check(newest - rand(25));
        await check(newest + 1);
      }
    });

    void test('a read sees every completed write, also when reads overlap writes (reads may be cached)', async () => {
      const ids = async () => (await store.read('u10')).map((e) => e.eventId);
      await store.append(ev('u10', 1), 3);
      assert.deepEqual(await ids(), ['e1']);
      const appending = store.append(ev('u10', 2), 3);
      // While the append is in flight: either history, never cached past its completion (read twice: a store may
      // cache a history on its second read).
      await ids();
      await ids();
      await appending;
      assert.deepEqual(await ids(), ['e1', 'e2']);
      const [e1] = await store.read('u10');
      const vector = new Float32Array([3, 4]);
      const putting = store.putVectors('u10', [
        { seq: e1!.seq, timestampMs: e1!.timestampMs, encKey: 'k', vector },
      ]);
      await store.read('u10');
      await store.read('u10');
      await putting;
      assert.deepEqual([...(await store.read('u10'))[0]!.vector!], [3, 4]);
      for (let i = 3; i <= 5; i++) {
        await store.read('u10');
        await store.read('u10');
        await store.append(ev('u10', i), 3); // trims the oldest
      }
      assert.deepEqual(await ids(), ['e3', 'e4', 'e5']);
      const forgetting = store.forget('u10');
      await store.read('u10');
      await store.read('u10');
      await forgetting;
      assert.deepEqual(await ids(), []);
    });

    void test('concurrent appends for one user from several streams lose nothing', async () => {
      const streams = 8;
      const perStream = 25;
      await Promise.all(
        Array.from({ length: streams }, async (_, s) => {
          for (let i = 0; i < perStream; i++) {
            const n = s * 1000 + i;
            // Every event is sent twice, concurrently, as a retrying producer would.
            const [x, y] = await Promise.all([
              store.append(ev('u6', n), 10_000),
              store.append(ev('u6', n), 10_000),
            ]);
            assert.deepEqual([x.status, y.status].sort(), ['accepted', 'duplicate']);
          }
        }),
      );
      const entries = await store.read('u6');
      assert.equal(entries.length, streams * perStream);
      assert.equal(new Set(entries.map((e) => e.eventId)).size, streams * perStream);
      assert.equal(new Set(entries.map((e) => e.seq)).size, streams * perStream);
    });

    void test('consumed set: items of accepted events beyond the history cap, the newest CONSUMED_MAX by event time', async () => {
      const u = 'consumed-1';
      const put = (eventId: string, item: number, ts: number) =>
        store.append({ userId: u, eventId, itemId: `item-${item}`, token: 3 + item, timestampMs: ts }, 3);
      for (let i = 0; i < 12; i++) await put(`e${i}`, i, 1000 + i);
      assert.equal((await store.read(u)).length, 3, 'history capped at 3');
      const sorted = async () => [...(await store.consumed(u))].sort();
      assert.deepEqual(await sorted(), items(6, 7, 8, 9, 10, 11), 'the 6 newest of 12 consumed items');
      assert.equal((await put('e3', 40, 5000)).status, 'duplicate');
      assert.deepEqual(await sorted(), items(6, 7, 8, 9, 10, 11), 'a duplicate adds nothing');
      await put('again-7', 7, 2000); // consumed again: now the newest
      await put('e12', 12, 2001); // evicts the oldest: item-6
      await put('e13', 13, 2002); // then item-8 (item-7 was refreshed)
      assert.deepEqual(await sorted(), items(7, 9, 10, 11, 12, 13));
      await put('late-9', 9, 1); // an older event of a known item does not make it older
      await put('late-20', 20, 2); // an unknown item older than all kept ones is evicted at once
      assert.deepEqual(await sorted(), items(7, 9, 10, 11, 12, 13));
      await store.forget(u);
      assert.deepEqual(await store.consumed(u), [], 'ForgetUser removes the consumed set');
      await put('new', 1, 10);
      assert.deepEqual(await store.consumed(u), ['item-1']);
      assert.deepEqual(await store.consumed('never-seen'), []);
    });

    void test('consumed set read while the history is hot (Recommend reads both) follows every write', async () => {
      const u = 'consumed-hot';
      const put = (eventId: string, item: number, ts: number) =>
        store.append({ userId: u, eventId, itemId: `item-${item}`, token: 3 + item, timestampMs: ts }, 3);
      // Reads as repeated Recommends make them: a store may keep both (lmdb caches a history on its second read).
      const hot = async () => {
        await store.read(u);
        await store.read(u);
        const first = await store.consumed(u);
        assert.deepEqual(await store.consumed(u), first);
        return [...first].sort();
      };
      for (let i = 0; i < 8; i++) await put(`e${i}`, i, 1000 + i);
      assert.deepEqual(await hot(), items(2, 3, 4, 5, 6, 7));
      await put('e8', 8, 1008); // evicts item-2
      assert.deepEqual(await hot(), items(3, 4, 5, 6, 7, 8));
      await Promise.all([put('e9', 9, 1009), hot()]); // a read racing the write
      assert.deepEqual(await hot(), items(4, 5, 6, 7, 8, 9));
      await store.forget(u);
      assert.deepEqual(await hot(), []);
      await put('new', 1, 10);
      assert.deepEqual(await hot(), ['item-1']);
    });

    void test('concurrent appends of one user keep every consumed item within the bound', async () => {
      const u = 'consumed-2';
      await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          store.append(
            { userId: u, eventId: `c${i}`, itemId: `item-${i}`, token: 3, timestampMs: 10 + i },
            100,
          ),
        ),
      );
      assert.deepEqual([...(await store.consumed(u))].sort(), items(0, 1, 2, 3, 4));
    });

    void test('forget removes everything; the user may start again', async () => {
      await store.append(ev('u7', 1), 100);
      await store.append(ev('u7', 2), 100);
      const users: string[] = [];
      for await (const u of store.users()) users.push(u);
      assert.ok(users.includes('u7'));
      assert.equal(await store.forget('u7'), 2);
      assert.deepEqual(await store.read('u7'), []);
      const after: string[] = [];
      for await (const u of store.users()) after.push(u);
      assert.ok(!after.includes('u7'));
      assert.equal(
        (await store.append(ev('u7', 1), 100)).status,
        'accepted',
        'idempotency keys are forgotten too',
      );
      assert.equal(await store.forget('unknown-user'), 0);
    });
  });
}

void contract('lmdb', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'automr-lmdb-'));
  return Promise.resolve({
    store: new LmdbMemoryStore(dir, { consumedMax: CONSUMED_MAX }),
    cleanup: () => Promise.resolve(rmSync(dir, { recursive: true, force: true })),
  });
});

void test('lmdb read cache: an unchanged history read twice is handed out again; least recently read users go first', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'automr-lmdb-cache-'));
  const store = new LmdbMemoryStore(dir, { cachedUsers: 2 });
  try {
    for (const u of ['a', 'b', 'c']) await store.append(ev(u, 1), 100);
    const first = await store.read('a');
    const a = await store.read('a'); // second read since the write: cached
    assert.notEqual(a, first);
    assert.equal(await store.read('a'), a);
    for (const u of ['b', 'c']) for (let i = 0; i < 2; i++) await store.read(u); // c evicts a
    assert.notEqual(await store.read('a'), a);
    await store.append(ev('b', 2), 100);
    const b = await store.read('b');
    assert.equal(b.length, 2);
    assert.notEqual(await store.read('b'), b, 'a write starts over: cached on the second read');
    const uncached = new LmdbMemoryStore(path.join(dir, 'off'), { cachedUsers: 0 });
    await uncached.append(ev('a', 1), 100);
    await uncached.read('a');
    assert.notEqual(await uncached.read('a'), await uncached.read('a'));
    await uncached.close();
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('lmdb idempotency index: ids of the newest appends kept (bounded), a resend within the bound is a duplicate, one beyond it accepted', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'automr-lmdb-idem-'));
  const u = 'idem-1';
  // Counts the user's index keys in the closed store's file (the store does not expose them).
  const indexKeys = async (): Promise<number[]> => {
    const db = open<unknown, Key>({ path: path.join(dir, 'memory.mdb'), readOnly: true });
    try {
      return ['i', 'q'].map((p) => db.getKeysCount({ start: [p, u], end: [p, `${u}\u001f`] }));
    } finally {
      await db.close();
    }
  };
  try {
    let store = new LmdbMemoryStore(dir, { idempotencyMax: 20 });
    for (let n = 1; n <= 60; n++) assert.equal((await store.append(ev(u, n), 5)).status, 'accepted');
    await store.close();
    assert.deepEqual(await indexKeys(), [20, 20], 'the ids of the newest 20 of 60 appends');
    store = new LmdbMemoryStore(dir, { idempotencyMax: 20 });
    const history = (await store.read(u)).map((e) => e.eventId);
    assert.deepEqual(history, ['e56', 'e57', 'e58', 'e59', 'e60']);
    // e41 left the history long ago but is among the newest 20 appends.
    assert.equal((await store.append(ev(u, 41), 5)).status, 'duplicate');
    // e40 is beyond the bound: accepted again, older than the whole history, so trimmed at once.
    assert.deepEqual(await store.append(ev(u, 40), 5), { status: 'accepted', seq: 62, dropped: true });
    assert.deepEqual(
      (await store.read(u)).map((e) => e.eventId),
      history,
      'the history does not change',
    );
    await store.close();
    const [ids, order] = await indexKeys();
    assert.ok(ids! <= 20 && ids === order, `index bounded: ${ids} ids, ${order} order keys`);
    store = new LmdbMemoryStore(dir, { idempotencyMax: 20 });
    assert.equal(await store.forget(u), 5);
    await store.close();
    assert.deepEqual(await indexKeys(), [0, 0], 'ForgetUser removes the index');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void contract('redis', async () => {
  const prefix = `automr-test-${process.pid}-${Date.now()}`;
  // Fails (never skips) when Redis is unreachable: CI provides it at 127.0.0.1:6379.
  const probe = new Redis(REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  probe.on('error', () => undefined); // the connect() rejection below carries the error
  await probe.connect().catch((error: unknown) => {
    throw new Error(`Redis at ${REDIS_URL} is unreachable; these tests need it`, { cause: error });
  });
  return {
    store: new RedisMemoryStore({
      url: REDIS_URL,
      prefix,
      idempotencyTtlMs: 60_000,
      consumedMax: CONSUMED_MAX,
    }),
    cleanup: async () => {
      let cursor = '0';
      do {
        const [next, keys] = await probe.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await probe.del(...keys);
      } while (cursor !== '0');
      await probe.quit();
    },
  };
});

void test('redis tail cache: two gateways on one Redis, each readTail agrees with read after the other wrote or forgot', async () => {
  const prefix = `automr-test-tails-${process.pid}-${Date.now()}`;
  const [a, b] = [0, 1].map(() => new RedisMemoryStore({ url: REDIS_URL, prefix, idempotencyTtlMs: 60_000 }));
  const u = 'u-shared';
  const context = 2;
  const view = (e: StoredEntry) => [e.eventId, e.timestampMs, e.seq];
  const agrees = async (store: MemoryStore, since: number, what: string) => {
    const all = await store.read(u);
    const from = all.findIndex((e) => e.timestampMs >= since);
    const at = from < 0 ? all.length : from;
    assert.deepEqual(
      (await store.readTail(u, since, context)).map(view),
      all.slice(Math.max(0, at - context)).map(view),
      what,
    );
  };
  try {
    assert.ok((await a!.ready()) && (await b!.ready()));
    for (let n = 1; n <= 3; n++) await a!.append(ev(u, n, n * 10), 100, 2);
    await agrees(a!, 30, 'a reads its tail (kept)');
    await b!.append(ev(u, 4, 25), 100, 2); // late, inside a's window context, from the other gateway
    await a!.append(ev(u, 5, 40), 100, 2);
    await agrees(a!, 40, "a's next append follows b's: its tail is read again");
    await b!.forget(u);
    // As many appends as a had seen: a's next one takes the number after its tail's, but of a new generation.
    for (let n = 6; n <= 10; n++) await b!.append(ev(u, n, n * 10), 100, 2);
    await a!.append(ev(u, 11, 110), 100, 2);
    await agrees(a!, 110, 'after a forget and as many appends elsewhere');
    await agrees(b!, 0, 'b');
  } finally {
    await a!.forget(u);
    await Promise.all([a!.close(), b!.close()]);
  }
});

void contract('redis cluster (3 masters)', async () => {
  const cluster = await startRedisCluster({ password: 'contract p@ss' });
  return {
    store: new RedisMemoryStore({
      url: cluster.url,
      prefix: 'automr-contract',
      idempotencyTtlMs: 60_000,
      consumedMax: CONSUMED_MAX,
    }),
    cleanup: () => cluster.stop(),
  };
});
