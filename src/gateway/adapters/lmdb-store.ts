/**
 * Embedded durable MemoryStore on LMDB (the `lmdb` package). Group commit: the appends and encodings submitted in
 * one event-loop turn (concurrent streams and users alike) are applied in submission order by one transaction
 * callback (synchronous puts, as the bulk import's `appendMany`), committed off the main thread; `append` resolves
 * only after that commit is flushed to disk, so an acked event survives kill -9 of the process and a power cut.
 *
 * Layout (ordered-binary array keys): ['e', user, timestampMs, seq] → entry, ['i', user, eventId] → seq
 * (idempotency) and ['q', user, seq] → eventId (its arrival order), ['c', user] → last seq; the consumed set: ['s', user, itemId] → [timestampMs, seq] of the item's
 * newest event, and ['o', user, timestampMs, seq] → itemId, its recency order (the oldest are evicted beyond
 * `consumedMax`). The consumed item is written in the same transaction as the event. One gateway process owns a data directory (lmdb's lock allows more
 * readers, but the sequence numbers are handed out in-process), and the
 * idempotency key is checked inside the writing transaction, so a duplicate can never be stored twice.
 * The idempotency index is bounded per user: each append's transaction drops the keys of appends more than
 * `idempotencyMax` sequence numbers older, never fewer than the history
 * plus window context, so a stored event is always a duplicate; a resend from beyond the bound is accepted again.
 * The history cap, the consumed set's bound and encodings are applied inside the same transaction as the appends,
 * so no step reads state that a queued write is about to change.
 *
 * Read cache: `read` keeps the decoded entries (vectors included) of the most recently read users, shared between
 * callers (read-only), so repeated Recommends of an unchanged user skip the decode. A history is cached on its second
 * read since the user's last write: one read per write (Recommend after every event) never pays for keeping it.
 * Since this process is the only writer, every write of a user drops its cached entries when it is issued and again when it completes, and a read
 * made while a write of the user is in flight is not cached: a cached history is always the committed one.
 *
 * Tail cache (`tail-cache.ts`): `readTail` (the encoder's read after every append) keeps the newest entries of the
 * users it read (keys, no vectors), and every committed write of this process updates them in place of a new read;
 * a late event older than a partial tail, a failed write or `forget` drops the user's tail.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { open, type Key, type RootDatabase } from 'lmdb';
import { Coalescer } from '../../shared/coalescer.js';
import { AppError, throwIfAborted } from '../../shared/errors.js';
import type { AppendResult, MemoryStore, NewEvent, StoredEntry, VectorUpdate } from '../domain/ports.js';
import { KeyedMutex } from '../domain/keyed-mutex.js';
import { setMostRecent, TailCache } from './tail-cache.js';

interface EntryValue {
  id: string;
  item: string;
  tok: number;
  k?: string;
  v?: Uint8Array;
}

/** Values: entries, seqs (idempotency, last seq), consumed [timestampMs, seq] and order → itemId. */
type StoredValue = EntryValue | number | string | [number, number];

const MAX_TS = Number.MAX_SAFE_INTEGER;

/** An entry from its key ['e', user, timestampMs, seq] and value, with its encoding key but not its vector. */
function entryOf(key: Key, v: EntryValue): StoredEntry {
  const k = key as [string, string, number, number];
  const entry: StoredEntry = { eventId: v.id, itemId: v.item, token: v.tok, timestampMs: k[2], seq: k[3] };
  if (v.k !== undefined) entry.encKey = v.k;
  return entry;
}
/**
 * Keys ['s', user, itemId] of one user's consumed set. Array elements are joined by byte 30 in ordered-binary, so
 * ['s', user + U+001F] sorts after every ['s', user, …] and before any other user's keys (user ids hold no
 * control characters: validation refuses them).
 */
function consumedRange(u: string): { start: Key; end: Key } {
  return { start: ['s', u], end: ['s', `${u}\u001f`] };
}

/** One write of a group commit: an append, or encodings of one user. */
type BatchedWrite =
  | {
      kind: 'append';
      event: NewEvent;
      maxHistory: number;
      context: number;
      /** Taken when `append` was called (a resend caught in the transaction leaves it unused); else taken there. */
      seq?: number;
    }
  | { kind: 'vectors'; userId: string; updates: VectorUpdate[] };

