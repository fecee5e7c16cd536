/**
 * Event-stream test helpers: a real nats-server with JetStream (the machine's at 127.0.0.1:4222 when it answers,
 * else one started on a free port with a temporary store) and throw-away redis-servers, plus one driver per bus
 * that publishes, reads the dead letter and reports what is left unsettled, so every scenario runs on both buses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import type { GatewayConfig } from '../../src/gateway/config.js';
import { DEAD_LETTER_HEADERS } from '../../src/gateway/adapters/nats-event-source.js';
import { STREAM_FIELDS } from '../../src/gateway/adapters/redis-stream-source.js';
import { encodeIngestPayload } from '../../src/gateway/adapters/event-payload.js';
import { tempDir } from '../gateway/helpers.js';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.setTimeout(500);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
    s.once('timeout', () => (s.destroy(), resolve(false)));
    s.connect(port, '127.0.0.1');
  });
}

async function waitPort(port: number, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await reachable(port))) {
    if (Date.now() > deadline) throw new Error(`${what} did not start on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Server {
  url: string;
  port: number;
  stop(): Promise<void>;
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  await once(child, 'exit');
}

/** AUTOMR_TEST_NATS_URL (.ci/run's), the machine's NATS when it answers on 4222, else a nats-server -js of our own. */
export async function natsServer(): Promise<Server> {
  const given = process.env.AUTOMR_TEST_NATS_URL;
  if (given !== undefined && given !== '') {
    return { url: given, port: Number(new URL(given).port), stop: () => Promise.resolve() };
  }
  if (await reachable(4222))
    return { url: 'nats://127.0.0.1:4222', port: 4222, stop: () => Promise.resolve() };
  const port = await freePort();
  const dir = tempDir('automr-nats-');
  const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], {
    stdio: 'ignore',
  });
  await waitPort(port, 'nats-server');
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    async stop() {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A redis-server of our own (AOF on, so a restart on the same directory keeps what was acked). */
export interface OwnRedis extends Server {
  restart(): Promise<void>;
  kill(): Promise<void>;
}

export async function ownRedis(): Promise<OwnRedis> {
  const port = await freePort();
  const dir = tempDir('automr-redis-');
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
      ],
      { stdio: 'ignore' },
    );
    await waitPort(port, 'redis-server');
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    async kill() {
      if (child !== undefined) await stopChild(child, 'SIGKILL');
    },
    async restart() {
      await start();
    },
    async stop() {
      if (child !== undefined) await stopChild(child, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Published {
  data: Uint8Array;
  contentType?: string;
  /** Malformed or rejected: bound for the dead letter. */
  bad?: true;
}

export interface DeadLetter {
  payload: Buffer;
  reason: string;
}

/** One bus under test: its gateway settings (unique names) and what the test needs to drive and observe it. */
export interface BusDriver {
  name: 'nats' | 'redis-streams';
  config: Partial<GatewayConfig>;
  env: Record<string, string>;
  publish(messages: Published[]): Promise<void>;
  deadLetters(): Promise<DeadLetter[]>;
  /** Messages not yet settled by the gateway's consumer (group); undefined before it exists. */
  unsettled(): Promise<number | undefined>;
  close(): Promise<void>;
}

const envOf = (config: Partial<GatewayConfig>, names: Record<string, string>): Record<string, string> => {
  const env: Record<string, string> = {};
  for (const [key, envName] of Object.entries(names)) {
    const v = (config as Record<string, string | number | boolean | undefined>)[key];
    if (v !== undefined) env[envName] = String(v);
  }
  return env;
};

export async function natsDriver(url: string): Promise<BusDriver> {
  const tag = randomBytes(4).toString('hex');
  const stream = `T_${tag}`;
  const config: Partial<GatewayConfig> = {
    events: 'nats',
    natsUrl: url,
    natsStream: stream,
    natsSubject: `t.${tag}.events.>`,
    natsConsumer: `c_${tag}`,
    natsDeadLetterSubject: `t.${tag}.dead`,
    natsCreateStream: true,
    natsAckWaitMs: 2_000,
  };
  const nc: NatsConnection = await connect({ servers: url });
  const jsm: JetStreamManager = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [`t.${tag}.events.>`] });
  await jsm.streams.add({ name: `${stream}_DEAD_LETTER`, subjects: [`t.${tag}.dead`] });
  const js = jetstream(nc);
  return {
    name: 'nats',
    config,
    env: envOf(config, {
      events: 'AUTOMR_EVENTS',
      natsUrl: 'AUTOMR_NATS_URL',
      natsStream: 'AUTOMR_NATS_STREAM',
      natsSubject: 'AUTOMR_NATS_SUBJECT',
      natsConsumer: 'AUTOMR_NATS_CONSUMER',
      natsDeadLetterSubject: 'AUTOMR_NATS_DEAD_LETTER_SUBJECT',
      natsAckWaitMs: 'AUTOMR_NATS_ACK_WAIT_MS',
    }),
    async publish(messages) {
      for (let i = 0; i < messages.length; i += 500) {
        await Promise.all(
          messages.slice(i, i + 500).map((m, j) => {
            const h = headers();
            if (m.contentType !== undefined) h.set('Content-Type', m.contentType);
            return js.publish(`t.${tag}.events.u${(i + j) % 16}`, m.data, { headers: h });
          }),
        );
      }
    },
    async deadLetters() {
      const c = await jsm.consumers.add(`${stream}_DEAD_LETTER`, { ack_policy: AckPolicy.None });
      const consumer = await js.consumers.get(`${stream}_DEAD_LETTER`, c.name);
      const info = await jsm.streams.info(`${stream}_DEAD_LETTER`);
      const out: DeadLetter[] = [];
      const total = info.state.messages;
      while (out.length < total) {
        const batch = await consumer.fetch({ max_messages: total - out.length, expires: 1_000 });
        for await (const m of batch) {
          out.push({
            payload: Buffer.from(m.data),
            reason: m.headers?.get(DEAD_LETTER_HEADERS.reason) ?? '',
          });
        }
      }
      await jsm.consumers.delete(`${stream}_DEAD_LETTER`, c.name);
      return out;
    },
    async unsettled() {
      try {
        const info = await jsm.consumers.info(stream, `c_${tag}`);
        return info.num_pending + info.num_ack_pending;
      } catch {
        return undefined;
      }
    },
    async close() {
      await jsm.streams.delete(stream).catch(() => undefined);
      await jsm.streams.delete(`${stream}_DEAD_LETTER`).catch(() => undefined);
      await nc.close();
    },
  };
}

