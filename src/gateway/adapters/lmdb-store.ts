/**
 * Embedded durable MemoryStore on LMDB (the `lmdb` package). Writes of concurrent events are committed together
 * in batched transactions off the main thread (group commit); `append` resolves only after the commit is flushed
 * to disk, so an acked event survives kill -9 of the process and a power cut.
 *
 * Layout (ordered-binary array keys): ['e', user, timestampMs, seq] → entry, ['i', user, eventId] → seq
 * (idempotency), ['c', user] → last seq. One gateway process owns a data directory; appends of one user are
 * serialised in-process so that the read-modify-write of trimming sees a consistent history, and the
 * idempotency key guards the write itself (`ifNoExists`), so a duplicate can never be stored twice.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { open, type Key, type RootDatabase } from 'lmdb';
import { AppError } from '../../shared/errors.js';
import type { AppendResult, MemoryStore, NewEvent, StoredEntry, VectorUpdate } from '../domain/ports.js';
import { KeyedMutex } from '../domain/keyed-mutex.js';

interface EntryValue {
  id: string;
  item: string;
  tok: number;
  k?: string;
  v?: Uint8Array;
}

const MAX_TS = Number.MAX_SAFE_INTEGER;

export class LmdbMemoryStore implements MemoryStore {
  readonly kind = 'lmdb';
  private readonly db: RootDatabase<EntryValue | number, Key>;
  private readonly locks = new KeyedMutex();
  private closed = false;

  constructor(dataDir: string) {
    const dir = path.resolve(dataDir);
    mkdirSync(dir, { recursive: true });
    // Sync stays on (the default): a resolved write plus `flushed` means durable.
    this.db = open<EntryValue | number, Key>({ path: path.join(dir, 'memory.mdb'), compression: false });
  }

  ready(): Promise<boolean> {
    return Promise.resolve(!this.closed);
  }

  async append(event: NewEvent, maxHistory: number): Promise<AppendResult> {
    this.assertOpen();
    const { userId: u } = event;
    const result = await this.locks.run<AppendResult>(u, async () => {
      const idemKey: Key = ['i', u, event.eventId];
      if (this.db.get(idemKey) !== undefined) return { status: 'duplicate' };
      const seq = ((this.db.get(['c', u]) as number | undefined) ?? 0) + 1;
      const existing = this.db.getKeysCount({ start: ['e', u], end: ['e', u, MAX_TS] });
      const drop = existing + 1 - maxHistory;
      const written = await this.db.ifNoExists(idemKey, () => {
        void this.db.put(idemKey, seq);
        void this.db.put(['c', u], seq);
        void this.db.put(['e', u, event.timestampMs, seq], {
          id: event.eventId,
          item: event.itemId,
          tok: event.token,
        });
        if (drop > 0) {
          // The new event may itself be the oldest; dropping it right away is what the cap means.
          const keys = [...this.db.getKeys({ start: ['e', u], end: ['e', u, MAX_TS] })];
          keys.push(['e', u, event.timestampMs, seq]);
          keys.sort(compareEntryKeys);
          for (const key of keys.slice(0, drop)) void this.db.remove(key);
        }
      });
      return written ? { status: 'accepted', seq } : { status: 'duplicate' };
    });
    await this.db.flushed;
    return result;
  }

  read(userId: string): Promise<StoredEntry[]> {
    this.assertOpen();
    const entries: StoredEntry[] = [];
    for (const { key, value } of this.db.getRange({ start: ['e', userId], end: ['e', userId, MAX_TS] })) {
      const k = key as [string, string, number, number];
      const v = value as EntryValue;
      const entry: StoredEntry = {
        eventId: v.id,
        itemId: v.item,
        token: v.tok,
        timestampMs: k[2],
        seq: k[3],
      };
      if (v.v !== undefined && v.k !== undefined) {
        // Copy: the buffer may be unaligned or reused by lmdb.
        entry.vector = new Float32Array(new Uint8Array(v.v).buffer);
        entry.encKey = v.k;
      }
      entries.push(entry);
    }
    return Promise.resolve(entries);
  }

  async putVectors(userId: string, updates: VectorUpdate[]): Promise<void> {
    this.assertOpen();
    if (updates.length === 0) return;
    await this.locks.run(userId, async () => {
      const bySeq = new Map(updates.map((up) => [up.seq, up]));
      const writes: Promise<boolean>[] = [];
      for (const { key, value } of this.db.getRange({ start: ['e', userId], end: ['e', userId, MAX_TS] })) {
        const up = bySeq.get((key as number[])[3] as number);
        if (up === undefined) continue;
        const v = value as EntryValue;
        const bytes = new Uint8Array(up.vector.buffer, up.vector.byteOffset, up.vector.byteLength);
        writes.push(this.db.put(key, { ...v, k: up.encKey, v: bytes }));
      }
      await Promise.all(writes);
    });
  }

  async forget(userId: string): Promise<number> {
    this.assertOpen();
    return this.locks.run(userId, async () => {
      let removed = 0;
      const writes: Promise<boolean>[] = [];
      for (const prefix of ['e', 'i'] as const) {
        for (const key of this.db.getKeys({ start: [prefix, userId] })) {
          const k = key as unknown[];
          if (k[0] !== prefix || k[1] !== userId) break;
          if (prefix === 'e') removed++;
          writes.push(this.db.remove(key));
        }
      }
      writes.push(this.db.remove(['c', userId]));
      await Promise.all(writes);
      await this.db.flushed;
      return removed;
    });
  }

  async *users(): AsyncIterable<string> {
    for (const key of this.db.getKeys({ start: ['c'] })) {
      const k = key as unknown[];
      if (k[0] !== 'c') break;
      yield k[1] as string;
      await Promise.resolve();
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

function compareEntryKeys(a: Key, b: Key): number {
  const x = a as number[];
  const y = b as number[];
  return (x[2] as number) - (y[2] as number) || (x[3] as number) - (y[3] as number);
}