/** A write's result: an append's, or none for encodings. */
interface BatchedResult {
  append?: AppendResult;
}

/**
 * Most writes per group commit: one transaction callback holds the main thread for its whole batch (20–40 µs of
 * CPU per append as measured by scripts/measure-ingest.ts on a loaded machine), so a burst is cut into several.
 */
const MAX_COMMIT_BATCH = 1024;

/** Vectors per shared allocation in `read` (a full history is 109 entries). */
const VECTORS_PER_POOL = 128;
/** Users whose decoded history `read` keeps by default (a full history with 64-float vectors is ~45 KB). */
const DEFAULT_CACHED_USERS = 1024;
export interface LmdbStoreOptions {
  /** Users whose decoded history is kept for `read` (least recently read dropped first); 0 turns it off. */
  cachedUsers?: number;
  /** Consumed items kept per user (the newest by event time); default 10,000. */
  consumedMax?: number;
  /** Event ids kept per user for idempotency (of the newest appends); default 10,000. */
  idempotencyMax?: number;
}

export const DEFAULT_CONSUMED_MAX = 10_000;
/** As many as the consumed set holds items: a resend of any event it still covers stays a duplicate. */
export const DEFAULT_IDEMPOTENCY_MAX = 10_000;

export class LmdbMemoryStore implements MemoryStore {
  readonly kind = 'lmdb';
  private readonly db: RootDatabase<StoredValue, Key>;
  /** Serialises the read-then-write steps that remove or rewrite entries (trim, vectors, forget) per user. */
  private readonly locks = new KeyedMutex();
  /** Last arrival sequence per user, ahead of what is committed. */
  private readonly seqs = new Map<string, number>();
  /** Appends issued but not yet committed, per user and event id. */
  private readonly pending = new Map<string, Map<string, Promise<unknown>>>();
  private readonly forgetting = new Map<string, Promise<number>>();
  /** Decoded histories, least recently read first. */
  private readonly cache = new Map<string, readonly StoredEntry[]>();
  private readonly cachedUsers: number;
  /** Consumed sets of users whose history is cached, dropped with it by every write of the user. */
  private readonly consumedCache = new Map<string, readonly string[]>();
  /** Users read once since their last write (cached on the next read), oldest first. */
  private readonly readOnce = new Map<string, true>();
  /** Writes issued and not yet completed, per user (their reads are not cached). */
  private readonly writing = new Map<string, number>();
  /**
   * Newest entries per user for the encoder's `readTail` (the read after every append), so that a pass does not
   * decode the window context (vectors included) again. Updated after each commit with idempotent steps (insert by
   * seq, set a key, drop by seq), so a tail read from the store while a write is in flight stays right.
   */
  private readonly tails = new TailCache();
  private closed = false;
  private readonly consumedMax: number;
  private readonly idempotencyMax: number;
  /** Appends and encodings of one event-loop turn, committed as one transaction. */
  private readonly commits = new Coalescer<BatchedWrite, BatchedResult>({
    maxBatch: MAX_COMMIT_BATCH,
    delayMs: 0,
    run: (batch) => this.commit(batch),
  });

  constructor(dataDir: string, options: LmdbStoreOptions = {}) {
    this.cachedUsers = options.cachedUsers ?? DEFAULT_CACHED_USERS;
    this.consumedMax = options.consumedMax ?? DEFAULT_CONSUMED_MAX;
    this.idempotencyMax = options.idempotencyMax ?? DEFAULT_IDEMPOTENCY_MAX;
    const dir = path.resolve(dataDir);
    mkdirSync(dir, { recursive: true });
    // Sync stays on (the default): a resolved write plus `flushed` means durable.
    // Shared msgpackr structures: entries are not self-describing records (smaller values, cheaper decode).
    this.db = open<StoredValue, Key>({
      path: path.join(dir, 'memory.mdb'),
      compression: false,
      sharedStructuresKey: Symbol.for('automr.structures'),
    });
  }

  ready(): Promise<boolean> {
    return Promise.resolve(!this.closed);
  }

