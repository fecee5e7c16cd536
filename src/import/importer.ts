/**
 * Bulk backfill. Phase 1 writes raw events straight into the memory store, with the checks and the store call of
 * Ingest (`validateIngestInput`, the store's append semantics with the same history cap), written in file order through the
 * store's batched write path (`appendMany`: one LMDB transaction per batch, or the batch's scripts pipelined on
 * one Redis connection), with a few batches in flight. Idempotent by event_id; the state file records how many rows are durable
 * (a batch counts only once all of its rows and every row before it are), so a rerun resumes there. Phase 2 encodes
 * the memory of every imported user with the gateway's encoder, many users at once so the model server gets full
 * batches. Because both phases are the ones Ingest uses, the result equals what the same rows sent through Ingest in
 * file order produce, event for event and vector for vector (tested).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AppError } from '../shared/errors.js';
import type { Bundle } from '../gateway/bundle.js';
import type { Encoder } from '../gateway/domain/encoder.js';
import { validateIngestInput } from '../gateway/domain/ingest.js';
import type { MemoryStore, NewEvent } from '../gateway/domain/ports.js';
import type { Limits } from '../gateway/domain/validation.js';
import type { RowSource } from './rows.js';

export interface ImportState {
  file: string;
  bytes: number;
  mtimeMs: number;
  /** Rows of the file (valid or not) whose outcome is durable. */
  rows: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  done: boolean;
}

export interface Progress {
  phase: 'raw' | 'encode';
  done: number;
  /** Rows or users expected in all, when known. */
  total?: number;
  /** Share of the work done (bytes of the file in the raw phase), 0..1. */
  fraction: number;
}

export interface RawImportOptions {
  source: RowSource;
  store: MemoryStore;
  bundle: Bundle;
  limits: Limits;
  maxHistory: number;
  historyContext: number;
  statePath: string;
  /** Ignore a previous state file and start at the first row (still idempotent). */
  restart?: boolean;
  batchRows?: number;
  batchesInFlight?: number;
  onProgress?: (p: Progress) => void;
  now?: () => number;
}

export interface RawImportResult {
  state: ImportState;
  /** Rows skipped because an earlier run had made them durable. */
  resumedFrom: number;
  /** Users that got at least one row in this run (the encode phase's work). */
  users: string[];
  /** The first rejections with their line and reason. */
  rejections: { line: number; reason: string }[];
  seconds: number;
}

function loadState(statePath: string, source: RowSource, restart: boolean): ImportState {
  const fresh: ImportState = {
    file: source.file,
    bytes: source.bytes,
    mtimeMs: statSync(source.file).mtimeMs,
    rows: 0,
    accepted: 0,
    duplicates: 0,
    rejected: 0,
    done: false,
  };
  if (restart || !existsSync(statePath)) return fresh;
  const prior = JSON.parse(readFileSync(statePath, 'utf8')) as ImportState;
  // A changed file cannot be resumed by row count; start over (idempotency keeps that safe).
  if (prior.file !== fresh.file || prior.bytes !== fresh.bytes || prior.mtimeMs !== fresh.mtimeMs)
    return fresh;
  return prior;
}

function saveState(statePath: string, state: ImportState): void {
  mkdirSync(path.dirname(statePath), { recursive: true });
  const tmp = `${statePath}.tmp`;
  writeFileSync(tmp, JSON.stringify(state));
  renameSync(tmp, statePath);
}

export async function importRaw(o: RawImportOptions): Promise<RawImportResult> {
  const started = performance.now();
  const state = loadState(o.statePath, o.source, o.restart === true);
  const resumedFrom = state.rows;
  const users = new Set<string>();
  const rejections: { line: number; reason: string }[] = [];
  const batchRows = o.batchRows ?? 4096;
  const inFlightLimit = o.batchesInFlight ?? 4;
  const now = (o.now ?? Date.now)();
  const context = o.historyContext;
  const inFlight: Promise<void>[] = [];
  let batchCount = 0;
  let lastSave = 0;

  const reject = (line: number, reason: string) => {
    state.rejected++;
    if (rejections.length < 20) rejections.push({ line, reason });
  };

  let failure: Error | undefined;
  /** Writes one batch (in order after the batches before it) and counts it once it is durable. */
  const issue = (events: NewEvent[], rowsAfter: number, offset: number) => {
    const written = o.store.appendMany(events, o.maxHistory, context);
    written.catch(() => undefined); // awaited below, in order
    const previous = inFlight[inFlight.length - 1] ?? Promise.resolve();
    const done = (async () => {
      const statuses = await written;
      await previous; // batches become durable in order for the state file
      for (const status of statuses) {
        if (status === 'accepted') state.accepted++;
        else state.duplicates++;
      }
      state.rows = rowsAfter;
      o.onProgress?.({
        phase: 'raw',
        done: state.rows,
        fraction: o.source.bytes > 0 ? offset / o.source.bytes : 1,
      });
      if (performance.now() - lastSave > 1_000) {
        lastSave = performance.now();
        saveState(o.statePath, state);
      }
    })();
    done.catch((error: unknown) => (failure ??= error instanceof Error ? error : new Error(String(error))));
    inFlight.push(done);
  };

  let rowIndex = 0;
  let batch: NewEvent[] = [];
  let lastOffset = 0;
  for await (const { row, line, error, offset } of o.source.rows()) {
    lastOffset = offset;
    if (rowIndex++ < resumedFrom) continue;
    if (row === undefined) reject(line, error ?? 'unreadable row');
    else {
      try {
        const { eventId, userId, itemId, timestampMs } = validateIngestInput(row, o.limits, now);
        const token = o.bundle.tokenOf(itemId) ?? o.bundle.tokens.unk;
        users.add(userId);
        batch.push({ userId, eventId, itemId, token, timestampMs });
      } catch (e) {
        if (!(e instanceof AppError && e.code === 'INVALID_ARGUMENT')) throw e;
        reject(line, e.message);
      }
    }
    if (failure !== undefined) break; // the store failed: stop reading; the state file holds what is durable
    if (++batchCount >= batchRows) {
      issue(batch, rowIndex, offset);
      batch = [];
      batchCount = 0;
      if (inFlight.length >= inFlightLimit) await inFlight.shift();
    }
  }
  issue(batch, rowIndex, lastOffset);
  await Promise.all(inFlight);
  if (failure !== undefined) throw failure;
  state.rows = Math.max(state.rows, rowIndex);
  state.done = true;
  saveState(o.statePath, state);
  return {
    state,
    resumedFrom,
    users: [...users],
    rejections,
    seconds: (performance.now() - started) / 1000,
  };
}

export interface EncodeOptions {
  encoder: Encoder;
  users: string[];
  /** Users encoded at once (their prompts share model-server batches). */
  concurrency?: number;
  onProgress?: (p: Progress) => void;
}

/**
 * Encodes every listed user's stale elements (a full pass per user, as after a bundle change) and resolves with
 * the users whose pass failed (the encoder keeps retrying those; the gateway also encodes them at start-up).
 */
export async function encodeUsers(o: EncodeOptions): Promise<{ seconds: number; failed: number }> {
  const started = performance.now();
  const concurrency = o.concurrency ?? 32;
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < o.users.length) {
      const user = o.users[next++] as string;
      await o.encoder.settle(user, 2 ** 31 - 1);
      done++;
      o.onProgress?.({
        phase: 'encode',
        done,
        total: o.users.length,
        fraction: done / o.users.length,
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, o.users.length) }, worker));
  await o.encoder.idle();
  return {
    seconds: (performance.now() - started) / 1000,
    failed: o.encoder.backlog(),
  };
}
