/**
 * The event-stream consumer against a real nats-server with JetStream and a real Redis, each scenario on both buses:
 * every event ends in memory exactly once (duplicates resent, 1 % malformed parked in the dead letter with a reason);
 * kill -9 of the consuming gateway mid-way and a restart lose none and store none twice; a store outage stops the
 * acks and consumption resumes afterwards with nothing lost. No model server: raw events are what is acked.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { LmdbMemoryStore } from '../../src/gateway/adapters/lmdb-store.js';
import { RedisMemoryStore } from '../../src/gateway/adapters/redis-store.js';
import { defaultConfig, type GatewayConfig } from '../../src/gateway/config.js';
import type { MemoryStore } from '../../src/gateway/domain/ports.js';
import { CONSUMER_HEALTH_SERVICE } from '../../src/gateway/events.js';
import { startGateway } from '../../src/gateway/server.js';
import { silentLogger } from '../../src/shared/logger.js';
import {
  BUNDLE_DIR,
  healthClient,
  healthStatus,
  spawnGateway,
  tempDir,
  waitFor,
} from '../gateway/helpers.js';
import {
  natsDriver,
  natsServer,
  ownRedis,
  planEvents,
  redisStreamsDriver,
  type BusDriver,
  type EventPlan,
  type Server,
} from './helpers.js';

/** Unique events per scenario: the 10,000 (`AUTOMR_EVENTS_TEST_EVENTS=N` for a quicker local run; docs/EVENTS.md). */
const EVENTS = Number(process.env.AUTOMR_EVENTS_TEST_EVENTS ?? 10_000);
const NO_MODEL_SERVER = '127.0.0.1:1';

function gatewayConfig(bus: BusDriver, overrides: Partial<GatewayConfig>): GatewayConfig {
  return defaultConfig({
    addr: '127.0.0.1:0',
    modelServer: NO_MODEL_SERVER,
    bundle: BUNDLE_DIR,
    metricsPort: 0,
    maxHistory: 5000,
    ...bus.config,
    ...overrides,
  });
}

async function assertExactlyOnce(store: MemoryStore, plan: EventPlan): Promise<void> {
  for (const [user, ids] of plan.expected) {
    const stored = (await store.read(user)).map((e) => e.eventId);
    assert.equal(new Set(stored).size, stored.length, `${user}: an event stored twice`);
    assert.deepEqual(new Set(stored), ids, `${user}: stored events differ from those published`);
  }
}

async function assertDeadLetters(bus: BusDriver, plan: EventPlan): Promise<void> {
  const dead = await bus.deadLetters();
  // At least once: a crash between the dead-letter write and the ack may write one twice.
  const distinct = new Map(dead.map((d) => [d.payload.toString('base64'), d.reason]));
  assert.equal(
    distinct.size,
    plan.malformed,
    'every malformed or rejected message is dead-lettered once or more',
  );
  for (const reason of distinct.values()) assert.match(reason, /^(malformed payload|rejected): \S/);
}

const settled = (bus: BusDriver) => async () => (await bus.unsettled()) === 0;

