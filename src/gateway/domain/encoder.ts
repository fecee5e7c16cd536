/**
 * Encodes memory elements. Prompts from concurrent events are gathered into one llm_lower call (up to
 * `batchSize`, flushed on the next event-loop turn); each user has at most one encoding job at a time that
 * re-reads the stored history, so late events and bundle changes are handled by the same code path. After
 * appends the job reads only the tail from the oldest appended timestamp on (plus its window context): no element
 * before it can have a changed window. Other passes (bundle change, retries, Recommend waiting) read it all.
 * Failures are retried with capped exponential backoff: raw events are already durable, so nothing is lost
 * meanwhile.
 *
 * Re-encoding after a bundle change is lazy, never a scan at start-up: Recommend schedules a full pass for a user
 * it finds unencoded elements for, and a pass after appends that sees encodings of another version just before
 * the appended events queues a full pass for the user in the background, at most `reencodeRate` per second (the
 * `reencode` command does everyone ahead of a cut-over).
 */
import { setMaxListeners } from 'node:events';
import { context, type Context, type Span } from '@opentelemetry/api';
import { Coalescer } from '../../shared/coalescer.js';
import { toAppError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { inSpan, tracingActive } from '../../shared/tracing.js';
import type { GatewayMetrics } from '../../shared/metrics.js';
import { staleElements, type MemoryModel } from './memory.js';
import type { MemoryStore, ModelServer, StoredEntry } from './ports.js';

export interface EncoderOptions {
  store: MemoryStore;
  modelServer: ModelServer;
  model: MemoryModel;
  batchSize: number;
  /** How long the first prompt waits for others before its llm_lower call (ms; 0 = the current event-loop turn). */
  batchDelayMs?: number;
  logger: Logger;
  metrics?: GatewayMetrics;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Background full passes per second for users found with encodings of another version (0 = none). */
  reencodeRate?: number;
}

/** Most users waiting for a background full pass; beyond it they are re-encoded when read. */
const MAX_LAZY_QUEUE = 100_000;
const LAZY_TICK_MS = 100;

export class Encoder {
  /** Prompts of concurrent callers (passes and Recommends), coalesced into batched llm_lower calls. */
  private readonly batches: Coalescer<number[], Float32Array>;
  /**
   * Users with a pass to do: the caller's trace context and the oldest timestamp appended since the last pass
   * (only elements from there on can have changed windows), or undefined for a pass over the whole history.
   */
  private readonly dirty = new Map<string, { ctx: Context; since: number | undefined }>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private readonly attempts = new Map<string, number>();
  /** Callers of settle() waiting for the next pass of a user. */
  private readonly waiters = new Map<string, (() => void)[]>();
  private stopped = false;
  private readonly abort = new AbortController();

  /** Users found with encodings of another version, waiting for a throttled background full pass. */
  private readonly lazy = new Set<string>();
  private lazyTimer: NodeJS.Timeout | undefined;
  private lazyCredit = 0;

  constructor(private readonly o: EncoderOptions) {
    // Every in-flight model-server call listens on this one signal (and removes its listener when done).
    setMaxListeners(0, this.abort.signal);
    this.batches = new Coalescer({
      maxBatch: o.batchSize,
      delayMs: o.batchDelayMs ?? 0,
      run: async (prompts) => {
        const started = performance.now();
        const vectors = await this.o.modelServer.encode(prompts, this.abort.signal);
        this.o.metrics?.stageDuration.record(performance.now() - started, { stage: 'encode.batch' });
        return vectors;
      },
    });
  }

  /** Encodes prompts, batched with those of concurrent callers (one llm_lower call per batch). */
  encodePrompts(prompts: number[][]): Promise<Float32Array[]> {
    return Promise.all(prompts.map((prompt) => this.batches.submit(prompt)));
  }

  /**
   * Marks a user's memory for (re-)encoding; the job runs in the trace context of the caller. `sinceTimestampMs`
   * (an appended event's timestamp) limits the pass to the elements whose windows that event can have changed;
   * without it the pass checks the whole history.
   */
  schedule(userId: string, sinceTimestampMs?: number): void {
    if (this.stopped) return;
    const prior = this.dirty.get(userId);
    if (prior === undefined && !this.running.has(userId)) this.o.metrics?.encodeBacklog.add(1);
    const since =
      sinceTimestampMs === undefined || (prior !== undefined && prior.since === undefined)
        ? undefined
        : Math.min(sinceTimestampMs, prior?.since ?? sinceTimestampMs);
    this.dirty.set(userId, { ctx: context.active(), since });
    if (this.running.has(userId)) return;
    // The pass starts at once: events of the user that arrive while it runs are picked up by one more pass (so a
    // burst costs two passes). Measured with events of many users interleaved, delaying the start per user (a
    // 2 ms timer or setImmediate) cost more CPU per event than it merged, so there is no debounce.
    this.start(userId);
  }

  private start(userId: string): void {
    const job = this.run(userId).finally(() => {
      this.running.delete(userId);
      if (this.dirty.has(userId) && !this.stopped) this.start(userId);
      else this.o.metrics?.encodeBacklog.add(-1);
    });
    this.running.set(userId, job);
  }

  private async run(userId: string): Promise<void> {
    while (this.dirty.has(userId) && !this.stopped) {
      const { ctx, since } = this.dirty.get(userId) as { ctx: Context; since: number | undefined };
      this.dirty.delete(userId);
      const waiting = this.waiters.get(userId) ?? [];
      this.waiters.delete(userId);
      try {
        const pass = async (span: Span | undefined) => {
          const { model } = this.o;
          const entries =
            since === undefined
              ? await this.o.store.read(userId)
              : await this.o.store.readTail(userId, since, model.window - 1);
          // A tail read starts with window context: the elements before `since` are unchanged and not checked.
          const first = since === undefined ? 0 : entries.findIndex((e) => e.timestampMs >= since);
          if (since !== undefined && unencodedBefore(entries, first, model)) this.queueFullPass(userId);
          const jobs = first < 0 ? [] : staleElements(entries, model, first);
          span?.setAttribute('automr.encode.elements', jobs.length);
          if (jobs.length === 0) return;
          const vectors = await this.encodePrompts(jobs.map((j) => j.prompt));
          const write = () =>
            this.o.store.putVectors(
              userId,
              jobs.map((j, i) => ({
                seq: j.seq,
                timestampMs: j.timestampMs,
                encKey: j.encKey,
                vector: vectors[i] as Float32Array,
              })),
            );
          await (span === undefined ? write() : inSpan('memory.write', write));
        };
        // No tracer provider: no (no-op) spans and no context switch per pass.
        if (tracingActive()) await context.with(ctx, () => inSpan('encode', pass));
        else await pass(undefined);
        this.attempts.delete(userId);
      } catch (error) {
        if (this.stopped) return;
        const attempt = (this.attempts.get(userId) ?? 0) + 1;
        this.attempts.set(userId, attempt);
        const delay = Math.min(this.o.retryMaxMs ?? 30_000, (this.o.retryBaseMs ?? 100) * 2 ** (attempt - 1));
        this.o.logger.warn(
          { user: userId, attempt, delayMs: delay, err: toAppError(error).message },
          'encoding failed; will retry',
        );
        const timer = setTimeout(() => {
          this.retryTimers.delete(userId);
          this.schedule(userId);
        }, delay);
        this.retryTimers.set(userId, timer);
        return;
      } finally {
        for (const resolve of waiting) resolve();
      }
    }
  }

  /** Queues a throttled background full pass of the user (`reencodeRate` per second). */
  private queueFullPass(userId: string): void {
    const rate = this.o.reencodeRate ?? 0;
    if (rate <= 0 || this.stopped || this.lazy.size >= MAX_LAZY_QUEUE) return;
    this.lazy.add(userId);
    if (this.lazyTimer !== undefined) return;
    this.lazyCredit = 0;
    this.lazyTimer = setInterval(() => {
      this.lazyCredit = Math.min(rate, this.lazyCredit + (rate * LAZY_TICK_MS) / 1000);
      for (const user of this.lazy) {
        if (this.lazyCredit < 1) break;
        this.lazyCredit--;
        this.lazy.delete(user);
        this.schedule(user);
      }
      if (this.lazy.size === 0) {
        clearInterval(this.lazyTimer);
        this.lazyTimer = undefined;
      }
    }, LAZY_TICK_MS);
    this.lazyTimer.unref();
  }

  /**
   * Re-encodes every user's stale elements (the `reencode` command, ahead of a cut-over): `concurrency` users at a
   * time, at most `ratePerS` users started per second (0 = unlimited); `onUser` is told after each user's pass.
   * Resolves to the users seen and those whose pass failed (their retry is left to the gateways' lazy passes).
   */
  async reencodeAll(
    options: {
      concurrency?: number;
      ratePerS?: number;
      onUser?: (done: number, failed: number) => void;
    } = {},
  ): Promise<{ users: number; failed: number }> {
    const concurrency = options.concurrency ?? 4;
    const intervalMs = (options.ratePerS ?? 0) > 0 ? 1000 / (options.ratePerS as number) : 0;
    let users = 0;
    let done = 0;
    let failed = 0;
    let nextStart = performance.now();
    const inFlight = new Set<Promise<void>>();
    const finished = (userId: string) => {
      if (this.attempts.has(userId)) failed++;
      options.onUser?.(++done, failed);
    };
    for await (const userId of this.o.store.users()) {
      if (this.stopped) break;
      if (intervalMs > 0) {
        const wait = nextStart - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        nextStart = Math.max(nextStart, performance.now() - intervalMs) + intervalMs;
      }
      users++;
      this.schedule(userId);
      const job = this.running.get(userId);
      if (job !== undefined) {
        inFlight.add(job);
        void job.finally(() => {
          inFlight.delete(job);
          finished(userId);
        });
      } else finished(userId);
      if (inFlight.size >= concurrency) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    return { users, failed };
  }

  /**
   * Waits, at most `timeoutMs`, until one encoding pass of the user that starts after this call has finished, so
   * every element stored before the call is encoded. Recommend calls this when it finds unencoded elements right
   * after ingest; a user whose events keep streaming in never makes it wait for more than that one pass.
   */
  async settle(userId: string, timeoutMs: number): Promise<void> {
    if (this.stopped || timeoutMs <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    const passed = new Promise<void>((resolve) => {
      const list = this.waiters.get(userId) ?? [];
      list.push(resolve);
      this.waiters.set(userId, list);
    });
    if (!this.retryTimers.has(userId)) this.schedule(userId);
    await Promise.race([passed, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /**
   * The model server (or store) is back: users waiting out a retry backoff are encoded now, with their backoff
   * reset, instead of up to `retryMaxMs` later.
   */
  resumeRetries(): void {
    if (this.stopped) return;
    const users = [...this.retryTimers.keys()];
    for (const userId of users) {
      clearTimeout(this.retryTimers.get(userId));
      this.retryTimers.delete(userId);
      this.attempts.delete(userId);
      this.schedule(userId);
    }
    if (users.length > 0) this.o.logger.info({ users: users.length }, 'dependencies back; encoding resumed');
  }

  /** Users with encoding work queued or running. */
  backlog(): number {
    return new Set([...this.dirty.keys(), ...this.running.keys(), ...this.retryTimers.keys()]).size;
  }

  /** Resolves when no job is running and none is queued (retries pending excluded). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running.values()]);
  }

  /** Lets running jobs finish within `timeoutMs`, then stops; pending work is redone from raw history on restart. */
  async stop(timeoutMs: number): Promise<void> {
    clearInterval(this.lazyTimer);
    this.lazyTimer = undefined;
    this.lazy.clear();
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.idle(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.stopped = true;
    this.abort.abort();
  }
}

/**
 * Whether an element of the history view before index `first` of a tail read lacks an encoding of this model
 * version (a store keeps encodings per version, so another version's look missing): the user's history was
 * encoded by another bundle (or a pass was lost), so it needs a full pass. The tail is a suffix of the raw
 * entries, so an entry is in the view iff fewer than `maxHistory` entries follow it.
 */
function unencodedBefore(entries: readonly StoredEntry[], first: number, model: MemoryModel): boolean {
  const own = `${model.modelVersion}|`;
  for (let i = Math.max(0, entries.length - model.maxHistory); i < first; i++)
    if (entries[i]?.encKey?.startsWith(own) !== true) return true;
  return false;
}