  async append(event: NewEvent, maxHistory: number, context = 0): Promise<AppendResult> {
    this.assertOpen();
    const { userId: u, eventId } = event;
    const forgetting = this.forgetting.get(u);
    if (forgetting !== undefined) await forgetting;
    let pending = this.pending.get(u);
    const inFlight = pending?.get(eventId);
    // A duplicate of a committed event is caught inside the transaction, so no read here.
    if (inFlight !== undefined) {
      // A duplicate is acked only once the original is durable, like the original itself.
      await inFlight.catch(() => undefined);
      await this.db.flushed;
      return { status: 'duplicate' };
    }
    // The arrival order is decided synchronously (one JS thread), in call order.
    const seq = this.nextSeq(u);
    const write = this.write(u, () =>
      this.commits.submit({ kind: 'append', event, maxHistory, context, seq }),
    );
    if (pending === undefined) this.pending.set(u, (pending = new Map<string, Promise<unknown>>()));
    pending.set(eventId, write);
    try {
      return (await write).append as AppendResult;
    } finally {
      pending.delete(eventId);
      if (pending.size === 0) this.pending.delete(u);
    }
  }

  /**
   * One group commit: the writes in submission order inside one transaction, then (once flushed) the tails updated
   * with what it committed. A failed transaction commits nothing; the in-process sequence counters stay where they
   * ran (a gap is harmless, while re-reading them could hand out a number that a later batch already queued uses).
   */
  private async commit(batch: BatchedWrite[]): Promise<BatchedResult[]> {
    const results = await this.db.transaction(() => this.applyBatch(batch));
    await this.db.flushed;
    batch.forEach((w, i) => {
      const r = results[i] as BatchedResult;
      if (w.kind === 'vectors') {
        this.tails.setKeys(w.userId, w.updates);
        return;
      }
      const { event } = w;
      const seq = r.append?.seq;
      if (seq !== undefined) {
        this.tails.insert(
          event.userId,
          {
            eventId: event.eventId,
            itemId: event.itemId,
            token: event.token,
            timestampMs: event.timestampMs,
            seq,
          },
          w.maxHistory + w.context,
        );
      }
    });
    return results;
  }

  /**
   * Inside the write transaction: each append (idempotency check, sequence number, entry, consumed item) and each
   * encoding in order, then every appended user trimmed to its cap and its consumed set to its bound once. Trimming
   * once at the end keeps the same entries as trimming after every append (both keep the newest
   * `maxHistory + context` by key). `dropped`: the event is not among the `maxHistory` newest after the batch.
   */
  private applyBatch(batch: readonly BatchedWrite[]): BatchedResult[] {
    const results: BatchedResult[] = [];
    /** Per appended user: the batch indexes of its accepted appends. */
    const appended = new Map<string, number[]>();
    batch.forEach((w, i) => {
      if (w.kind === 'vectors') {
        this.putVectorsInTxn(w.userId, w.updates);
        results.push({});
        return;
      }
      const seq = this.appendInTxn(w.event, w.maxHistory + w.context, w.seq);
      if (seq === undefined) {
        results.push({ append: { status: 'duplicate' } });
        return;
      }
      results.push({ append: { status: 'accepted', seq, dropped: false } });
      const indexes = appended.get(w.event.userId);
      if (indexes === undefined) appended.set(w.event.userId, [i]);
      else indexes.push(i);
    });
    for (const [u, indexes] of appended) {
      const last = batch[indexes[indexes.length - 1] as number] as BatchedWrite & { kind: 'append' };
      const seq = (results[indexes[indexes.length - 1] as number] as BatchedResult).append?.seq ?? 0;
      // A user can hold more consumed items than events only if seq exceeds the bound: counted natively, cheap.
      if (seq > this.consumedMax) this.evictConsumedInTxn(u);
      // Sequence numbers start at 1 per user (again after forget), so a user never holds more entries than `seq`.
      if (seq <= last.maxHistory) continue;
      const entries = { start: ['e', u], end: ['e', u, MAX_TS] };
      const count = this.db.getKeysCount(entries);
      if (count <= last.maxHistory) continue;
      const keep = last.maxHistory + last.context;
      // Newest first, skipping the `keep` kept in the cursor itself: only the keys to remove are decoded.
      const removed: number[] = [];
      if (count > keep) {
        const newestFirst = { start: ['e', u, MAX_TS], end: ['e', u], reverse: true, offset: keep };
        for (const key of this.db.getKeys(newestFirst)) {
          removed.push((key as [string, string, number, number])[3]);
          void this.db.remove(key);
        }
      }
      for (const i of indexes) {
        const { event } = batch[i] as BatchedWrite & { kind: 'append' };
        const r = results[i] as BatchedResult;
        const append = r.append as AppendResult;
        const eventSeq = append.seq as number;
        append.dropped =
          removed.includes(eventSeq) ||
          // Still stored, but among the window-context entries older than the history view?
          this.db.getKeysCount({ start: ['e', u, event.timestampMs, eventSeq], end: ['e', u, MAX_TS] }) >
            last.maxHistory;
      }
    }
    return results;
  }