for (const kind of ['nats', 'redis-streams'] as const) {
  void describe(`event consumer on ${kind}`, () => {
    let nats: Server | undefined;
    const driver = async (): Promise<BusDriver> => {
      if (kind === 'redis-streams') return redisStreamsDriver('redis://127.0.0.1:6379');
      nats ??= await natsServer();
      return natsDriver(nats.url);
    };
    before(async () => {
      if (kind === 'nats') nats = await natsServer();
    });
    after(async () => {
      await nats?.stop();
    });

    void test('every event ends in memory exactly once; malformed ones in the dead letter with a reason', async () => {
      const bus = await driver();
      const dataDir = tempDir('automr-events-');
      const plan = planEvents(EVENTS);
      const gateway = await startGateway(gatewayConfig(bus, { dataDir }), { logger: silentLogger() });
      try {
        await bus.publish(plan.messages);
        await waitFor(settled(bus), 60_000, 'all messages settled');
        const health = healthClient(gateway.address);
        await waitFor(
          async () => (await healthStatus(health, CONSUMER_HEALTH_SERVICE)) === 'SERVING',
          5_000,
          'the consumer reported SERVING',
        );
        health.close();
      } finally {
        await gateway.close();
      }
      const store = new LmdbMemoryStore(dataDir);
      try {
        await assertExactlyOnce(store, plan);
        await assertDeadLetters(bus, plan);
      } finally {
        await store.close();
        await bus.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    void test('kill -9 of the consuming gateway mid-way, then a restart: none lost, none stored twice', async () => {
      const bus = await driver();
      const dataDir = tempDir('automr-events-kill-');
      const plan = planEvents(Math.max(EVENTS, 3000), 1_700_100_000_000);
      const env = {
        ...bus.env,
        AUTOMR_DATA_DIR: dataDir,
        AUTOMR_MODEL_SERVER: NO_MODEL_SERVER,
        AUTOMR_BUNDLE: BUNDLE_DIR,
        AUTOMR_MAX_HISTORY: '5000',
      };
      try {
        await bus.publish(plan.messages);
        const total = plan.messages.length;
        const first = await spawnGateway(env);
        await waitFor(
          async () => ((await bus.unsettled()) ?? total) < total * 0.7,
          60_000,
          'a third consumed',
        );
        first.child.kill('SIGKILL');
        assert.equal(await first.exited, null, 'killed by the signal');
        const left = (await bus.unsettled()) ?? total;
        assert.ok(left > 0, 'killed before the end');
        const second = await spawnGateway(env);
        try {
          await waitFor(settled(bus), 60_000, 'all messages settled after the restart');
        } finally {
          second.child.kill('SIGTERM');
          await second.exited;
        }
        const store = new LmdbMemoryStore(dataDir);
        try {
          await assertExactlyOnce(store, plan);
        } finally {
          await store.close();
        }
        await assertDeadLetters(bus, plan);
      } finally {
        await bus.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    void test('a store outage stops the acks; afterwards consumption resumes and nothing is lost', async () => {
      const bus = await driver();
      const redis = await ownRedis();
      const prefix = `t-${randomBytes(4).toString('hex')}`;
      const plan = planEvents(1000, 1_700_200_000_000);
      const half = Math.floor(plan.messages.length / 2);
      const gateway = await startGateway(
        gatewayConfig(bus, { memoryStore: redis.url, redisPrefix: prefix, eventsRetryMaxMs: 500 }),
        { logger: silentLogger(), healthIntervalMs: 100 },
      );
      const health = healthClient(gateway.address);
      try {
        await bus.publish(plan.messages.slice(0, half));
        await waitFor(settled(bus), 30_000, 'the first half settled');
        await waitFor(
          async () => (await healthStatus(health, CONSUMER_HEALTH_SERVICE)) === 'SERVING',
          5_000,
          'the consumer reported SERVING',
        );
        await redis.kill();
        await bus.publish(plan.messages.slice(half));
        // Bad messages need no store: they may still be dead-lettered (and acked) during the outage.
        const validRest = plan.messages.slice(half).filter((m) => m.bad !== true).length;
        await waitFor(
          async () => (await healthStatus(health, CONSUMER_HEALTH_SERVICE)) === 'NOT_SERVING',
          5_000,
          'the consumer reported NOT_SERVING without its store',
        );
        await new Promise((r) => setTimeout(r, 1_500));
        assert.ok(
          ((await bus.unsettled()) ?? 0) >= validRest,
          'no valid event of the second half acked during the outage',
        );
        await redis.restart();
        await waitFor(settled(bus), 30_000, 'all messages settled after the store came back');
        const store = new RedisMemoryStore({ url: redis.url, prefix });
        try {
          await waitFor(() => store.ready(), 5_000, 'the store connected');
          await assertExactlyOnce(store, plan);
        } finally {
          await store.close();
        }
        await assertDeadLetters(bus, plan);
      } finally {
        health.close();
        await gateway.close();
        await bus.close();
        await redis.stop();
      }
    });
  });
}