export async function redisStreamsDriver(url: string): Promise<BusDriver> {
  const tag = randomBytes(4).toString('hex');
  const config: Partial<GatewayConfig> = {
    events: 'redis-streams',
    eventsRedisUrl: url,
    eventsStream: `t:${tag}:events`,
    eventsGroup: `g-${tag}`,
    eventsConsumerName: `c-${tag}`,
    eventsDeadLetterStream: `t:${tag}:dead`,
    eventsClaimIdleMs: 2_000,
  };
  const redis = new Redis(url, { lazyConnect: true });
  await redis.connect();
  const stream = `t:${tag}:events`;
  return {
    name: 'redis-streams',
    config,
    env: envOf(config, {
      events: 'AUTOMR_EVENTS',
      eventsRedisUrl: 'AUTOMR_EVENTS_REDIS_URL',
      eventsStream: 'AUTOMR_EVENTS_STREAM',
      eventsGroup: 'AUTOMR_EVENTS_GROUP',
      eventsConsumerName: 'AUTOMR_EVENTS_CONSUMER_NAME',
      eventsDeadLetterStream: 'AUTOMR_EVENTS_DEAD_LETTER_STREAM',
      eventsClaimIdleMs: 'AUTOMR_EVENTS_CLAIM_IDLE_MS',
    }),
    async publish(messages) {
      for (let i = 0; i < messages.length; i += 500) {
        const p = redis.pipeline();
        for (const m of messages.slice(i, i + 500)) {
          const fields: (string | Buffer)[] = [STREAM_FIELDS.payload, Buffer.from(m.data)];
          if (m.contentType !== undefined) fields.push(STREAM_FIELDS.contentType, m.contentType);
          p.xadd(stream, '*', ...fields);
        }
        await p.exec();
      }
    },
    async deadLetters() {
      const entries = (await redis.xrangeBuffer(`t:${tag}:dead`, '-', '+')) as [Buffer, Buffer[]][];
      return entries.map(([, fields]) => {
        const m = new Map<string, Buffer>();
        for (let i = 0; i + 1 < fields.length; i += 2) m.set(String(fields[i]), fields[i + 1] as Buffer);
        return { payload: m.get('payload') ?? Buffer.alloc(0), reason: String(m.get('reason') ?? '') };
      });
    },
    async unsettled() {
      try {
        const groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
        for (const g of groups) {
          const info = new Map<string, unknown>();
          for (let i = 0; i + 1 < g.length; i += 2) info.set(String(g[i]), g[i + 1]);
          if (info.get('name') === `g-${tag}`)
            return Number(info.get('pending')) + Number(info.get('lag') ?? 0);
        }
      } catch {
        // stream not created yet
      }
      return undefined;
    },
    async close() {
      await redis.del(stream, `t:${tag}:dead`);
      redis.disconnect();
    },
  };
}

