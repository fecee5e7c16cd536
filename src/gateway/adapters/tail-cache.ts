/**
 * The newest entries of recently appended users (keys and encoding keys, no vectors), kept up to date by a store's
 * own committed writes so that the encoder's `readTail` after an append does not read the store again. A tail is
 * always a suffix of the user's history in key order (timestamp, then arrival); every update is idempotent, so a
 * tail read from the store between a commit and its update stays right.
 *
 * A store shared with other writers (Redis behind several gateways) records with the tail the user's last arrival
 * sequence number and the generation of the user's data (a token that a forget replaces): an own append that is not
 * the next number of the same generation means someone else wrote, and the tail is dropped.
 */
import type { StoredEntry, VectorUpdate } from '../domain/ports.js';

/** Where a user's data stands in a store with other writers. */
export interface Generation {
  lastSeq: number;
  token: string;
}

interface Tail {
  entries: StoredEntry[];
  /** The entries are the user's whole history. */
  all: boolean;
  /** The user's last arrival sequence number and data generation the tail reflects (stores with other writers). */
  shared?: Generation;
}

/** Users kept by default, and entries per user at most. */
const TAIL_USERS = 4096;
const TAIL_ENTRIES = 32;

/**
 * Sets `key` as the most recent entry of an insertion-ordered map and drops the oldest beyond `limit`: an LRU in a
 * plain Map.
 */
export function setMostRecent<V>(map: Map<string, V>, key: string, value: V, limit: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > limit) map.delete(map.keys().next().value as string);
}

/** Orders entries as their keys do: timestamp, then arrival. */
function precedes(a: StoredEntry, ts: number, seq: number): boolean {
  return a.timestampMs < ts || (a.timestampMs === ts && a.seq < seq);
}

export class TailCache {
  private readonly tails = new Map<string, Tail>();

  constructor(
    private readonly users = TAIL_USERS,
    private readonly perUser = TAIL_ENTRIES,
  ) {}

  /**
   * `readTail` from the cache: the entries at or after `sinceTimestampMs` plus `context` before them, or undefined
   * when the cached tail does not reach that far back.
   */
  get(userId: string, sinceTimestampMs: number, context: number): StoredEntry[] | undefined {
    const tail = this.tails.get(userId);
    if (tail === undefined) return undefined;
    const from = tail.entries.findIndex((e) => e.timestampMs >= sinceTimestampMs);
    const at = from < 0 ? tail.entries.length : from;
    if (at < context && !tail.all) return undefined;
    return tail.entries.slice(Math.max(0, at - context));
  }

  /** Keeps what a `readTail` read from the store (oldest first; `all`: the whole history), if small enough. */
  keep(userId: string, entries: readonly StoredEntry[], all: boolean, shared?: Generation): void {
    if (entries.length > this.perUser) return;
    const tail: Tail = { entries: entries.slice(), all };
    if (shared !== undefined) tail.shared = shared;
    setMostRecent(this.tails, userId, tail, this.users);
  }

  /**
   * A committed append: the entry goes in by key (once), and the tail keeps at most the `retained` newest entries,
   * as the store's history cap does. `token`: the generation the append's store reported (stores with other writers).
   */
  insert(userId: string, entry: StoredEntry, retained: number, token?: string): void {
    const tail = this.tails.get(userId);
    if (tail === undefined) return;
    if (tail.shared !== undefined) {
      if (token !== tail.shared.token || entry.seq !== tail.shared.lastSeq + 1) {
        // Another writer appended or forgot in between (or the replies crossed): the tail is not known here.
        this.tails.delete(userId);
        return;
      }
      tail.shared.lastSeq = entry.seq;
    }
    const { entries } = tail;
    let i = entries.length;
    while (i > 0 && !precedes(entries[i - 1] as StoredEntry, entry.timestampMs, entry.seq)) i--;
    if (entries[i]?.seq === entry.seq) return;
    // Older than every kept entry of a partial tail: what lies between is unknown.
    if (i === 0 && !tail.all) {
      this.tails.delete(userId);
      return;
    }
    entries.splice(i, 0, entry);
    if (entries.length > retained) entries.splice(0, entries.length - retained);
    if (entries.length > this.perUser) {
      entries.splice(0, entries.length - this.perUser);
      tail.all = false;
    }
  }

  /** Committed encodings: their keys are set on the tail's entries. */
  setKeys(userId: string, updates: readonly VectorUpdate[]): void {
    const tail = this.tails.get(userId);
    if (tail === undefined) return;
    // Replaced, not changed: arrays handed out by `get` are copies, but they share their entries.
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

  /** What was committed is unknown (a failed write, a forget): the next read goes to the store. */
  delete(userId: string): void {
    this.tails.delete(userId);
  }
}
