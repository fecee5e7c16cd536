/**
 * Embedded durable MemoryStore on LMDB (the `lmdb` package). Writes of concurrent events are committed together
 * in batched transactions off the main thread (group commit); `append` resolves only after the commit is flushed
 * to disk, so an acked event survives kill -9 of the process and a power cut.
 *
 * Layout (ordered-binary array keys): ['e', user, timestampMs, seq] → entry, ['i', user, eventId] → seq
 * (idempotency) and ['q', user, seq] → eventId (its arrival order), ['c', user] → last seq; the consumed set: ['s', user, itemId] → [timestampMs, seq] of the item's
 * newest event, and ['o', user, timestampMs, seq] → itemId, its recency order (the oldest are evicted beyond
 * `consumedMax`). The consumed item is written in the same transaction as the event. One gateway process owns a data directory (lmdb's lock allows more
 * readers, but the sequence numbers are handed out in-process), and the
 * idempotency key guards the write itself (`ifNoExists`), so a duplicate can never be stored twice. Entries above the
 * history cap are trimmed right after the commit (so the cap may be exceeded by in-flight appends for a moment).
 * The idempotency index is bounded per user: each append's transaction drops the keys of appends more than
 * `idempotencyMax` sequence numbers older (a resend caught here also takes a number), never fewer than the history
 * plus window context, so a stored event is always a duplicate; a resend from beyond the bound is accepted again.
 *
 * Read cache: `read` keeps the decoded entries (vectors included) of the most recently read users, shared between
 * callers (read-only), so repeated Recommends of an unchanged user skip the decode. A history is cached on its second
 * read since the user's last write: one read per write (Recommend after every event) never pays for keeping it.
 * Since this process is the only writer, every write of a user drops its cached entries when it is issued and again when it completes, and a read
 * made while a write of the user is in flight is not cached: a cached history is always the committed one.
 *
 * Tail cache: `readTail` (the encoder's read after every append) keeps the newest entries of the users it read
 * (keys, no vectors), and every committed write of this process updates them in place of a new read (insert by
 * seq, set an encoding key, drop trimmed seqs; all idempotent, so a tail read between a commit and its update stays
 * right); a late event older than a partial tail, a failed write or `forget` drops the user's tail.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { open, type Key, type RootDatabase } from 'lmdb';
import { AppError, throwIfAborted } from '../../shared/errors.js';
import type { AppendResult, MemoryStore, NewEvent, StoredEntry, VectorUpdate } from '../domain/ports.js';
import { KeyedMutex } from '../domain/keyed-mutex.js';

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

/** Vectors per shared allocation in `read` (a full history is 109 entries). */
const VECTORS_PER_POOL = 128;
/** Users whose decoded history `read` keeps by default (a full history with 64-float vectors is ~45 KB). */
const DEFAULT_CACHED_USERS = 1024;
/** Users whose newest entries (keys, no vectors) `readTail` keeps, and how many entries each at most. */
const TAIL_USERS = 4096;
const TAIL_ENTRIES = 32;

/**
 * The newest committed entries of a user (oldest first, no vectors), as `readTail` read them and kept up to date by
 * every committed write of this process; `all`: they are the user's whole history.
 */
interface Tail {
  entries: StoredEntry[];
  all: boolean;
}

/**
 * Sets `key` as the most recent entry of an insertion-ordered map and drops the oldest beyond `limit`: the LRU
 * discipline of the store's three per-user maps.
 */
function setMostRecent<V>(map: Map<string, V>, key: string, value: V, limit: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > limit) map.delete(map.keys().next().value as string);
}

