/**
 * The "Done when" client scenario against the real local model server (committed triton-models) and a
 * real gateway on the embedded store, both on port 0.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  credentials,
  loadPackageDefinition,
  status,
  type Client,
  type ClientDuplexStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { RunningModelServer } from '../../src/model-server/server.js';
import { defaultConfig } from '../../src/gateway/config.js';
import { startGateway, type RunningGateway } from '../../src/gateway/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { RecommenderClient } from '../../src/client/recommender-client.js';
import type { IngestResponse__Output } from '../../src/generated/automr/v1/IngestResponse.js';
import type { IngestBatchResponse__Output } from '../../src/generated/automr/v1/IngestBatchResponse.js';
import {
  BUNDLE_DIR,
  client,
  healthClient,
  healthStatus,
  ingest,
  recommend,
  REPO,
  startStack,
  type Stack,
  waitFor,
} from './helpers.js';

let stack: Stack;
let modelServer: RunningModelServer;
let gateway: RunningGateway;
let c: RecommenderClient;

before(async () => {
  stack = await startStack('automr-e2e-', { encodeWaitMs: 20_000, reflection: true });
  ({ modelServer, gateway, client: c } = stack);
});

after(() => stack.close());

const getMemory = (userId: string) => c.getMemory(userId);
const forget = (userId: string) => c.forgetUser(userId);

void test('the Done-when client scenario', async () => {
  const health = healthClient(gateway.address);
  assert.equal(
    await healthStatus(health),
    'SERVING',
    'SERVING once the model server and the store are ready',
  );
  assert.equal(await healthStatus(health, 'automr.v1.RecommenderService'), 'SERVING');
  health.close();
  const catalog = gateway.bundle.catalog;
  const user = 'user-e2e';

  const fresh = await recommend(c, 'brand-new-user', 20);
  assert.equal(fresh.error, undefined);
  assert.equal(fresh.items.length, 20, '20 recommendations for a new user');
  assert.deepEqual(fresh.summary?.retrieved, []);

  const now = Date.now();
  const events = Array.from({ length: 40 }, (_, i) => ({
    event_id: `ev-${i}`,
    user_id: user,
    item_id: (catalog[(i * 7) % catalog.length] as { itemId: string }).itemId,
    timestamp_ms: now - 1_000_000 + i * 1000,
  }));
  const { acks, error } = await ingest(c, events);
  assert.equal(error, undefined);
  assert.equal(acks.length, 40);
  assert.ok(
    acks.every((a) => a.status === 'STATUS_ACCEPTED'),
    JSON.stringify(acks.filter((a) => a.status !== 'STATUS_ACCEPTED')),
  );
  assert.deepEqual(new Set(acks.map((a) => a.event_id)), new Set(events.map((e) => e.event_id)));

  const dup = await ingest(c, [events[5]!]);
  assert.equal(dup.acks[0]?.status, 'STATUS_DUPLICATE');

  // Straight after the acks, as an independent client would: Recommend waits (bounded) for the encoder.
  const rec = await recommend(c, user, 10, 3);
  assert.equal(rec.error, undefined);
  assert.equal(rec.items.length, 10);
  assert.deepEqual(
    rec.items.map((i) => i.rank),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  );
  for (let i = 1; i < rec.items.length; i++)
    assert.ok(rec.items[i]!.score <= rec.items[i - 1]!.score, 'non-increasing scores');
  assert.ok(rec.items.every((i) => i.title.length > 0 && i.item_id.length > 0));
  const summary = rec.summary!;
  assert.equal(summary.retrieved.length, 3, 'summary names the retrieved memories');
  const memoryIds = new Set(events.slice(0, 40 - gateway.bundle.window).map((e) => e.event_id));
  assert.ok(
    summary.retrieved.every((m) => memoryIds.has(m.event_id)),
    'only elements older than the newest K are memory',
  );
  assert.equal(summary.model_version, gateway.bundle.modelVersion);
  assert.equal(summary.history_size, 40);
  assert.equal(summary.memory_size, 40 - gateway.bundle.window);
  assert.equal(summary.encoding_lagging, false);
  assert.ok(summary.timings!.total_ms > 0);

  const memory = await getMemory(user);
  assert.equal(memory.length, 40);
  assert.ok(memory.every((e) => e.encoded));
  assert.deepEqual(
    memory.map((e) => e.event_id),
    events.map((e) => e.event_id),
  );

  const emptyUser = await recommend(c, '', 10);
  assert.equal(emptyUser.error?.code, status.INVALID_ARGUMENT);
  assert.match(emptyUser.error.details, /user_id must not be empty/);
  const hugeTopN = await recommend(c, user, 1_000_000);
  assert.equal(hugeTopN.error?.code, status.INVALID_ARGUMENT);
  assert.match(hugeTopN.error.details, new RegExp(`top_n must be in 1\\.\\.${gateway.bundle.topK}`));

  // A bad event is REJECTED and the stream stays open: the event after it is still accepted.
  const mixed = await ingest(c, [
    { event_id: 'bad-1', user_id: '', item_id: events[0]!.item_id, timestamp_ms: now },
    { event_id: 'ev-after-bad', user_id: user, item_id: events[0]!.item_id, timestamp_ms: now },
  ]);
  assert.equal(mixed.error, undefined);
  const byId = new Map(mixed.acks.map((a) => [a.event_id, a]));
  assert.equal(byId.get('bad-1')?.status, 'STATUS_REJECTED');
  assert.match(byId.get('bad-1')!.message, /user_id must not be empty/);
  assert.equal(byId.get('ev-after-bad')?.status, 'STATUS_ACCEPTED');

  assert.equal(await forget(user), 41);
  assert.deepEqual(await getMemory(user), []);
});

void test('bad inputs get INVALID_ARGUMENT or REJECTED with a clear message, never a crash', async () => {
  const now = Date.now();
  const long = 'x'.repeat(257);
  const { acks, error } = await ingest(c, [
    { event_id: '', user_id: 'u', item_id: 'i', timestamp_ms: now },
    { event_id: 'a', user_id: long, item_id: 'i', timestamp_ms: now },
    { event_id: 'b', user_id: 'u', item_id: '', timestamp_ms: now },
    { event_id: 'c', user_id: 'u', item_id: 'i', timestamp_ms: -5 },
    { event_id: 'd', user_id: 'u', item_id: 'i', timestamp_ms: now + 3 * 86_400_000 },
    { event_id: 'x'.repeat(129), user_id: 'u', item_id: 'i', timestamp_ms: now },
    { event_id: 'e', user_id: 'u\u0000v', item_id: 'i', timestamp_ms: now },
    { event_id: 'unk', user_id: 'u-unk', item_id: 'not-in-catalog', timestamp_ms: now },
  ]);
  assert.equal(error, undefined);
  const by = new Map(acks.map((a) => [a.event_id, a]));
  assert.match(by.get('')!.message, /event_id must not be empty/);
  assert.match(by.get('a')!.message, /user_id is 257 bytes; at most 256/);
  assert.match(by.get('b')!.message, /item_id must not be empty/);
  assert.match(by.get('c')!.message, /timestamp_ms must not be negative/);
  assert.match(by.get('d')!.message, /in the future/);
  assert.match(by.get('x'.repeat(129))!.message, /event_id is 129 bytes/);
  assert.match(by.get('e')!.message, /control characters/);
  for (const id of ['', 'a', 'b', 'c', 'd', 'e']) assert.equal(by.get(id)?.status, 'STATUS_REJECTED');
  const unk = by.get('unk')!;
  assert.equal(unk.status, 'STATUS_ACCEPTED');
  assert.equal(unk.unknown_item, true);
  assert.match(unk.message, /not in the catalog/);
  const mem = await getMemory('u-unk');
  assert.equal(mem[0]?.unknown_item, true);
  assert.equal(
    (await recommend(c, 'u-unk', 5)).items.length,
    5,
    'an unknown item still gets recommendations',
  );

  for (const [topN, memoryK] of [
    [0, 0],
    [gateway.bundle.topK + 1, 0],
    [5, gateway.bundle.maxMemory + 1],
  ] as const) {
    const r = await recommend(c, 'u', topN, memoryK);
    assert.equal(r.error?.code, status.INVALID_ARGUMENT, `top_n=${topN} memory_k=${memoryK}`);
    assert.doesNotMatch(r.error.details, /\n\s+at /, 'no stack trace');
  }
  const unaryError = await getMemory('').catch((e: ServiceError) => e);
  assert.equal((unaryError as ServiceError).code, status.INVALID_ARGUMENT);
  const forgetError = await forget('y'.repeat(300)).catch((e: ServiceError) => e);
  assert.equal((forgetError as ServiceError).code, status.INVALID_ARGUMENT);
});

void test('IngestBatch stores and acks as Ingest does, with acks several to a message', async () => {
  const catalog = gateway.bundle.catalog;
  const now = Date.now();
  const eventsOf = (user: string) => {
    const events = Array.from({ length: 30 }, (_, i) => ({
      event_id: `b-${i}`,
      user_id: user,
      item_id: (catalog[(i * 5) % catalog.length] as { itemId: string }).itemId,
      timestamp_ms: now - 500_000 + i * 1000,
    }));
    return [
      ...events,
      { ...events[3]!, item_id: 'resent' }, // a duplicate within the stream
      { event_id: 'late', user_id: user, item_id: 'not-in-catalog', timestamp_ms: now - 600_000 },
      { event_id: 'bad', user_id: user, item_id: '', timestamp_ms: now },
    ];
  };
  const single = await ingest(c, eventsOf('batch-a'));
  assert.equal(single.error, undefined);
  let messages = 0;
  const batched = await new Promise<IngestResponse__Output[]>((resolve, reject) => {
    const acks: IngestResponse__Output[] = [];
    const call = c.ingestBatchStream();
    call.on('data', (message: IngestBatchResponse__Output) => {
      messages++;
      acks.push(...message.acks);
    });
    call.on('error', reject);
    call.on('end', () => resolve(acks));
    const events = eventsOf('batch-b');
    call.write({ events: events.slice(0, 20) });
    call.write({ events: events.slice(20) });
    call.end();
  });
  const byId = (acks: IngestResponse__Output[]) =>
    new Map(acks.map((a) => [a.event_id, { ...a, message: a.message.replace('batch-b', 'batch-a') }]));
  assert.equal(batched.length, 33, 'one ack per event');
  assert.deepEqual(byId(batched), byId(single.acks));
  assert.ok(messages < batched.length, `acks came in ${messages} messages`);
  const stored = async (user: string) =>
    (await getMemory(user)).map((e) => [e.event_id, e.item_id, e.timestamp_ms, e.unknown_item]);
  assert.deepEqual(await stored('batch-b'), await stored('batch-a'));
  assert.equal((await stored('batch-b')).length, 31);

  // The client library's batched send: every event acked once, resends are duplicates.
  const again = await c.ingestBatched(eventsOf('batch-b').slice(0, 30), 8, 16);
  assert.equal(again.length, 30);
  assert.ok(again.every((a) => a.status === 'STATUS_DUPLICATE'));
});

void test('the same flow over the Redis store (several gateways share it)', async () => {
  const prefix = `automr-e2e-${process.pid}-${Date.now()}`;
  const config = defaultConfig({
    addr: '127.0.0.1:0',
    memoryStore: process.env.AUTOMR_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    redisPrefix: prefix,
    modelServer: modelServer.address,
    bundle: BUNDLE_DIR,
    metricsPort: 0,
  });
  // Two gateways on one Redis: events ingested through one are visible through the other.
  const [g1, g2] = await Promise.all([
    startGateway(config, { logger: silentLogger() }),
    startGateway(config, { logger: silentLogger() }),
  ]);
  const [c1, c2] = [client(g1.address), client(g2.address)];
  try {
    const catalog = g1.bundle.catalog;
    const events = Array.from({ length: 40 }, (_, i) => ({
      event_id: `re-${i}`,
      user_id: 'redis-user',
      item_id: catalog[(i * 3) % catalog.length]!.itemId,
      timestamp_ms: 1_700_000_000_000 + i,
    }));
    const [a, b] = await Promise.all([ingest(c1, events.slice(0, 20)), ingest(c2, events.slice(20))]);
    assert.ok([...a.acks, ...b.acks].every((x) => x.status === 'STATUS_ACCEPTED'));
    assert.equal((await ingest(c2, [events[3]!])).acks[0]?.status, 'STATUS_DUPLICATE');
    const mem = () => c2.getMemory('redis-user');
    await waitFor(async () => (await mem()).every((e) => e.encoded), 20_000, 'encoding in Redis');
    assert.deepEqual(
      (await mem()).map((e) => e.event_id),
      events.map((e) => e.event_id),
    );
    const rec = await recommend(c1, 'redis-user', 10, 2);
    assert.equal(rec.items.length, 10);
    assert.equal(rec.summary?.retrieved.length, 2);
    assert.equal(await c1.forgetUser('redis-user'), 40);
    assert.deepEqual(await mem(), []);
  } finally {
    c1.close();
    c2.close();
    await Promise.all([g1.close(), g2.close()]);
  }
});

void test('server reflection lists the Recommender and Health services', async () => {
  const def = loadSync('grpc/reflection/v1/reflection.proto', {
    keepCase: true,
    includeDirs: [path.join(REPO, 'node_modules/@grpc/reflection/build/proto')],
  });
  type Reflection = Client & { ServerReflectionInfo(): ClientDuplexStream<object, Record<string, unknown>> };
  const pkg = loadPackageDefinition(def) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: new (a: string, c: unknown) => Reflection } } };
  };
  const refl = new pkg.grpc.reflection.v1.ServerReflection(gateway.address, credentials.createInsecure());
  const names = await new Promise<string[]>((resolve, reject) => {
    const call = refl.ServerReflectionInfo();
    call.on('data', (msg: { list_services_response?: { service: { name: string }[] } }) => {
      resolve((msg.list_services_response?.service ?? []).map((s) => s.name));
      call.end();
    });
    call.on('error', reject);
    call.write({ list_services: '' });
  });
  refl.close();
  assert.ok(names.includes('automr.v1.RecommenderService'), names.join(','));
  assert.ok(names.includes('grpc.health.v1.Health'), names.join(','));
});