export interface EventPlan {
  messages: Published[];
  /** event ids per user, each once: what memory must hold in the end. */
  expected: Map<string, Set<string>>;
  malformed: number;
}

/**
 * `unique` events of 50 per user, in both payload formats, plus resent duplicates (5 %) and 1 % bad messages:
 * broken JSON, bytes that are no protobuf, and well-formed events the ingest service rejects (empty user_id).
 */
export function planEvents(unique: number, base = 1_700_000_000_000): EventPlan {
  const messages: Published[] = [];
  const expected = new Map<string, Set<string>>();
  let malformed = 0;
  const users = Math.max(1, Math.ceil(unique / 50));
  for (let i = 0; i < unique; i++) {
    const user = `user-${i % users}`;
    const event = { event_id: `e${i}`, user_id: user, item_id: String(1 + (i % 40)), timestamp_ms: base + i };
    const json = i % 2 === 0;
    const msg: Published = json
      ? { data: encodeIngestPayload(event, 'json'), contentType: 'application/json' }
      : { data: encodeIngestPayload(event, 'protobuf') };
    messages.push(msg);
    if (i % 20 === 7) messages.push(msg); // duplicate delivery by the producer
    let set = expected.get(user);
    if (set === undefined) expected.set(user, (set = new Set()));
    set.add(event.event_id);
    if (i % 100 === 50) {
      malformed++;
      // Each one unique, so a test can tell that every bad message reached the dead letter.
      const kind = Math.floor(i / 100) % 3;
      if (kind === 0)
        messages.push({ data: Buffer.from(`{"event_id": "x${i}", broken`), contentType: 'json', bad: true });
      else if (kind === 1) {
        // A valid message followed by a field of wire type 7, which does not exist.
        const whole = encodeIngestPayload({ ...event, event_id: `t${i}` }, 'protobuf');
        messages.push({ data: Buffer.concat([whole, Buffer.from([0x0f])]), bad: true });
      } else {
        const bad = { event_id: `bad${i}`, user_id: '', item_id: '1', timestamp_ms: base };
        messages.push({ data: encodeIngestPayload(bad, 'json'), contentType: 'application/json', bad: true });
      }
    }
  }
  return { messages, expected, malformed };
}
