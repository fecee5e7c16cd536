/**
 * The EventSource port: a bus that delivers interaction events at least once (NATS JetStream, Redis Streams; a Kafka
 * adapter would be one more implementation). The consumer loop pulls a bounded batch, settles every message exactly
 * once with ack, nak or term, and pulls again only when it has room: flow control lives in the loop, not in the bus.
 */

/** How a message's payload is encoded: `automr.v1.IngestRequest` in protobuf binary or in proto3 JSON. */
export type PayloadFormat = 'protobuf' | 'json';

export interface SourceMessage {
  /** Bus-specific position (stream sequence, entry id), for logs and dead letters. */
  readonly id: string;
  readonly payload: Uint8Array;
  /** The format the message declares (a header or field), if any; otherwise the configured default applies. */
  readonly format: PayloadFormat | undefined;
  /** True when the bus delivered this message before (to this or another consumer). */
  readonly redelivered: boolean;
  /** Deliveries so far, this one included (1 on the first), as far as the bus tells. */
  readonly deliveries: number;
  /** Done: the event is durable (or a duplicate); the bus never delivers it again. */
  ack(): Promise<void>;
  /** Not done (e.g. the store failed): deliver it again after `delayMs`. */
  nak(delayMs: number): Promise<void>;
  /**
   * Never deliverable (malformed or rejected): parks the message with `reason` in the dead letter and stops its
   * redelivery. Resolves once the dead letter is written; if that fails it rejects and the message stays pending.
   */
  terminate(reason: string): Promise<void>;
}

export interface EventSource {
  /** `nats`, `redis-streams`: for logs and metric labels. */
  readonly kind: string;
  /** Connects and creates what the source owns (consumer group, durable consumer); rejects if the bus is down. */
  start(signal?: AbortSignal): Promise<void>;
  /**
   * Pulls up to `max` messages and hands each to `deliver` as it arrives (so a partly filled batch is processed
   * at once), waiting up to `waitMs` in all; resolves with the number delivered. Rejects with an UNAVAILABLE
   * AppError when the bus cannot be reached; `signal` ends the wait early.
   */
  fetch(
    max: number,
    waitMs: number,
    deliver: (message: SourceMessage) => void,
    signal?: AbortSignal,
  ): Promise<number>;
  /** Messages not yet settled by this consumer (group): delivered-but-unacked plus not yet delivered. */
  pending(signal?: AbortSignal): Promise<number>;
  /** Whether the bus answers right now (health). */
  ready(signal?: AbortSignal): Promise<boolean>;
  close(): Promise<void>;
}
