/**
 * Input rows of the bulk import, streamed line by line (ml-latest's ratings.csv has tens of millions of rows):
 * `--csv FILE` with the header `event_id,user_id,item_id,timestamp_ms`, or a MovieLens folder in the formats the
 * offline toolchain reads (ml-100k `u.data`, ml-latest `ratings.csv`; seconds become ms). MovieLens rows have no
 * event id: it is `<user>:<item>:<seconds>`, unique because MovieLens holds one rating per user and item, and the
 * same on every run, so a re-import is idempotent.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { invalidArgument } from '../shared/errors.js';

export interface ImportRow {
  event_id: string;
  user_id: string;
  item_id: string;
  timestamp_ms: number | string;
}

export interface RowSource {
  /** The file read (for the resume state). */
  file: string;
  bytes: number;
  /** Rows in file order, each with the byte offset reached after it (progress), `line` for error messages. */
  rows(): AsyncGenerator<{ row: ImportRow | undefined; line: number; error?: string; offset: number }>;
}

type Parse = (fields: string[]) => ImportRow | string;

function lines(file: string, separator: string, header: boolean, parse: (h: string[]) => Parse) {
  return async function* () {
    const stream = createReadStream(file);
    let offset = 0;
    let line = 0;
    let parser: Parse | undefined = header ? undefined : parse([]);
    for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
      line++;
      offset += Buffer.byteLength(text) + 1;
      if (text.trim() === '') continue;
      const fields = text.split(separator);
      if (parser === undefined) {
        parser = parse(fields.map((f) => f.trim()));
        continue;
      }
      const parsed = parser(fields);
      if (typeof parsed === 'string') yield { row: undefined, line, error: parsed, offset };
      else yield { row: parsed, line, offset };
    }
  };
}

function columns(header: string[], names: string[], file: string): number[] {
  return names.map((name) => {
    const i = header.indexOf(name);
    if (i < 0) throw invalidArgument(`${file}: the header has no column ${name} (found ${header.join(',')})`);
    return i;
  });
}

/** `event_id,user_id,item_id,timestamp_ms` with a header (columns in any order, others ignored). */
export function csvSource(file: string): RowSource {
  const resolved = path.resolve(file);
  return {
    file: resolved,
    bytes: statSync(resolved).size,
    rows: lines(resolved, ',', true, (header) => {
      const [e, u, i, t] = columns(header, ['event_id', 'user_id', 'item_id', 'timestamp_ms'], file);
      return (f) => {
        if (f.length < header.length) return `expected ${header.length} columns, found ${f.length}`;
        return {
          event_id: f[e as number] ?? '',
          user_id: f[u as number] ?? '',
          item_id: f[i as number] ?? '',
          timestamp_ms: (f[t as number] ?? '').trim(),
        };
      };
    }),
  };
}

const movieLensRow = (user: string, item: string, seconds: string): ImportRow | string => {
  const s = seconds.trim();
  if (!/^\d+$/.test(s)) return `timestamp ${JSON.stringify(seconds)} is not whole seconds`;
  return { event_id: `${user}:${item}:${s}`, user_id: user, item_id: item, timestamp_ms: Number(s) * 1000 };
};

/** A MovieLens folder: ml-100k (`u.data`, tab-separated, no header) or ml-latest (`ratings.csv` with header). */
export function datasetSource(dir: string): RowSource {
  const uData = path.resolve(dir, 'u.data');
  if (existsSync(uData)) {
    return {
      file: uData,
      bytes: statSync(uData).size,
      rows: lines(
        uData,
        '\t',
        false,
        () => (f) =>
          f.length < 4
            ? `expected 4 tab-separated columns`
            : movieLensRow(f[0] ?? '', f[1] ?? '', f[3] ?? ''),
      ),
    };
  }
  const ratings = path.resolve(dir, 'ratings.csv');
  if (existsSync(ratings)) {
    return {
      file: ratings,
      bytes: statSync(ratings).size,
      rows: lines(ratings, ',', true, (header) => {
        const [u, i, t] = columns(header, ['userId', 'movieId', 'timestamp'], ratings);
        return (f) => movieLensRow(f[u as number] ?? '', f[i as number] ?? '', f[t as number] ?? '');
      }),
    };
  }
  throw invalidArgument(`${dir}: no u.data (ml-100k) or ratings.csv (ml-latest)`);
}
