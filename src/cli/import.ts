/**
 * `npm run import -- --dataset DIR | --csv FILE [options] [gateway options]`: bulk backfill into the configured
 * memory store (see src/import/importer.ts), then memory encoding through the model server. Prints a progress line
 * with events/s and an ETA on stderr and a JSON summary on stdout.
 */
import { configHelp, loadConfig } from '../gateway/config.js';
import type { Progress } from '../import/importer.js';
import { csvSource, datasetSource } from '../import/rows.js';
import { runImport } from '../import/run.js';
import { AppError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';

const HELP = `Usage: npm run import -- (--dataset DIR | --csv FILE) [import options] [gateway options]

  --dataset DIR           a MovieLens folder: ml-100k (u.data) or ml-latest (ratings.csv); event ids
                          are <user>:<item>:<seconds>, timestamps seconds * 1000
  --csv FILE              rows event_id,user_id,item_id,timestamp_ms (header required)
  --state FILE            resume state (default <data dir>/import-<hash of the input path>.json)
  --restart               ignore the state file and start at the first row (still idempotent)
  --no-encode             only store raw events (the gateway encodes them at start-up)
  --batch N               rows per store transaction (default 16384)
  --encode-concurrency N  users encoded at once (default 32)

The store, model server, bundle and history cap come from the gateway options (flags or AUTOMR_*):
`;

const IMPORT_FLAGS = new Set(['--dataset', '--csv', '--state', '--batch', '--encode-concurrency']);
const IMPORT_SWITCHES = new Set(['--restart', '--no-encode', '--help', '-h']);

function split(argv: string[]): { mine: Map<string, string>; rest: string[] } {
  const mine = new Map<string, string>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const [name, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    if (IMPORT_SWITCHES.has(name)) mine.set(name, 'true');
    else if (IMPORT_FLAGS.has(name)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new AppError('INVALID_ARGUMENT', `${name} needs a value`);
      mine.set(name, value);
    } else rest.push(arg);
  }
  return { mine, rest };
}

const positive = (name: string, value: string | undefined, fallback: number): number => {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new AppError('INVALID_ARGUMENT', `${name} must be a positive integer`);
  return n;
};

function progressLine(label: string): (p: Progress) => void {
  const started = performance.now();
  let last = 0;
  const tty = process.stderr.isTTY;
  return (p) => {
    const now = performance.now();
    if (now - last < (tty ? 200 : 5_000) && p.fraction < 1) return;
    last = now;
    const seconds = (now - started) / 1000;
    const rate = p.done / Math.max(seconds, 1e-3);
    const eta = p.fraction > 0 ? (seconds * (1 - p.fraction)) / p.fraction : NaN;
    const width = 30;
    const filled = Math.round(width * Math.min(1, p.fraction));
    const unit = p.phase === 'raw' ? 'events' : 'users';
    const line = `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(100 * p.fraction).toFixed(1)}% ${p.done.toLocaleString('en')} ${unit}${p.total === undefined ? '' : `/${p.total.toLocaleString('en')}`} ${Math.round(rate).toLocaleString('en')} ${unit}/s ETA ${Number.isFinite(eta) ? `${eta.toFixed(0)}s` : '?'}`;
    process.stderr.write(tty ? `\r${line}\u001b[K` : `${line}\n`);
  };
}

async function main(): Promise<number> {
  const { mine, rest } = split(process.argv.slice(2));
  if (mine.has('--help') || mine.has('-h')) {
    console.log(HELP + configHelp().split('\n').slice(2).join('\n'));
    return 0;
  }
  const { config } = loadConfig(rest);
  if (config === undefined) return 2;
  const dataset = mine.get('--dataset');
  const csv = mine.get('--csv');
  if ((dataset === undefined) === (csv === undefined)) {
    console.error('automr-import: give exactly one of --dataset DIR or --csv FILE (see --help)');
    return 2;
  }
  const logger = createLogger({
    name: 'automr-import',
    level: config.logLevel === 'info' ? 'warn' : config.logLevel,
  });
  const lines = { raw: progressLine('raw   '), encode: progressLine('encode') };
  let phase: Progress['phase'] = 'raw';
  const endLine = () => {
    if (process.stderr.isTTY) process.stderr.write('\n');
  };
  const statePath = mine.get('--state');
  const summary = await runImport(
    config,
    {
      source: dataset !== undefined ? datasetSource(dataset) : csvSource(csv as string),
      ...(statePath === undefined ? {} : { statePath }),
      restart: mine.has('--restart'),
      encode: !mine.has('--no-encode'),
      batchRows: positive('--batch', mine.get('--batch'), 16384),
      encodeConcurrency: positive('--encode-concurrency', mine.get('--encode-concurrency'), 32),
      onProgress: (p) => {
        if (p.phase !== phase) endLine();
        phase = p.phase;
        lines[p.phase](p);
      },
    },
    logger,
  );
  endLine();
  console.log(JSON.stringify(summary, null, 2));
  return (summary.encodeFailedUsers ?? 0) === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`automr-import: ${error instanceof AppError ? error.message : String(error)}`);
    process.exit(1);
  },
);