  /** Inside the write transaction: one append; its sequence number, or undefined for a duplicate. */
  private appendInTxn(event: NewEvent, keep: number, taken: number | undefined): number | undefined {
    const { userId: u, eventId } = event;
    const idemKey: Key = ['i', u, eventId];
    // Reads inside the transaction see its own writes: a duplicate within the batch is caught too.
    if (this.db.doesExist(idemKey)) return undefined;
    const seq = taken ?? this.nextSeq(u);
    void this.db.put(idemKey, seq);
    void this.db.put(['c', u], seq);
    void this.db.put(['e', u, event.timestampMs, seq], { id: eventId, item: event.itemId, tok: event.token });
    this.putConsumed(u, event.itemId, event.timestampMs, seq);
    void this.db.put(['q', u, seq], eventId);
    this.evictIdempotency(u, seq - Math.max(this.idempotencyMax, keep));
    return seq;
  }

  /**
   * Inside the append's transaction: the consumed item's recency; only an event newer than the item's newest known
   * one moves it. An order key left behind by an older version of the store is recognised by eviction (its seq no
   * longer matches) and removed.
   */
  private putConsumed(u: string, itemId: string, ts: number, seq: number): void {
    const key: Key = ['s', u, itemId];
    const old = this.db.get(key) as [number, number] | undefined;
    if (old !== undefined && (old[0] > ts || (old[0] === ts && old[1] > seq))) return;
    if (old !== undefined) void this.db.remove(['o', u, old[0], old[1]]);
    void this.db.put(key, [ts, seq]);
    void this.db.put(['o', u, ts, seq], itemId);
  }

  /**
   * Inside the append's transaction: removes the idempotency keys of appends up to sequence number `upTo`: normally
   * the one that just left the bound.
   */
  private evictIdempotency(u: string, upTo: number): void {
    if (upTo < 1) return;
    for (const { key, value } of this.db.getRange({ start: ['q', u], end: ['q', u, upTo + 1] })) {
      const idemKey: Key = ['i', u, value as string];
      // A resend accepted after eviction owns the key again under its new seq.
      if (this.db.get(idemKey) === (key as [string, string, number])[2]) void this.db.remove(idemKey);
      void this.db.remove(key);
    }
  }

  /** Inside a write transaction: drops the user's oldest consumed items beyond `consumedMax` (and stale order keys). */
  private evictConsumedInTxn(u: string): void {
    let excess = this.db.getKeysCount(consumedRange(u)) - this.consumedMax;
    if (excess <= 0) return;
    const removals: Key[] = [];
    for (const { key, value } of this.db.getRange({ start: ['o', u], end: ['o', u, MAX_TS] })) {
      if (excess <= 0) break;
      const k = key as [string, string, number, number];
      const itemId = value as string;
      const current = this.db.get(['s', u, itemId]) as [number, number] | undefined;
      removals.push(key);
      if (current !== undefined && current[0] === k[2] && current[1] === k[3]) {
        removals.push(['s', u, itemId]);
        excess--;
      }
    }
    for (const key of removals) void this.db.remove(key);
  }

