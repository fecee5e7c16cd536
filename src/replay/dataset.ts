/**
 * Reads a dataset folder and applies the same preparation protocol as the offline toolchain
 * (`training/automr/data.py`): k-core filter (items >= 5, users >= 20, repeated until stable), each user's
 * interactions sorted by time with file order breaking ties, catalog and users in numeric-id order. The
 * fingerprint is computed the same way, so the replay can prove it streams exactly what was evaluated.
 * MovieLens data is only read into memory here, never written anywhere.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export const N_SPECIAL = 3;
export const MIN_ITEM_COUNT = 5;
export const MIN_USER_COUNT = 20;

export interface RawInteractions {
  users: string[];
  items: string[];
  /** Unix seconds, as in the files. */
  times: number[];
}

export interface PreparedDataset {
  catalogIds: string[];
  users: string[];
  /** Per user (same order as `users`): catalog item ids and unix-second times, time-sorted. */
  itemSeqs: string[][];
  timeSeqs: number[][];
  fingerprint: string;
}

function parseCsv(text: string): string[][] {
  // The MovieLens/plain CSVs read here have no quoted separators in the columns used (ids, timestamps);
  // quoted titles are never needed by the replay, so a plain split is enough.
  return text
    .split(/\r?\n/)
    .filter((line) => line.length > 0)
    .map((line) => line.split(','));
}

async function readCsvColumns(file: string, columns: string[]): Promise<string[][]> {
  const rows = parseCsv(await readFile(file, 'utf8'));
  const header = rows.shift() ?? [];
  const indexes = columns.map((c) => {
    const i = header.indexOf(c);
    if (i < 0) throw new Error(`${file}: no column ${c}`);
    return i;
  });
  return rows.map((row) => indexes.map((i) => row[i] ?? ''));
}

export async function readInteractions(dir: string): Promise<RawInteractions> {
  const out: RawInteractions = { users: [], items: [], times: [] };
  const push = (user: string, item: string, time: string): void => {
    out.users.push(user);
    out.items.push(item);
    out.times.push(Math.trunc(Number(time)));
  };
  if (existsSync(join(dir, 'u.data'))) {
    const text = await readFile(join(dir, 'u.data'), 'latin1');
    for (const line of text.split('\n')) {
      const parts = line.split('\t');
      if (parts.length < 4) continue;
      push(parts[0] ?? '', parts[1] ?? '', parts[3] ?? '0');
    }
  } else if (existsSync(join(dir, 'ratings.csv')) && existsSync(join(dir, 'movies.csv'))) {
    for (const [u, i, t] of await readCsvColumns(join(dir, 'ratings.csv'), [
      'userId',
      'movieId',
      'timestamp',
    ])) {
      push(u ?? '', i ?? '', t ?? '0');
    }
  } else if (existsSync(join(dir, 'interactions.csv'))) {
    for (const [u, i, t] of await readCsvColumns(join(dir, 'interactions.csv'), [
      'user',
      'item',
      'timestamp',
    ])) {
      push(u ?? '', i ?? '', t ?? '0');
    }
  } else {
    throw new Error(
      `${dir}: no u.data (ml-100k), ratings.csv+movies.csv (ml-latest) or interactions.csv (plain)`,
    );
  }
  return out;
}

/** Numeric ids sort numerically (MovieLens), anything else as strings, as the toolchain does. */
function idComparator(ids: Iterable<string>): (a: string, b: string) => number {
  const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  for (const id of ids) if (!/^\d+$/.test(id)) return byString;
  return (a, b) => Number(a) - Number(b) || byString(a, b);
}

export function prepare(
  raw: RawInteractions,
  minItem = MIN_ITEM_COUNT,
  minUser = MIN_USER_COUNT,
): PreparedDataset {
  const n = raw.users.length;
  const keep = new Uint8Array(n).fill(1);
  let kept = n;
  for (;;) {
    const itemCount = new Map<string, number>();
    const userCount = new Map<string, number>();
    for (let r = 0; r < n; r += 1) {
      if (keep[r] === 0) continue;
      itemCount.set(raw.items[r] ?? '', (itemCount.get(raw.items[r] ?? '') ?? 0) + 1);
      userCount.set(raw.users[r] ?? '', (userCount.get(raw.users[r] ?? '') ?? 0) + 1);
    }
    let next = 0;
    for (let r = 0; r < n; r += 1) {
      if (keep[r] === 0) continue;
      const ok =
        (itemCount.get(raw.items[r] ?? '') ?? 0) >= minItem &&
        (userCount.get(raw.users[r] ?? '') ?? 0) >= minUser;
      if (ok) next += 1;
      else keep[r] = 0;
    }
    if (next === kept) break;
    kept = next;
  }
  const allItems = new Set(raw.items);
  const allUsers = new Set(raw.users);
  const keptItems = new Set<string>();
  const rowsByUser = new Map<string, number[]>();
  for (let r = 0; r < n; r += 1) {
    if (keep[r] === 0) continue;
    keptItems.add(raw.items[r] ?? '');
    const user = raw.users[r] ?? '';
    let rows = rowsByUser.get(user);
    if (rows === undefined) {
      rows = [];
      rowsByUser.set(user, rows);
    }
    rows.push(r);
  }
  const catalogIds = [...keptItems].sort(idComparator(allItems));
  const users = [...rowsByUser.keys()].sort(idComparator(allUsers));
  const tokenOf = new Map(catalogIds.map((id, row) => [id, N_SPECIAL + row]));
  const itemSeqs: string[][] = [];
  const timeSeqs: number[][] = [];
  const hash = createHash('sha256');
  hash.update(Buffer.from(catalogIds.join('\x1f'), 'utf8'));
  hash.update(Buffer.from('\x1e', 'utf8'));
  for (const user of users) {
    // Stable sort by time: rows are in file order, and Array.prototype.sort is stable.
    const rows = [...(rowsByUser.get(user) ?? [])].sort((a, b) => (raw.times[a] ?? 0) - (raw.times[b] ?? 0));
    const items = rows.map((r) => raw.items[r] ?? '');
    const times = rows.map((r) => raw.times[r] ?? 0);
    itemSeqs.push(items);
    timeSeqs.push(times);
    const tokens = new BigInt64Array(items.map((id) => BigInt(tokenOf.get(id) ?? 0)));
    const stamps = new BigInt64Array(times.map((t) => BigInt(t)));
    hash.update(Buffer.from(`${user}\x1f`, 'utf8'));
    hash.update(Buffer.from(tokens.buffer));
    hash.update(Buffer.from(stamps.buffer));
  }
  return { catalogIds, users, itemSeqs, timeSeqs, fingerprint: hash.digest('hex') };
}

export async function loadDataset(dir: string): Promise<PreparedDataset> {
  return prepare(await readInteractions(dir));
}
