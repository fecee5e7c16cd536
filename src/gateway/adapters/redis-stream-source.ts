/**
 * EventSource on a Redis stream with a consumer group. Entries carry the event in field `payload` and optionally
 * its format in `content-type` (json | protobuf, or the MIME types).
 *
 * - New entries: XREADGROUP `>` on a connection of its own (it blocks), acks and dead letters on another.
 * - After a restart under the same consumer name, the entries this consumer had read but not acked (its pending
 *   list) are read again first, from id 0 on.
 * - Entries another consumer read and left unacked for `claimIdleMs` (it died) are taken over with XAUTOCLAIM.
 * - nak(delay): Redis has no negative ack, so the entry stays pending and is re-claimed by this consumer
 *   (XCLAIM, which counts a delivery) once the delay has passed; if this process dies first, XAUTOCLAIM of another
 *   consumer picks it up after the idle bound.
 * - terminate: XADD to the dead-letter stream (payload, reason, source-id, content-type), then XACK.
 * - Trimming is the producer's job (XADD ... MAXLEN ~ N or MINID): acked entries stay in the stream until then, and
 *   an entry trimmed while still pending is dropped from the pending list by XAUTOCLAIM.
 */
import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import { unavailable } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { EventSource, PayloadFormat, SourceMessage } from '../domain/event-source.js';
import { formatOf } from './event-payload.js';

export interface RedisStreamSourceOptions {
  url: string;
  stream: string;
  group: string;
  consumer: string;
  deadLetterStream: string;
  claimIdleMs: number;
  password?: string;
  tlsCaFile?: string;
  logger: Logger;
}

type RawEntry = [id: Buffer, fields: Buffer[] | null];

/** Field names of a stream entry (and of a dead letter). */
export const STREAM_FIELDS = {
  payload: 'payload',
  contentType: 'content-type',
  reason: 'reason',
  sourceId: 'source-id',
} as const;

export class RedisStreamSource implements EventSource {
  readonly kind = 'redis-streams';
  private reader: Redis | undefined;
  private writer: Redis | undefined;
  /** Where the re-read of this consumer's own pending list stands; undefined once it is done. */
  private ownCursor: string | undefined = '0';
  private claimCursor = '0-0';
  private lastClaim = 0;
  /** nak'ed entries: id → when to claim them again. */
  private readonly retries = new Map<string, number>();
  /** Entries handed out and not yet settled (so a claim does not hand one out twice). */
  private readonly outstanding = new Set<string>();
  /** Deliveries seen by this process, per entry (the count that drives the nak backoff). */
  private readonly deliveries = new Map<string, number>();

  constructor(private readonly o: RedisStreamSourceOptions) {}

  private client(blocking: boolean): Redis {
    const options: RedisOptions = {
      // Fail fast while disconnected: the loop reports the bus as down and retries.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      lazyConnect: true,
      connectTimeout: 2_000,
      retryStrategy: (times) => Math.min(2_000, 100 * times),
    };
    if (!blocking) options.commandTimeout = 2_000;
    if (this.o.password !== undefined) options.password = this.o.password;
    if (this.o.tlsCaFile !== undefined) options.tls = { ca: readFileSync(this.o.tlsCaFile) };
    const client = new Redis(this.o.url, options);
    client.on('error', (error: Error) =>
      this.o.logger.debug({ err: error.message }, 'events redis connection error'),
    );
    return client;
  }

  async start(): Promise<void> {
    await this.close();
    this.reader = this.client(true);
    this.writer = this.client(false);
    try {
      await Promise.all([this.reader.connect(), this.writer.connect()]);
      await this.writer.xgroup('CREATE', this.o.stream, this.o.group, '0', 'MKSTREAM');
    } catch (error) {
      if (!(error instanceof Error && error.message.startsWith('BUSYGROUP'))) {
        await this.close();
        throw unavailable(`cannot reach the events Redis (${(error as Error).message})`, error);
      }
    }
    this.ownCursor = '0';
  }

  async fetch(
    max: number,
    waitMs: number,
    deliver: (message: SourceMessage) => void,
    signal?: AbortSignal,
  ): Promise<number> {
    // Stopping ends a blocked XREADGROUP at once (its connection is not reused after stop).
    const reader = this.reader;
    const stop = () => reader?.disconnect();
    signal?.addEventListener('abort', stop, { once: true });
    let messages: SourceMessage[];
    try {
      messages = await this.read(max, waitMs);
    } finally {
      signal?.removeEventListener('abort', stop);
    }
    for (const m of messages) deliver(m);
    return messages.length;
  }

  private async read(max: number, waitMs: number): Promise<SourceMessage[]> {
    const reader = this.reader;
    const writer = this.writer;
    if (reader === undefined || writer === undefined) throw unavailable('events Redis is not connected');
    const { stream, group, consumer } = this.o;
    try {
      const due = this.dueRetries(max);
      if (due.length > 0) {
        const entries = (await writer.callBuffer('XCLAIM', stream, group, consumer, 0, ...due)) as RawEntry[];
        return this.wrapAll(entries, true);
      }
      if (this.ownCursor !== undefined) {
        const own = await this.readGroup(reader, max, this.ownCursor);
        const last = own[own.length - 1];
        if (last === undefined) this.ownCursor = undefined;
        else {
          this.ownCursor = last[0].toString();
          const messages = this.wrapAll(own, true);
          if (messages.length > 0) return messages;
        }
      }
      if (Date.now() - this.lastClaim >= this.o.claimIdleMs / 2) {
        this.lastClaim = Date.now();
        const [next, claimed] = (await writer.callBuffer(
          'XAUTOCLAIM',
          stream,
          group,
          consumer,
          this.o.claimIdleMs,
          this.claimCursor,
          'COUNT',
          max,
        )) as [Buffer, RawEntry[], Buffer[]];
        this.claimCursor = next.toString();
        const messages = this.wrapAll(claimed, true);
        if (messages.length > 0) return messages;
      }
      const fresh = await this.readGroup(reader, max, '>', Math.max(1, waitMs));
      return this.wrapAll(fresh, false);
    } catch (error) {
      throw unavailable(`events Redis read failed (${(error as Error).message})`, error);
    }
  }