/** Orders entries as their keys do: timestamp, then arrival. */
function precedes(a: StoredEntry, ts: number, seq: number): boolean {
  return a.timestampMs < ts || (a.timestampMs === ts && a.seq < seq);
}

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
  private readonly pending = new Map<string, Map<string, Promise<boolean>>>();
  private readonly forgetting = new Map<string, Promise<number>>();
  /** Decoded histories, least recently read first. */
  private readonly cache = new Map<string, readonly StoredEntry[]>();
  private readonly cachedUsers: number;
  /** Users read once since their last write (cached on the next read), oldest first. */
  private readonly readOnce = new Map<string, true>();
  /** Writes issued and not yet completed, per user (their reads are not cached). */
  private readonly writing = new Map<string, number>();
  /**
   * Newest entries per user for the encoder's `readTail` (the read after every append), so that a pass does not
   * decode the window context (vectors included) again. Updated after each commit with idempotent steps (insert by
   * seq, set a key, drop by seq), so a tail read from the store while a write is in flight stays right.
   */
  private readonly tails = new Map<string, Tail>();
  private closed = false;
  private readonly consumedMax: number;
  private readonly idempotencyMax: number;

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
    const idemKey: Key = ['i', u, eventId];
    let pending = this.pending.get(u);
    const inFlight = pending?.get(eventId);
    // A duplicate of a committed event is also caught by `ifNoExists` below (written = false), so no read here.
    if (inFlight !== undefined) {
      // A duplicate is acked only once the original is durable, like the original itself.
      await inFlight?.catch(() => undefined);
      await this.db.flushed;
      return { status: 'duplicate' };
    }
    // Decided synchronously (one JS thread), so appends of one user never wait for each other's commits;
    // the write itself is conditional on the idempotency key, and lmdb commits concurrent appends together.
    const seq = this.nextSeq(u);
    const write = this.write(u, () =>
      this.db.ifNoExists(idemKey, () => {
        void this.db.put(idemKey, seq);
        void this.db.put(['c', u], seq);
        void this.db.put(['e', u, event.timestampMs, seq], {
          id: eventId,
          item: event.itemId,
          tok: event.token,
        });
        this.putConsumed(u, event.itemId, event.timestampMs, seq);
        void this.db.put(['q', u, seq], eventId);
        this.evictIdempotency(u, seq - Math.max(this.idempotencyMax, maxHistory + context));
      }),
    );
    if (pending === undefined) this.pending.set(u, (pending = new Map<string, Promise<boolean>>()));
    pending.set(eventId, write);
    let written: boolean;
    try {
      written = await write;
    } finally {
      pending.delete(eventId);
      if (pending.size === 0) this.pending.delete(u);
    }
    if (written)
      this.tailInsert(u, {
        eventId,
        itemId: event.itemId,
        token: event.token,
        timestampMs: event.timestampMs,
        seq,
      });
    await this.db.flushed;
    if (!written) return { status: 'duplicate' };
    // A user can hold more consumed items than events only if seq exceeds the bound: counted natively, cheap.
    if (seq > this.consumedMax && this.db.getKeysCount(consumedRange(u)) > this.consumedMax)
      await this.locks.run(u, () => this.evictConsumed(u));
    let dropped = false;
    // Sequence numbers start at 1 per user (again after forget), so a user never holds more entries than `seq`.
    const count = seq > maxHistory ? this.db.getKeysCount({ start: ['e', u], end: ['e', u, MAX_TS] }) : 0;
    if (count > maxHistory) {
      const keep = maxHistory + context;
      const removed = count > keep ? await this.locks.run(u, () => this.trim(u, keep)) : [];
      dropped =
        removed.some((k) => k[2] === event.timestampMs && k[3] === seq) ||
        // Still stored, but among the window-context entries older than the history view?
        this.db.getKeysCount({ start: ['e', u, event.timestampMs, seq], end: ['e', u, MAX_TS] }) > maxHistory;
    }
    return { status: 'accepted', seq, dropped };
  }

  /** Drops the oldest entries beyond the cap (an event older than all retained ones goes at once). */
  private async trim(u: string, maxHistory: number): Promise<unknown[][]> {
    // Newest first, skipping the `maxHistory` kept in the cursor itself: only the keys to remove are decoded.
    const range = { start: ['e', u, MAX_TS], end: ['e', u], reverse: true, offset: maxHistory };
    const removed = [...this.db.getKeys(range)] as unknown[][];
    if (removed.length === 0) return [];
    await this.write(u, () => Promise.all(removed.map((key) => this.db.remove(key as Key))));
    const tail = this.tails.get(u);
    if (tail !== undefined) {
      const gone = new Set(removed.map((k) => k[3] as number));
      tail.entries = tail.entries.filter((e) => !gone.has(e.seq));
    }
    await this.db.flushed;
    return removed;
  }

  /**
   * Queues (inside the append's conditional write) the consumed item's recency: only an event newer than the item's
   * newest known one moves it. The read is of committed state; a racing append of the same item may leave an older
   * order key behind, which eviction recognises (its seq no longer matches) and removes.
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
   * Queues (inside the append's conditional write) the removal of the idempotency keys of appends up to sequence
   * number `upTo`: normally the one that just left the bound, plus any an in-flight append left behind.
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

  /** Drops the user's oldest consumed items beyond `consumedMax` (and stale order keys on the way). */
  private async evictConsumed(u: string): Promise<void> {
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
    await this.write(u, () => Promise.all(removals.map((key) => this.db.remove(key))));
    await this.db.flushed;
  }

  async consumed(userId: string, signal?: AbortSignal): Promise<string[]> {
    this.assertOpen();
    throwIfAborted(signal);
    const items: string[] = [];
    for (const key of this.db.getKeys(consumedRange(userId)))
      items.push((key as [string, string, string])[2]);
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
    const tail = this.tails.get(userId);
    if (tail !== undefined) {
      const from = tail.entries.findIndex((e) => e.timestampMs >= sinceTimestampMs);
      const at = from < 0 ? tail.entries.length : from;
      if (at >= context || tail.all) return Promise.resolve(tail.entries.slice(Math.max(0, at - context)));
    }
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
    if (entries.length <= TAIL_ENTRIES) {
      setMostRecent(this.tails, userId, { entries: entries.slice(), all }, TAIL_USERS);
    }
    return Promise.resolve(entries);
  }

  /** Adds a committed entry to the user's tail (once: a tail read after the commit may hold it already). */
  private tailInsert(u: string, entry: StoredEntry): void {
    const tail = this.tails.get(u);
    if (tail === undefined) return;
    const { entries } = tail;
    let i = entries.length;
    while (i > 0 && !precedes(entries[i - 1] as StoredEntry, entry.timestampMs, entry.seq)) i--;
    if (entries[i]?.seq === entry.seq) return;
    // Older than every kept entry of a partial tail: what lies between is unknown.
    if (i === 0 && !tail.all) {
      this.tails.delete(u);
      return;
    }
    entries.splice(i, 0, entry);
    if (entries.length > TAIL_ENTRIES) {
      entries.splice(0, entries.length - TAIL_ENTRIES);
      tail.all = false;
    }
  }

  async putVectors(userId: string, updates: VectorUpdate[]): Promise<void> {
    this.assertOpen();
    if (updates.length === 0) return;
    await this.locks.run(userId, () => this.write(userId, () => this.writeVectors(userId, updates)));
  }

  private async writeVectors(userId: string, updates: VectorUpdate[]): Promise<void> {
    // Point lookups by key ([user, timestamp, seq] is the entry's key): no scan of the history.
    const writes: Promise<boolean>[] = [];
    for (const up of updates) {
      const key: Key = ['e', userId, up.timestampMs, up.seq];
      const v = this.db.get(key) as EntryValue | undefined;
      if (v === undefined) continue; // trimmed or forgotten meanwhile
      const bytes = new Uint8Array(up.vector.buffer, up.vector.byteOffset, up.vector.byteLength);
      writes.push(this.db.put(key, { id: v.id, item: v.item, tok: v.tok, k: up.encKey, v: bytes }));
    }
    await Promise.all(writes);
    const tail = this.tails.get(userId);
    if (tail === undefined) return;
    // Replaced, not changed: arrays handed out by `readTail` are copies, but they share their entries.
    const { entries } = tail;
    for (const up of updates) {
      let i = entries.length - 1; // the updates are mostly of the newest entries
      while (i >= 0 && (entries[i] as StoredEntry).seq !== up.seq) i--;
      const e = entries[i];
      if (e === undefined || e.encKey === up.encKey) continue;
      entries[i] = {
        eventId: e.eventId,
        itemId: e.itemId,
        token: e.token,
        timestampMs: e.timestampMs,
        seq: e.seq,
        encKey: up.encKey,
      };
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
   * One write transaction for the whole batch (the bulk import's path): idempotency check, sequence number, entry
   * and consumed item per event in array order, then each touched user trimmed to the cap once (and its consumed
   * set to its bound). Trimming once at the end keeps
   * the same entries as trimming after every append (both keep the newest `maxHistory + context` by key), so the
   * result equals that of `append` one by one. Keep the two in step when the entry layout changes.
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
    const keep = maxHistory + context;
    const write = async () => {
      const statuses = await this.db.transaction(() => {
        const out: AppendResult['status'][] = [];
        const seen = new Set<string>(); // duplicates within the batch, whatever reads inside the txn return
        for (const event of events) {
          const { userId: u, eventId } = event;
          const idemKey: Key = ['i', u, eventId];
          const once = JSON.stringify([u, eventId]);
          if (seen.has(once) || this.db.get(idemKey) !== undefined) {
            out.push('duplicate');
            continue;
          }
          seen.add(once);
          const seq = this.nextSeq(u);
          void this.db.put(idemKey, seq);
          void this.db.put(['c', u], seq);
          void this.db.put(['e', u, event.timestampMs, seq], {
            id: eventId,
            item: event.itemId,
            tok: event.token,
          });
          this.putConsumed(u, event.itemId, event.timestampMs, seq);
          void this.db.put(['q', u, seq], eventId);
          this.evictIdempotency(u, seq - Math.max(this.idempotencyMax, keep));
          out.push('accepted');
        }
        for (const u of users) {
          const range = {
            start: ['e', u, MAX_TS],
            end: ['e', u],
            reverse: true,
            offset: keep,
          };
          for (const key of this.db.getKeys(range)) void this.db.remove(key);
        }
        return out;
      });
      await this.db.flushed;
      for (const u of users) {
        if (this.db.getKeysCount(consumedRange(u)) > this.consumedMax)
          await this.locks.run(u, () => this.evictConsumed(u));
      }
      return statuses;
    };
    for (const u of users) {
      this.tails.delete(u);
      this.cache.delete(u);
      this.readOnce.delete(u);
      this.writing.set(u, (this.writing.get(u) ?? 0) + 1);
    }
    try {
      return await write();
    } catch (error) {
      // Nothing of a failed transaction is committed; the in-process sequence counters may have run ahead.
      for (const u of users) this.seqs.delete(u);
      throw error;
    } finally {
      for (const u of users) {
        const left = (this.writing.get(u) ?? 1) - 1;
        if (left === 0) this.writing.delete(u);
        else this.writing.set(u, left);
        this.tails.delete(u);
        this.cache.delete(u);
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
