/**
 * MemoryStore on Redis (or Redis Cluster) for deployments of several gateways. Every key of a user carries the
 * hash tag `{u:<user>}`, so Redis Cluster keeps a user on one shard (resharding moves a user's keys together) and
 * one Lua script appends atomically: idempotency check, arrival sequence, insertion in (timestamp, arrival) order
 * and trimming happen in a single step, so concurrent streams for one user lose nothing. Idempotency keys expire
 * after a TTL. No key outside a user's slot is written on the hot path: there is no global user index (the
 * `reencode` command finds users by SCAN over every master).
 *
 * Per user: `seq` (counter), `z` (sorted set: score = timestamp, member = zero-padded seq, so ties keep arrival
 * order), `e` (hash seq → event JSON), `i` (sorted set eventId → expiry time), `c` (the consumed set: sorted set
 * itemId → newest event time, the oldest evicted beyond `consumedMax`, updated by the append script itself, so it
 * is exactly as durable as the event), `g` (the generation token of the user's data, see the tail cache), and
 * encodings per model version: `v:<version>` (hash seq → encoding) with
 * `vv` (hash version → last write, ms). Gateways of two bundle versions (a rolling update) each read and write
 * their own `v:<version>`, so neither overwrites the other's vectors; a version no gateway has written for the
 * user within the grace period is dropped at the next write of another. Those keys are named inside the scripts
 * from the user's key base: they share its hash tag, so its slot.
 * Durability of an acked event is whatever the Redis server's persistence (AOF/replication) guarantees.
 * Tail cache (`tail-cache.ts`): the encoder's `readTail` after an append is answered in process when this store's own
 * appends since its last tail read of the user took every arrival sequence number (`seq`) in between, within the
 * same generation `g` (a random token the first append sets and forget deletes); a number taken by another gateway
 * or a forget makes it read Redis again. Encodings written by other gateways are not seen there: at worst an
 * element is encoded twice.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { Cluster, Redis } from 'ioredis';
import type { Logger } from '../../shared/logger.js';
import { AppError, throwIfAborted, untilAborted } from '../../shared/errors.js';
import {
  clusterRetryStrategy,
  redisConnectionOptions,
  type RedisConnectionSettings,
} from './redis-connection.js';
import { isClusterUrl, parseClusterUrl } from './redis-url.js';
import type { AppendResult, MemoryStore, NewEvent, StoredEntry, VectorUpdate } from '../domain/ports.js';
import { TailCache } from './tail-cache.js';

const APPEND_LUA = `
local seqKey, zKey, eKey, vvKey, iKey, cKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local eventId, payload, ts = ARGV[1], ARGV[2], ARGV[3]
local now, ttl, maxHistory = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', iKey, '-inf', now)
if redis.call('ZSCORE', iKey, eventId) then return {0, 0} end
local seq = redis.call('INCR', seqKey)
local generation = redis.call('GET', KEYS[7])
if not generation then
  generation = ARGV[11]
  redis.call('SET', KEYS[7], generation)
end
local member = string.format('%016d', seq)
redis.call('ZADD', iKey, now + ttl, eventId)
redis.call('PEXPIRE', iKey, ttl)
redis.call('ZADD', zKey, ts, member)
redis.call('HSET', eKey, member, payload)
local keep = maxHistory + tonumber(ARGV[7])
local n = redis.call('ZCARD', zKey)
if n > keep then
  local old = redis.call('ZRANGE', zKey, 0, n - keep - 1)
  redis.call('ZREMRANGEBYRANK', zKey, 0, n - keep - 1)
  redis.call('HDEL', eKey, unpack(old))
  for _, version in ipairs(redis.call('HKEYS', vvKey)) do
    redis.call('HDEL', ARGV[10] .. ':v:' .. version, unpack(old))
  end
end
-- GT: an event older than the item's newest known one does not move it; new items are added.
redis.call('ZADD', cKey, 'GT', ts, ARGV[8])
local consumed, consumedMax = redis.call('ZCARD', cKey), tonumber(ARGV[9])
if consumed > consumedMax then redis.call('ZREMRANGEBYRANK', cKey, 0, consumed - consumedMax - 1) end
local dropped = 0
if n > maxHistory then
  -- trimmed, or kept only as window context before the history view
  local rank = redis.call('ZREVRANK', zKey, member)
  if not rank or rank >= maxHistory then dropped = 1 end
end
return {1, seq, dropped, generation}
`;

// Only entries still present get an encoding, so a racing trim or ForgetUser is never undone. Versions not
// written within the grace period (ARGV[2] ms) are dropped.
const PUT_VECTORS_LUA = `
local eKey, vvKey, vKey = KEYS[1], KEYS[2], KEYS[3]
local now, grace, base, version = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local written = false
for i = 5, #ARGV, 2 do
  if redis.call('HEXISTS', eKey, ARGV[i]) == 1 then
    redis.call('HSET', vKey, ARGV[i], ARGV[i + 1])
    written = true
  end
end
if not written then return 0 end
redis.call('HSET', vvKey, version, now)
local versions = redis.call('HGETALL', vvKey)
local dropped = 0
for i = 1, #versions, 2 do
  if versions[i] ~= version and now - tonumber(versions[i + 1]) > grace then
    redis.call('DEL', base .. ':v:' .. versions[i])
    redis.call('HDEL', vvKey, versions[i])
    dropped = dropped + 1
  end
end
return dropped
`;

// The entries scored at or after ARGV[1] plus ARGV[2] before them, with their payloads and encodings, and the
// user's last arrival sequence number (the tail cache's check for other writers).
const READ_TAIL_LUA = `
local zKey, eKey, vKey = KEYS[1], KEYS[2], KEYS[3]
local seq = redis.call('GET', KEYS[4]) or '0'
local generation = redis.call('GET', KEYS[5]) or ''
local start = redis.call('ZCOUNT', zKey, '-inf', '(' .. ARGV[1]) - tonumber(ARGV[2])
if start < 0 then start = 0 end
local z = redis.call('ZRANGE', zKey, start, -1, 'WITHSCORES')
if #z == 0 then return {z, {}, {}, seq, generation} end
local members = {}
for i = 1, #z, 2 do members[#members + 1] = z[i] end
return {z, redis.call('HMGET', eKey, unpack(members)), redis.call('HMGET', vKey, unpack(members)), seq, generation}
`;

const FORGET_LUA = `
local n = redis.call('ZCARD', KEYS[2])
for _, version in ipairs(redis.call('HKEYS', KEYS[4])) do redis.call('DEL', ARGV[1] .. ':v:' .. version) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return n
`;

type Client = Redis | Cluster;

const READY_TIMEOUT_MS = 400;
/** Append scripts of one `appendMany` sent but not yet answered (a pipeline deep enough for one connection). */
const APPEND_WINDOW = 512;

