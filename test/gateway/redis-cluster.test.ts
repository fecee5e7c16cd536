/**
 * The gateway on a real 3-master Redis Cluster started by the test (password set): Ingest, Recommend, GetMemory
 * and ForgetUser end to end, every key of a user in the user's slot (hash tag) and none outside, a user whose
 * slot is migrated to another master (resharding) keeping its history and writes, and a master
 * killed (SIGKILL) and restarted mid-ingest loses no acknowledged event.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { RedisMemoryStore } from '../../src/gateway/adapters/redis-store.js';
import type { IngestRequest } from '../../src/generated/automr/v1/IngestRequest.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';
import { ingest, recommend, startStack, type Stack, waitFor } from './helpers.js';

const PASSWORD = 'cluster-secret';
const PREFIX = 'automr-e2e';
let cluster: RedisCluster;
let stack: Stack;

before(async () => {
  cluster = await startRedisCluster({ password: PASSWORD });
  stack = await startStack('automr-rcluster-e2e-', {
    memoryStore: cluster.url,
    redisPrefix: PREFIX,
    encodeWaitMs: 10_000,
  });
});

after(async () => {
  await stack?.close();
  await cluster?.stop();
});

const events = (user: string, from: number, n: number): IngestRequest[] =>
  Array.from({ length: n }, (_, i) => ({
    event_id: `${user}-${from + i}`,
    user_id: user,
    item_id: stack.gateway.bundle.catalog[((from + i) * 7) % stack.gateway.bundle.catalog.length]!.itemId,
    timestamp_ms: 1_700_000_000_000 + (from + i) * 1000,
  }));

/** Every key under the prefix on every master, with its node. */
async function allKeys(): Promise<{ key: string; port: number }[]> {
  const out: { key: string; port: number }[] = [];
  for (const node of cluster.nodes) {
    const r = new Redis({ host: '127.0.0.1', port: node.port, password: PASSWORD });
    try {
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 1000);
        cursor = next;
        for (const key of keys) out.push({ key, port: node.port });
      } while (cursor !== '0');
    } finally {
      r.disconnect();
    }
  }
  return out;
}

void test('Ingest / Recommend / GetMemory / ForgetUser through the gateway on Redis Cluster', async () => {
  const c = stack.client;
  const users = Array.from({ length: 6 }, (_, i) => `cluster-user-${i}`);
  for (const user of users) {
    const { acks, error } = await ingest(c, events(user, 0, 15));
    assert.equal(error, undefined);
    assert.ok(acks.every((a) => a.status === 'STATUS_ACCEPTED'));
  }
  const again = await ingest(c, events(users[0]!, 0, 1));
  assert.equal(again.acks[0]?.status, 'STATUS_DUPLICATE', 'idempotency holds on the cluster');

  const rec = await recommend(c, users[0]!, 10, 2);
  assert.equal(rec.error, undefined);
  assert.equal(rec.items.length, 10);
  assert.equal(rec.summary?.encoding_lagging, false);
  assert.equal(rec.summary?.retrieved.length, 2, 'memory retrieved from the cluster');

  // Users spread over the masters, each user's keys in one slot, no key outside a user's hash tag.
  const keys = await allKeys();
  assert.ok(keys.length > 0);
  assert.ok(
    keys.every(({ key }) => key.startsWith(`${PREFIX}:{u:`)),
    `no global key: ${keys.map((k) => k.key).join(' ')}`,
  );
  assert.ok(new Set(keys.map((k) => k.port)).size >= 2, 'users are spread over several masters');
  const probe = new Redis({ host: '127.0.0.1', port: cluster.nodes[0]!.port, password: PASSWORD });
  try {
    for (const user of users) {
      const mine = keys.filter(({ key }) => key.startsWith(`${PREFIX}:{u:${user}}:`));
      assert.ok(mine.length >= 4, `${user} has its keys`);
      const slots = new Set(await Promise.all(mine.map(({ key }) => probe.cluster('KEYSLOT', key))));
      assert.equal(slots.size, 1, `${user}'s keys share one slot`);
    }
  } finally {
    probe.disconnect();
  }

  assert.equal(await c.forgetUser(users[1]!), 15);
  assert.deepEqual(await c.getMemory(users[1]!), []);
  assert.ok(
    !(await allKeys()).some(({ key }) => key.includes(`{u:${users[1]!}}`)),
    'nothing left of the user',
  );
});

