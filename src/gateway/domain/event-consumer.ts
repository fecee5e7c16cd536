/**
 * The event-stream consumer: pulls interactions from an EventSource and feeds them to the same IngestService as
 * the gRPC Ingest stream (same validation, idempotency by event_id, durability before the ack). Each message is
 * settled once: ack after the ingest service resolved (the event is durable or a duplicate), terminate into the dead
 * letter when it is malformed or rejected, nak with capped exponential backoff when the store failed.
 *
 * Flow control: at most `maxInFlight` messages are being processed; the loop fetches only for the free slots, so a
 * slow store fills the window and fetching stops until acks free it. After a store failure fetching pauses for the
 * nak delay too, so an outage is not turned into a redelivery storm.
 */
import { AppError, toAppError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { ConsumerMetrics } from '../../shared/consumer-metrics.js';
import type { EventSource, PayloadFormat, SourceMessage } from './event-source.js';
import type { IngestInput, IngestService } from './ingest.js';

/** Turns a payload into an ingest input; throws an INVALID_ARGUMENT AppError for a malformed payload. */
export type PayloadDecoder = (payload: Uint8Array, format: PayloadFormat) => IngestInput;

export interface EventConsumerOptions {
  source: EventSource;
  ingest: Pick<IngestService, 'ingest'>;
  decode: PayloadDecoder;
  /** Format of messages that do not declare one. */
  defaultFormat: PayloadFormat;
  /** Messages processed at once (fetched but not yet settled). */
  maxInFlight: number;
  /** Most messages per fetch (default: maxInFlight). */
  fetchBatch?: number;
  /** How long one fetch waits for messages. */
  fetchWaitMs?: number;
  /** Nak delay after the first store failure of a message, doubled per delivery up to `retryMaxMs`. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** How often the source's pending count is refreshed for the lag metric. */
  lagIntervalMs?: number;
  logger: Logger;
  metrics?: ConsumerMetrics;
}

/** Resolves after `ms`, or at once when `signal` fires (never rejects). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

export type Outcome = 'accepted' | 'duplicate' | 'dead_lettered' | 'retried';

export class EventConsumer {
  private inFlight = 0;
  private slotFreed: (() => void) | undefined;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private lagTimer: NodeJS.Timeout | undefined;
  /** Fetching waits until this time after a store failure. */
  private pausedUntil = 0;
  private busUp = false;
  private lastPending = 0;
  private readonly settled = new Set<Promise<void>>();

  constructor(private readonly o: EventConsumerOptions) {}

  /**
   * Starts the loop: connects the source (retrying with backoff while the bus is unreachable, health saying so
   * meanwhile), then fetches and processes until `stop`.
   */
  start(): void {
    if (this.loop !== undefined) return;
    this.loop = this.connect().then(() => this.run());
    this.o.metrics?.observeLag(() => this.lastPending, this.o.source.kind);
    const refresh = () => {
      if (!this.busUp) return;
      this.o.source.pending(this.abort.signal).then(
        (n) => (this.lastPending = n),
        () => undefined, // the fetch loop reports an unreachable bus
      );
    };
    this.lagTimer = setInterval(refresh, this.o.lagIntervalMs ?? 5_000);
    this.lagTimer.unref();
  }

  private async connect(): Promise<void> {
    const signal = this.abort.signal;
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        await this.o.source.start(signal);
        this.busUp = true;
        this.o.logger.info({ source: this.o.source.kind }, 'event consumer connected');
        return;
      } catch (error) {
        if (signal.aborted) return;
        const delay = this.backoff(attempt);
        this.o.logger.warn(
          { source: this.o.source.kind, err: toAppError(error).message, retryInMs: delay },
          'event source unavailable at start',
        );
        await sleep(delay, signal);
      }
    }
  }

  /** Whether the bus answered the last fetch and answers a readiness probe now (health). */
  async ready(signal?: AbortSignal): Promise<boolean> {
    if (this.loop === undefined || this.abort.signal.aborted) return false;
    return this.busUp && (await this.o.source.ready(signal).catch(() => false));
  }

  /** Messages not yet settled, as of the last refresh (the lag metric). */
  pending(): number {
    return this.lastPending;
  }

  private async run(): Promise<void> {
    const { source, maxInFlight, logger } = this.o;
    const signal = this.abort.signal;
    let fetchFailures = 0;
    const batch = this.o.fetchBatch ?? maxInFlight;
    while (!signal.aborted) {
      const pause = this.pausedUntil - Date.now();
      if (pause > 0) await sleep(pause, signal);
      if (signal.aborted) break;
      const room = maxInFlight - this.inFlight;
      // Refill in batches: fetching for every single freed slot would cost a round trip per message.
      if (room < Math.ceil(Math.min(batch, maxInFlight) / 2)) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
        continue;
      }
      try {
        await source.fetch(
          Math.min(room, batch),
          this.o.fetchWaitMs ?? 1_000,
          (message) => {
            const done = this.handle(message).finally(() => this.settled.delete(done));
            this.settled.add(done);
          },
          signal,
        );
        fetchFailures = 0;
        this.busUp = true;
      } catch (error) {
        if (signal.aborted) break;
        this.busUp = false;
        fetchFailures++;
        const delay = this.backoff(fetchFailures);
        logger.warn(
          { source: source.kind, err: toAppError(error).message, retryInMs: delay },
          'event source unavailable',
        );
        await sleep(delay, signal);
      }
    }
  }

  private backoff(attempt: number): number {
    const base = this.o.retryBaseMs ?? 200;
    return Math.min(this.o.retryMaxMs ?? 30_000, base * 2 ** Math.max(0, attempt - 1));
  }

  /** Processes and settles one message; never rejects. */
  private async handle(message: SourceMessage): Promise<void> {
    this.inFlight++;
    const started = performance.now();
    const { metrics, logger, source } = this.o;
    if (message.redelivered) metrics?.redeliveries.add(1, { source: source.kind });
    let outcome: Outcome = 'retried';
    try {
      let input: IngestInput | undefined;
      let rejection: string | undefined;
      try {
        input = this.o.decode(message.payload, message.format ?? this.o.defaultFormat);
      } catch (error) {
        if (!(error instanceof AppError && error.code === 'INVALID_ARGUMENT')) throw error;
        rejection = `malformed payload: ${error.message}`;
      }
      if (input !== undefined) {
        const ack = await this.o.ingest.ingest(input);
        if (ack.status === 'REJECTED') rejection = `rejected: ${ack.message}`;
        else outcome = ack.status === 'ACCEPTED' ? 'accepted' : 'duplicate';
      }
      if (rejection !== undefined) {
        await message.terminate(rejection);
        metrics?.deadLettered.add(1, { source: source.kind });
        logger.warn({ source: source.kind, message: message.id, reason: rejection }, 'event dead-lettered');
        outcome = 'dead_lettered';
      } else {
        await message.ack();
      }
    } catch (error) {
      // The store (or the dead-letter write) failed: the event is not durable, so it must come again.
      const delay = this.backoff(message.deliveries);
      this.pausedUntil = Math.max(this.pausedUntil, Date.now() + delay);
      logger.warn(
        { source: source.kind, message: message.id, err: toAppError(error).message, retryInMs: delay },
        'event not stored; redelivery requested',
      );
      await message.nak(delay).catch((nakError: unknown) =>
        // Unsettled messages come back anyway (ack wait / idle reclaim).
        logger.warn({ err: toAppError(nakError).message }, 'nak failed'),
      );
    } finally {
      this.inFlight--;
      const wake = this.slotFreed;
      this.slotFreed = undefined;
      wake?.();
    }
    metrics?.processed.add(1, { source: source.kind, outcome });
    metrics?.latency.record(performance.now() - started, { source: source.kind });
  }

  /**
   * Stops fetching, lets messages in flight settle within `timeoutMs`, then closes the source. Messages left
   * unsettled are delivered again (ack wait or idle reclaim), which idempotency makes safe.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.abort.abort();
    clearInterval(this.lagTimer);
    const wake = this.slotFreed;
    this.slotFreed = undefined;
    wake?.();
    await this.loop;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...this.settled]),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    await this.o.source.close();
  }
}