interface ScriptClient {
  automrAppend(...args: (string | number)[]): Promise<[number, number, number, string]>;
  automrPutVectors(...args: (string | Buffer)[]): Promise<number>;
  automrForget(...args: string[]): Promise<number>;
  automrReadTailBuffer(
    ...args: string[]
  ): Promise<[Buffer[], (Buffer | null)[], (Buffer | null)[], Buffer, Buffer]>;
}

export interface RedisStoreOptions {
  /** A URL as `redis-url.ts` describes: redis[s]://[user:pass@]host:port[/db] or redis[s]-cluster://[user:pass@]h1:p1,... */
  url: string;
  prefix?: string;
  idempotencyTtlMs?: number;
  /** Consumed items kept per user (the newest by event time); default 10,000. */
  consumedMax?: number;
  /** The model version whose encodings this store reads and writes (the gateway's bundle version). */
  modelVersion?: string;
  /** How long encodings of a version no gateway writes any more are kept (ms; default 1 day). */
  vectorGraceMs?: number;
  logger?: Logger;
  /** TLS, credentials and command timeout (see redis-connection.ts). */
  connection?: RedisConnectionSettings;
}

export class RedisMemoryStore implements MemoryStore {
  readonly kind = 'redis';
  private readonly client: Client & ScriptClient;
  private readonly prefix: string;
  private readonly ttlMs: number;
  private readonly consumedMax: number;
  private readonly modelVersion: string;
  private readonly vectorGraceMs: number;
  private readonly tails = new TailCache();
  /** The last `appendMany` call (each waits for the one before it). */
  private appendManyTail: Promise<unknown> = Promise.resolve();