  private dueRetries(max: number): string[] {
    const now = Date.now();
    const due: string[] = [];
    for (const [id, at] of this.retries) {
      if (at > now) continue;
      due.push(id);
      this.retries.delete(id);
      if (due.length >= max) break;
    }
    return due;
  }

  /** XREADGROUP of this consumer from `id` (`>`: new entries, blocking up to `blockMs`; else its pending list). */
  private async readGroup(reader: Redis, count: number, id: string, blockMs?: number): Promise<RawEntry[]> {
    const { stream, group, consumer } = this.o;
    const block = blockMs === undefined ? [] : ['BLOCK', blockMs];
    return this.readOf(
      await reader.callBuffer(
        'XREADGROUP',
        'GROUP',
        group,
        consumer,
        'COUNT',
        count,
        ...block,
        'STREAMS',
        stream,
        id,
      ),
    );
  }

  /** The entries of an XREADGROUP reply on one stream: `[[key, entries]]`, or `[key, entries]` as ioredis 6 gives it. */
  private readOf(reply: unknown): RawEntry[] {
    if (!Array.isArray(reply) || reply.length === 0) return [];
    const stream: unknown = Buffer.isBuffer(reply[0]) ? reply : reply[0];
    const entries = Array.isArray(stream) ? (stream[1] as unknown) : undefined;
    return Array.isArray(entries) ? (entries as RawEntry[]) : [];
  }

  private wrapAll(entries: RawEntry[], redelivered: boolean): SourceMessage[] {
    const out: SourceMessage[] = [];
    for (const [rawId, fields] of entries) {
      const id = rawId.toString();
      // A claim may return an entry this process already holds (slow processing) or is waiting to retry.
      if (this.outstanding.has(id) || (redelivered && this.retries.has(id))) continue;
      out.push(this.wrap(id, fields, redelivered));
    }
    return out;
  }

  private wrap(id: string, fields: Buffer[] | null, redelivered: boolean): SourceMessage {
    let payload: Buffer = Buffer.alloc(0);
    let format: PayloadFormat | undefined;
    let contentType = '';
    for (let i = 0; fields !== null && i + 1 < fields.length; i += 2) {
      const name = (fields[i] as Buffer).toString();
      const value = fields[i + 1] as Buffer;
      if (name === STREAM_FIELDS.payload) payload = value;
      else if (name === STREAM_FIELDS.contentType) {
        contentType = value.toString();
        format = formatOf(contentType);
      }
    }
    const deliveries = (this.deliveries.get(id) ?? (redelivered ? 1 : 0)) + 1;
    this.deliveries.set(id, deliveries);
    this.outstanding.add(id);
    const settle = () => {
      this.outstanding.delete(id);
      this.deliveries.delete(id);
    };
    const writer = () => {
      if (this.writer === undefined) throw unavailable('events Redis is not connected');
      return this.writer;
    };
    const { stream, group } = this.o;
    return {
      id,
      payload,
      format,
      redelivered,
      deliveries,
      ack: async () => {
        await writer().xack(stream, group, id);
        settle();
      },
      nak: (delayMs) => {
        this.outstanding.delete(id);
        this.retries.set(id, Date.now() + delayMs);
        return Promise.resolve();
      },
      terminate: async (reason) => {
        const w = writer();
        const dead = [
          STREAM_FIELDS.payload,
          payload,
          STREAM_FIELDS.reason,
          reason,
          STREAM_FIELDS.sourceId,
          id,
        ];
        if (contentType !== '') dead.push(STREAM_FIELDS.contentType, contentType);
        await w.xadd(this.o.deadLetterStream, '*', ...dead);
        await w.xack(stream, group, id);
        settle();
      },
    };
  }

  async pending(): Promise<number> {
    if (this.writer === undefined) return 0;
    const groups = (await this.writer.xinfo('GROUPS', this.o.stream)) as unknown[][];
    for (const g of groups) {
      const info = new Map<string, unknown>();
      for (let i = 0; i + 1 < g.length; i += 2) info.set(String(g[i]), g[i + 1]);
      if (info.get('name') !== this.o.group) continue;
      // lag: entries not yet delivered to the group (null when Redis cannot tell); pending: delivered, unacked.
      const lag = info.get('lag');
      return Number(info.get('pending') ?? 0) + (typeof lag === 'number' ? lag : 0);
    }
    return 0;
  }

  async ready(): Promise<boolean> {
    if (this.writer === undefined || this.writer.status !== 'ready') return false;
    return this.writer.ping().then(
      () => true,
      () => false,
    );
  }

  async close(): Promise<void> {
    const clients = [this.reader, this.writer];
    this.reader = undefined;
    this.writer = undefined;
    for (const c of clients) c?.disconnect();
    return Promise.resolve();
  }
}