/** Moves one hash slot, with its keys, from its master to another (what `redis-cli --cluster reshard` does). */
async function migrateSlot(slot: number): Promise<void> {
  const nodes = cluster.nodes.map((n) => new Redis({ host: '127.0.0.1', port: n.port, password: PASSWORD }));
  try {
    const slots = (await nodes[0]!.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
    const owner = slots.find(([lo, hi]) => slot >= lo && slot <= hi)![2];
    const from = nodes[cluster.nodes.findIndex((n) => n.port === owner[1])]!;
    const to = nodes[cluster.nodes.findIndex((n) => n.port !== owner[1])]!;
    const [fromId, toId] = await Promise.all([from.cluster('MYID'), to.cluster('MYID')]);
    const toPort = cluster.nodes[nodes.indexOf(to)]!.port;
    await to.cluster('SETSLOT', slot, 'IMPORTING', fromId);
    await from.cluster('SETSLOT', slot, 'MIGRATING', toId);
    for (;;) {
      const keys = await from.cluster('GETKEYSINSLOT', slot, 100);
      if (keys.length === 0) break;
      await from.call('MIGRATE', '127.0.0.1', toPort, '', 0, 5000, 'AUTH', PASSWORD, 'KEYS', ...keys);
    }
    for (const node of nodes) await node.cluster('SETSLOT', slot, 'NODE', toId);
    const after = (await from.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
    assert.equal(after.find(([lo, hi]) => slot >= lo && slot <= hi)![2][1], toPort, 'the slot moved');
  } finally {
    for (const node of nodes) node.disconnect();
  }
}

void test('a user whose slot is resharded to another master keeps its whole history and its writes', async () => {
  const c = stack.client;
  const user = 'resharded-user';
  assert.ok((await ingest(c, events(user, 0, 12))).acks.every((a) => a.status === 'STATUS_ACCEPTED'));
  await waitFor(() => Promise.resolve(stack.gateway.encoder.backlog() === 0), 10_000, 'encoding');
  const before = await c.getMemory(user);
  assert.ok(before.every((e) => e.encoded));
  const probe = new Redis({ host: '127.0.0.1', port: cluster.nodes[0]!.port, password: PASSWORD });
  const slot = Number(await probe.cluster('KEYSLOT', `${PREFIX}:{u:${user}}:z`));
  probe.disconnect();
  await migrateSlot(slot);

  // Every key of the user moved with the slot (one hash tag): reads, idempotency and appends continue.
  assert.deepEqual(await c.getMemory(user), before);
  assert.equal((await ingest(c, events(user, 0, 1))).acks[0]?.status, 'STATUS_DUPLICATE');
  assert.equal((await ingest(c, events(user, 12, 3))).acks.length, 3);
  const rec = await recommend(c, user, 10, 2);
  assert.equal(rec.error, undefined);
  assert.equal(rec.summary?.encoding_lagging, false);
  assert.equal((await c.getMemory(user)).length, 15);
});

void test('a master killed and restarted mid-ingest loses no acknowledged event', async (t) => {
  const c = stack.client;
  const users = Array.from({ length: 12 }, (_, i) => `restart-user-${i}`);
  const acked = new Set<string>();
  const send = async (from: number, n: number) => {
    const results = await Promise.all(users.map((user) => ingest(c, events(user, from, n))));
    for (const { acks } of results)
      for (const a of acks) if (a.status === 'STATUS_ACCEPTED') acked.add(a.event_id);
  };
  await send(0, 10);
  assert.equal(acked.size, users.length * 10);

  // SIGKILL one master (AOF with fsync always: what it acknowledged is on disk) while events keep coming.
  const node = cluster.nodes[1]!;
  node.process.kill('SIGKILL');
  const during = send(10, 10);
  await new Promise((r) => setTimeout(r, 300));
  await cluster.restart(1, 'SIGKILL');
  await during;
  const duringOutage = acked.size - users.length * 10;
  await send(20, 10);

  const store = new RedisMemoryStore({ url: cluster.url, prefix: PREFIX });
  try {
    await waitFor(() => store.ready(), 5_000, 'a fresh store client on the cluster');
    const stored = new Set<string>();
    for (const user of users) for (const e of await store.read(user)) stored.add(e.eventId);
    assert.deepEqual(
      [...acked].filter((id) => !stored.has(id)),
      [],
      'acked events lost',
    );
    // The cluster serves every slot again: events after the restart are all accepted.
    for (const user of users) for (let i = 20; i < 30; i++) assert.ok(acked.has(`${user}-${i}`));
    t.diagnostic(`acked during the outage: ${duringOutage} of ${users.length * 10}`);
  } finally {
    await store.close();
  }
  await waitFor(
    async () => (await recommend(c, users[0]!, 5)).error === undefined,
    10_000,
    'Recommend after restart',
  );
});