  constructor(options: RedisStoreOptions) {
    this.prefix = options.prefix ?? 'automr';
    this.ttlMs = options.idempotencyTtlMs ?? 7 * 24 * 3600 * 1000;
    this.consumedMax = options.consumedMax ?? 10_000;
    this.modelVersion = options.modelVersion ?? 'default';
    this.vectorGraceMs = options.vectorGraceMs ?? 24 * 3600 * 1000;
    const common = redisConnectionOptions(options.url, options.connection);
    let client: Client;
    if (isClusterUrl(options.url)) {
      // Credentials in the URL win over the separate settings; rediss-cluster:// turns TLS on like a CA file does.
      const url = parseClusterUrl(options.url);
      const tls = common.tls ?? (url.tls ? {} : undefined);
      client = new Cluster(url.nodes, {
        redisOptions: {
          ...common,
          ...(url.username !== undefined ? { username: url.username } : {}),
          ...(url.password !== undefined ? { password: url.password } : {}),
          ...(tls !== undefined ? { tls } : {}),
        },
        enableOfflineQueue: false,
        clusterRetryStrategy,
        // With TLS the node's host name must reach the TLS handshake (certificate check), not a resolved IP.
        ...(tls !== undefined ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
      });
    } else {
      client = new Redis(options.url, common);
    }
    client.on('error', (error: Error) =>
      options.logger?.warn({ err: error.message }, 'redis connection error'),
    );
    client.defineCommand('automrAppend', { numberOfKeys: 7, lua: APPEND_LUA });
    client.defineCommand('automrPutVectors', { numberOfKeys: 3, lua: PUT_VECTORS_LUA });
    client.defineCommand('automrForget', { numberOfKeys: 7, lua: FORGET_LUA });
    client.defineCommand('automrReadTail', { numberOfKeys: 5, lua: READ_TAIL_LUA });
    this.client = client as Client & ScriptClient;
  }

  private keys(userId: string) {
    const base = `${this.prefix}:{u:${userId}}`;
    return {
      base,
      seq: `${base}:seq`,
      z: `${base}:z`,
      e: `${base}:e`,
      i: `${base}:i`,
      c: `${base}:c`,
      g: `${base}:g`,
      vv: `${base}:vv`,
      v: `${base}:v:${this.modelVersion}`,
    };
  }

  async ready(): Promise<boolean> {
    // Health probes answer within READY_TIMEOUT_MS even when Redis accepts the connection but hangs.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>(
      (resolve) => (timer = setTimeout(() => resolve(false), READY_TIMEOUT_MS)),
    );
    try {
      // A connection being (re-)established is waited for within the same bound: commands are not queued.
      const connected =
        this.client.status === 'ready' ? Promise.resolve() : once(this.client, 'ready').then(() => undefined);
      return await Promise.race([connected.then(() => this.client.ping()).then((r) => r === 'PONG'), late]);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The scripts of `append`, all sent at once (ioredis pipelines them on the connection), in array order. */
  async appendMany(
    events: readonly NewEvent[],
    maxHistory: number,
    context = 0,
  ): Promise<AppendResult['status'][]> {
    // The scripts go out in order on the connection with at most APPEND_WINDOW unanswered: a whole import batch
    // sent at once would queue in Redis past the per-command timeout. Calls run one after another, so batches in
    // flight together keep their order (the arrival sequence is file order, as in LMDB's one transaction each).
    const run = this.appendManyTail.then(async () => {
      const sent: Promise<AppendResult>[] = [];
      for (const [i, event] of events.entries()) {
        if (i >= APPEND_WINDOW) await sent[i - APPEND_WINDOW];
        const result = this.append(event, maxHistory, context);
        result.catch(() => undefined); // the first failure is thrown by the await above or below
        sent.push(result);
      }
      return (await Promise.all(sent)).map((r) => r.status);
    });
    this.appendManyTail = run.catch(() => undefined);
    return run;
  }

  async append(event: NewEvent, maxHistory: number, context = 0): Promise<AppendResult> {
    const k = this.keys(event.userId);
    const payload = JSON.stringify({ id: event.eventId, item: event.itemId, tok: event.token });
    const args = [
      event.eventId,
      payload,
      event.timestampMs,
      Date.now(),
      this.ttlMs,
      maxHistory,
      context,
      event.itemId,
      this.consumedMax,
      k.base,
      randomUUID(),
    ];
    let reply: [number, number, number, string];
    try {
      reply = await this.call(() => this.client.automrAppend(k.seq, k.z, k.e, k.vv, k.i, k.c, k.g, ...args));
    } catch (error) {
      this.tails.delete(event.userId); // whether it was applied is unknown
      throw error;
    }
    const [accepted, seq, dropped, generation] = reply;
    if (accepted === 0) return { status: 'duplicate' };
    const { userId, eventId, itemId, token, timestampMs } = event;
    this.tails.insert(userId, { eventId, itemId, token, timestampMs, seq }, maxHistory + context, generation);
    return { status: 'accepted', seq, dropped: dropped === 1 };
  }

  async read(userId: string, signal?: AbortSignal): Promise<StoredEntry[]> {
    const k = this.keys(userId);
    // One round trip; MULTI keeps the three reads consistent (all keys share the user's slot).
    const replies = await this.call(
      () => this.client.multi().zrange(k.z, '0', '-1', 'WITHSCORES').hgetall(k.e).hgetallBuffer(k.v).exec(),
      signal,
    );
    if (replies === null)
      throw new AppError('UNAVAILABLE', 'memory store read was aborted', { retryable: true });
    for (const [error] of replies)
      if (error)
        throw new AppError('UNAVAILABLE', 'memory store read failed', { cause: error, retryable: true });
    const z = replies[0]?.[1] as string[];
    const e = replies[1]?.[1] as Record<string, string>;
    const v = replies[2]?.[1] as Record<string, Buffer>;
    const entries: StoredEntry[] = [];
    for (let i = 0; i + 1 < z.length; i += 2) {
      const member = z[i] as string;
      const raw = e[member];
      if (raw === undefined) continue;
      const ev = JSON.parse(raw) as { id: string; item: string; tok: number };
      const entry: StoredEntry = {
        eventId: ev.id,
        itemId: ev.item,
        token: ev.tok,
        timestampMs: Number(z[i + 1]),
        seq: Number(member),
      };
      const enc = v[member];
      if (enc !== undefined) Object.assign(entry, decodeVector(enc));
      entries.push(entry);
    }
    return entries;
  }

  async readTail(userId: string, sinceTimestampMs: number, context: number): Promise<StoredEntry[]> {
    const cached = this.tails.get(userId, sinceTimestampMs, context);
    if (cached !== undefined) return cached;
    const k = this.keys(userId);
    const [z, e, v, lastSeq, generation] = await this.call(() =>
      this.client.automrReadTailBuffer(k.z, k.e, k.v, k.seq, k.g, String(sinceTimestampMs), String(context)),
    );
    const entries: StoredEntry[] = [];
    for (let i = 0; i + 1 < z.length; i += 2) {
      const raw = e[i / 2];
      if (raw === null || raw === undefined) continue;
      const ev = JSON.parse(raw.toString('utf8')) as { id: string; item: string; tok: number };
      const entry: StoredEntry = {
        eventId: ev.id,
        itemId: ev.item,
        token: ev.tok,
        timestampMs: Number((z[i + 1] as Buffer).toString('latin1')),
        seq: Number((z[i] as Buffer).toString('latin1')),
      };
      const enc = v[i / 2];
      if (enc !== null && enc !== undefined) entry.encKey = decodeEncKey(enc);
      entries.push(entry);
    }
    // The whole history when fewer entries precede `sinceTimestampMs` than `context` asked for.
    const before = entries.findIndex((x) => x.timestampMs >= sinceTimestampMs);
    const all = (before < 0 ? entries.length : before) < context;
    this.tails.keep(userId, entries, all, {
      lastSeq: Number(lastSeq.toString('latin1')),
      token: generation.toString('utf8'),
    });
    return entries;
  }

  async putVectors(userId: string, updates: VectorUpdate[]): Promise<void> {
    if (updates.length === 0) return;
    const k = this.keys(userId);
    const args: (string | Buffer)[] = [
      String(Date.now()),
      String(this.vectorGraceMs),
      k.base,
      this.modelVersion,
    ];
    for (const up of updates) args.push(String(up.seq).padStart(16, '0'), encodeVector(up.encKey, up.vector));
    try {
      await this.call(() => this.client.automrPutVectors(k.e, k.vv, k.v, ...args));
    } catch (error) {
      this.tails.delete(userId);
      throw error;
    }
    this.tails.setKeys(userId, updates);
  }

  async consumed(userId: string, signal?: AbortSignal): Promise<string[]> {
    return this.call(() => this.client.zrange(this.keys(userId).c, '0', '-1'), signal);
  }

  async forget(userId: string): Promise<number> {
    const k = this.keys(userId);
    this.tails.delete(userId);
    try {
      return await this.call(() => this.client.automrForget(k.seq, k.z, k.e, k.vv, k.i, k.c, k.g, k.base));
    } finally {
      this.tails.delete(userId);
    }
  }

  /**
   * Every user with a history: SCAN over each master for the users' `z` keys (not a hot-path operation: the
   * `reencode` command uses it). A user may be listed twice when the keyspace changes during the scan.
   */
  async *users(): AsyncIterable<string> {
    const head = `${this.prefix}:{u:`;
    const tail = '}:z';
    const nodes: Redis[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await this.call(() =>
          node.scan(cursor, 'MATCH', `${head}*${tail}`, 'COUNT', 1000),
        );
        cursor = next;
        for (const key of keys) yield key.slice(head.length, key.length - tail.length);
      } while (cursor !== '0');
    }
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }

  /** One store operation: refused when the signal has fired, and given up (not waited for) when it fires. */
  private async call<T>(op: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    throwIfAborted(signal);
    try {
      return await (signal === undefined ? op() : untilAborted(op(), signal));
    } catch (error) {
      throwIfAborted(signal);
      throw new AppError('UNAVAILABLE', 'memory store (redis) unavailable', {
        cause: error,
        retryable: true,
      });
    }
  }
}

// Encoding = 2-byte key length, key bytes, then the float32 vector (little-endian, as on every supported host).
function encodeVector(encKey: string, vector: Float32Array): Buffer {
  const key = Buffer.from(encKey, 'utf8');
  const out = Buffer.alloc(2 + key.length + vector.byteLength);
  out.writeUInt16LE(key.length, 0);
  key.copy(out, 2);
  Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).copy(out, 2 + key.length);
  return out;
}

function decodeEncKey(buf: Buffer): string {
  return buf.subarray(2, 2 + buf.readUInt16LE(0)).toString('utf8');
}

function decodeVector(buf: Buffer): { encKey: string; vector: Float32Array } {
  const n = buf.readUInt16LE(0);
  const encKey = decodeEncKey(buf);
  const bytes = new Uint8Array(buf.subarray(2 + n)); // copy → aligned
  return { encKey, vector: new Float32Array(bytes.buffer, 0, bytes.byteLength / 4) };
}