  consumed(userId: string, signal?: AbortSignal): Promise<readonly string[]> {
    this.assertOpen();
    throwIfAborted(signal);
    // Kept while the user's history is cached (a Recommend reads both): the same array until a write of the user.
    const cached = this.consumedCache.get(userId);
    if (cached !== undefined) return Promise.resolve(cached);
    const items: string[] = [];
    for (const key of this.db.getKeys(consumedRange(userId)))
      items.push((key as [string, string, string])[2]);
    if (this.cache.has(userId) && !this.writing.has(userId))
      setMostRecent(this.consumedCache, userId, items, this.cachedUsers);
    return Promise.resolve(items);
  }

  private nextSeq(u: string): number {
    const seq = (this.seqs.get(u) ?? (this.db.get(['c', u]) as number | undefined) ?? 0) + 1;
    this.seqs.set(u, seq);
    return seq;
  }

  /**
   * Runs a write of user `u` (issued synchronously by `op`): the user's cached history is dropped when it is issued
   * and when it completes, and reads in between are not cached.
   */
  private async write<T>(u: string, op: () => Promise<T>): Promise<T> {
    this.cache.delete(u);
    this.consumedCache.delete(u);
    this.readOnce.delete(u);
    this.writing.set(u, (this.writing.get(u) ?? 0) + 1);
    try {
      return await op();
    } catch (error) {
      // What was committed is unknown: the next tail read goes to the store.
      this.tails.delete(u);
      throw error;
    } finally {
      const left = (this.writing.get(u) ?? 1) - 1;
      if (left === 0) this.writing.delete(u);
      else this.writing.set(u, left);
      this.cache.delete(u);
      this.consumedCache.delete(u);
      this.readOnce.delete(u);
    }
  }

  read(userId: string, signal?: AbortSignal): Promise<readonly StoredEntry[]> {
    this.assertOpen();
    // A local, bounded read: an expired or cancelled call is not started (nothing to abort once running).
    throwIfAborted(signal);
    const cached = this.cache.get(userId);
    if (cached !== undefined) {
      setMostRecent(this.cache, userId, cached, this.cachedUsers);
      return Promise.resolve(cached);
    }
    const entries = this.decode(userId);
    if (this.cachedUsers > 0 && !this.writing.has(userId)) {
      // Read-only by contract, not frozen: freezing cost ~40 us per history and slowed later access (measured).
      if (this.readOnce.delete(userId)) setMostRecent(this.cache, userId, entries, this.cachedUsers);
      else setMostRecent(this.readOnce, userId, true, 4 * this.cachedUsers);
    }
    return Promise.resolve(entries);
  }

  private decode(userId: string): StoredEntry[] {
    const entries: StoredEntry[] = [];
    // Vectors are copied (lmdb reuses its read buffer) into one shared allocation per read, not one per entry.
    let pool: Uint8Array | undefined;
    let used = 0;
    for (const { key, value } of this.db.getRange({ start: ['e', userId], end: ['e', userId, MAX_TS] })) {
      const v = value as EntryValue;
      const entry = entryOf(key, v);
      if (v.v !== undefined && entry.encKey !== undefined) {
        const b = v.v;
        if (pool === undefined || used + b.byteLength > pool.byteLength) {
          pool = new Uint8Array(b.byteLength * VECTORS_PER_POOL);
          used = 0;
        }
        pool.set(b, used); // offsets are multiples of the vector size, so the view is aligned
        entry.vector = new Float32Array(pool.buffer, used, b.byteLength / 4);
        used += b.byteLength;
      }
      entries.push(entry);
    }
    return entries;
  }

  readTail(userId: string, sinceTimestampMs: number, context: number): Promise<StoredEntry[]> {
    this.assertOpen();
    const cached = this.tails.get(userId, sinceTimestampMs, context);
    if (cached !== undefined) return Promise.resolve(cached);
    const entries: StoredEntry[] = [];
    let before = 0;
    let all = true;
    // Newest first, down to the first entry before `sinceTimestampMs` plus `context` more; vectors are not copied.
    for (const { key, value } of this.db.getRange({
      start: ['e', userId, MAX_TS],
      end: ['e', userId],
      reverse: true,
    })) {
      const k = key as [string, string, number, number];
      if (k[2] < sinceTimestampMs && ++before > context) {
        all = false;
        break;
      }
      entries.push(entryOf(k, value as EntryValue));
    }
    entries.reverse();
    this.tails.keep(userId, entries, all);
    return Promise.resolve(entries);
  }

