/**
 * Ingest: validates an event, stores it durably (idempotent per user and event_id) and schedules its encoding.
 * Late events (older than the user's newest) are inserted in timestamp order, ties kept in arrival order; the K
 * elements after them get new windows, so their encodings become stale and are redone by the encoder.
 */
import { AppError } from '../../shared/errors.js';
import type { Span } from '@opentelemetry/api';
import { inSpan, tracingActive } from '../../shared/tracing.js';
import type { GatewayMetrics } from '../../shared/metrics.js';
import type { Encoder } from './encoder.js';
import type { Catalog, MemoryStore } from './ports.js';
import { validateId, validateTimestamp, type Limits } from './validation.js';

export interface IngestInput {
  event_id?: unknown;
  user_id?: unknown;
  item_id?: unknown;
  timestamp_ms?: unknown;
}

export type AckStatus = 'ACCEPTED' | 'DUPLICATE' | 'REJECTED';

export interface Ack {
  eventId: string;
  status: AckStatus;
  message: string;
  unknownItem: boolean;
}

export interface IngestDeps {
  store: MemoryStore;
  encoder: Encoder;
  catalog: Catalog;
  limits: Limits;
  maxHistory: number;
  /** Raw entries kept before the history view as window context of its oldest element (window - 1). */
  historyContext?: number;
  metrics?: GatewayMetrics;
  now?: () => number;
}

/** The checks of Ingest (also applied by the bulk import); throws INVALID_ARGUMENT naming the field. */
export function validateIngestInput(
  input: IngestInput,
  limits: Limits,
  nowMs: number,
): { eventId: string; userId: string; itemId: string; timestampMs: number } {
  return {
    eventId: validateId('event_id', input.event_id, limits.maxEventIdBytes),
    userId: validateId('user_id', input.user_id, limits.maxIdBytes),
    itemId: validateId('item_id', input.item_id, limits.maxIdBytes),
    timestampMs: validateTimestamp(input.timestamp_ms, nowMs, limits.maxFutureMs),
  };
}

export class IngestService {
  constructor(private readonly d: IngestDeps) {}

  /**
   * Resolves to the ack. Bad events resolve to REJECTED; store failures reject (the caller ends the stream with
   * UNAVAILABLE so that the producer resends the unacked events, which idempotency makes safe).
   */
  ingest(input: IngestInput): Promise<Ack> {
    // Without a tracer provider the spans would be no-ops: skip them (and their context switches) per event.
    if (!tracingActive()) return this.run(input, undefined);
    return inSpan('ingest', (span) => this.run(input, span));
  }

  private async run(input: IngestInput, span: Span | undefined): Promise<Ack> {
    const eventId = typeof input.event_id === 'string' ? input.event_id : '';
    let userId: string, itemId: string, timestampMs: number;
    try {
      ({ userId, itemId, timestampMs } = validateIngestInput(
        input,
        this.d.limits,
        (this.d.now ?? Date.now)(),
      ));
    } catch (error) {
      if (error instanceof AppError && error.code === 'INVALID_ARGUMENT') {
        span?.setAttribute('automr.ingest.status', 'REJECTED');
        this.d.metrics?.ingestEvents.add(1, { status: 'REJECTED' });
        return { eventId, status: 'REJECTED', message: error.message, unknownItem: false } satisfies Ack;
      }
      throw error;
    }
    span?.setAttribute('automr.user_id', userId);
    const known = this.d.catalog.tokenOf(itemId);
    const token = known ?? this.d.catalog.tokens.unk;
    const started = performance.now();
    const append = () =>
      this.d.store.append(
        { userId, eventId, itemId, token, timestampMs },
        this.d.maxHistory,
        this.d.historyContext ?? 0,
      );
    const result = await (span === undefined ? append() : inSpan('memory.write', append));
    this.d.metrics?.stageDuration.record(performance.now() - started, { stage: 'memory.write' });
    const status: AckStatus = result.status === 'accepted' ? 'ACCEPTED' : 'DUPLICATE';
    span?.setAttribute('automr.ingest.status', status);
    this.d.metrics?.ingestEvents.add(1, { status });
    if (status === 'ACCEPTED') {
      this.d.metrics?.ingestLag.record(Math.max(0, Date.now() - timestampMs));
      this.d.encoder.schedule(userId, timestampMs);
    }
    const unknownItem = known === undefined;
    const message =
      status === 'DUPLICATE'
        ? 'event_id already ingested for this user; nothing changed'
        : result.dropped === true
          ? `older than the ${this.d.maxHistory} newest events kept for this user; not kept (history cap)`
          : unknownItem
            ? `item_id ${JSON.stringify(itemId)} is not in the catalog; kept and encoded as the unk token`
            : '';
    return { eventId, status, message, unknownItem };
  }
}