  async putVectors(userId: string, updates: VectorUpdate[]): Promise<void> {
    this.assertOpen();
    if (updates.length === 0) return;
    await this.locks.run(userId, () =>
      this.write(userId, () => this.commits.submit({ kind: 'vectors', userId, updates })),
    );
  }

  /** Inside a write transaction: encodings of entries that still exist (trimmed or forgotten ones are skipped). */
  private putVectorsInTxn(userId: string, updates: readonly VectorUpdate[]): void {
    // Point lookups by key ([user, timestamp, seq] is the entry's key): no scan of the history.
    for (const up of updates) {
      const key: Key = ['e', userId, up.timestampMs, up.seq];
      const v = this.db.get(key) as EntryValue | undefined;
      if (v === undefined) continue;
      const bytes = new Uint8Array(up.vector.buffer, up.vector.byteOffset, up.vector.byteLength);
      void this.db.put(key, { id: v.id, item: v.item, tok: v.tok, k: up.encKey, v: bytes });
    }
  }

  async forget(userId: string): Promise<number> {
    this.assertOpen();
    const done = this.locks.run(userId, () => this.write(userId, () => this.removeUser(userId)));
    this.forgetting.set(userId, done);
    try {
      return await done;
    } finally {
      if (this.forgetting.get(userId) === done) this.forgetting.delete(userId);
    }
  }

  private async removeUser(userId: string): Promise<number> {
    await Promise.allSettled([...(this.pending.get(userId)?.values() ?? [])]);
    this.seqs.delete(userId);
    this.tails.delete(userId);
    let removed = 0;
    const writes: Promise<boolean>[] = [];
    for (const prefix of ['e', 'i', 'q', 's', 'o'] as const) {
      for (const key of this.db.getKeys({ start: [prefix, userId] })) {
        const k = key as unknown[];
        if (k[0] !== prefix || k[1] !== userId) break;
        if (prefix === 'e') removed++;
        writes.push(this.db.remove(key));
      }
    }
    writes.push(this.db.remove(['c', userId]));
    await Promise.all(writes);
    this.tails.delete(userId);
    await this.db.flushed;
    return removed;
  }

  async *users(): AsyncIterable<string> {
    for (const key of this.db.getKeys({ start: ['c'] })) {
      const k = key as unknown[];
      if (k[0] !== 'c') break;
      yield k[1] as string;
      await Promise.resolve();
    }
  }

  /**
   * One group commit for the whole batch (the bulk import's path), written like the appends of one event-loop turn
   * (`applyBatch`), so the result equals that of `append` one by one.
   */
  async appendMany(
    events: readonly NewEvent[],
    maxHistory: number,
    context = 0,
  ): Promise<AppendResult['status'][]> {
    this.assertOpen();
    const users = [...new Set(events.map((e) => e.userId))];
    // Writes of these users already in flight (and forgets) come first, so sequence numbers stay in call order.
    await Promise.all(
      users.flatMap((u) => {
        const forgetting = this.forgetting.get(u);
        return [...(this.pending.get(u)?.values() ?? []), ...(forgetting === undefined ? [] : [forgetting])];
      }),
    ).catch(() => undefined);
    for (const u of users) {
      this.tails.delete(u);
      this.cache.delete(u);
      this.consumedCache.delete(u);
      this.readOnce.delete(u);
      this.writing.set(u, (this.writing.get(u) ?? 0) + 1);
    }
    try {
      const results = await this.commit(
        events.map((event) => ({ kind: 'append', event, maxHistory, context }) as const),
      );
      return results.map((r) => (r.append as AppendResult).status);
    } finally {
      for (const u of users) {
        const left = (this.writing.get(u) ?? 1) - 1;
        if (left === 0) this.writing.delete(u);
        else this.writing.set(u, left);
        this.tails.delete(u);
        this.cache.delete(u);
        this.consumedCache.delete(u);
        this.readOnce.delete(u);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.locks.idle();
    await this.db.flushed;
    await this.db.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new AppError('UNAVAILABLE', 'memory store is closed', { retryable: true });
  }
}
