/**
 * A typed client of the public API (`proto/automr/v1/recommender.proto`, service `automr.v1.RecommenderService`),
 * used by the demo, the benchmark, the replay and the tests. Messages are the generated wire types (field names
 * as in the proto); calls take a deadline and an optional AbortSignal, and errors are grpc-js `ServiceError`s.
 */
import {
  credentials as grpcCredentials,
  Metadata,
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientDuplexStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadRecommenderProto } from '../shared/recommender-proto.js';
import type { RecommenderServiceClient } from '../generated/automr/v1/RecommenderService.js';
import type { IngestRequest } from '../generated/automr/v1/IngestRequest.js';
import type { IngestResponse__Output } from '../generated/automr/v1/IngestResponse.js';
import type { IngestBatchRequest } from '../generated/automr/v1/IngestBatchRequest.js';
import type { IngestBatchResponse__Output } from '../generated/automr/v1/IngestBatchResponse.js';
import type { RecommendRequest } from '../generated/automr/v1/RecommendRequest.js';
import type { RecommendResponse__Output } from '../generated/automr/v1/RecommendResponse.js';
import type { RankedItem__Output } from '../generated/automr/v1/RankedItem.js';
import type { RecommendSummary__Output } from '../generated/automr/v1/RecommendSummary.js';
import type { MemoryEntry__Output } from '../generated/automr/v1/MemoryEntry.js';

/** One ranked item of a Recommend response: the one `RankedItem` of every caller of the API. */
export type RankedItem = RankedItem__Output;
export type RecommendSummary = RecommendSummary__Output;
export type MemoryEntry = MemoryEntry__Output;
export type IngestEvent = IngestRequest;
export type IngestAck = IngestResponse__Output;
export type { RecommendRequest };

export interface RecommendResult {
  items: RankedItem[];
  /** Item messages the server streamed (the items come in batches before the summary). */
  batches: number;
  summary: RecommendSummary | undefined;
}

export interface RecommenderClientOptions {
  /** Channel credentials; insecure (loopback development) unless given. */
  credentials?: ChannelCredentials;
  /** Metadata sent with every call (e.g. `authorization`). */
  metadata?: Record<string, string>;
  /** Deadline of each call (ms); an Ingest stream gets it plus `ingestMsPerEvent` per event. */
  deadlineMs?: number;
  ingestMsPerEvent?: number;
  channelOptions?: ChannelOptions;
}

export interface CallControl {
  signal?: AbortSignal;
  deadlineMs?: number;
}

export class RecommenderClient {
  /** The generated grpc-js stub, for callers that drive a stream themselves. */
  readonly stub: RecommenderServiceClient;
  private readonly deadlineMs: number;
  private readonly ingestMsPerEvent: number;
  private readonly metadataEntries: [string, string][];

  constructor(
    readonly address: string,
    options: RecommenderClientOptions = {},
  ) {
    const { grpc } = loadRecommenderProto();
    this.stub = new grpc.automr.v1.RecommenderService(
      address,
      options.credentials ?? grpcCredentials.createInsecure(),
      { 'grpc.max_receive_message_length': 64 * 1024 * 1024, ...options.channelOptions },
    );
    this.deadlineMs = options.deadlineMs ?? 30_000;
    this.ingestMsPerEvent = options.ingestMsPerEvent ?? 50;
    this.metadataEntries = Object.entries(options.metadata ?? {});
  }

  waitForReady(timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.stub.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve()));
    });
  }

  /** A fresh Metadata with the client's entries (grpc-js takes ownership of the object it is given). */
  metadata(): Metadata {
    const metadata = new Metadata();
    for (const [key, value] of this.metadataEntries) metadata.set(key, value);
    return metadata;
  }

  private options(control: CallControl = {}, extraMs = 0): CallOptions {
    return { deadline: Date.now() + (control.deadlineMs ?? this.deadlineMs) + extraMs };
  }

  /** An Ingest stream the caller writes to and reads acks from. */
  ingestStream(control: CallControl = {}): ClientDuplexStream<IngestRequest, IngestResponse__Output> {
    const call = this.stub.Ingest(this.metadata(), this.options(control));
    cancelOnAbort(call, control.signal);
    return call;
  }

  /** An IngestBatch stream: events many to a message, acks many to a message (match them by event_id). */
  ingestBatchStream(
    control: CallControl = {},
  ): ClientDuplexStream<IngestBatchRequest, IngestBatchResponse__Output> {
    const call = this.stub.IngestBatch(this.metadata(), this.options(control));
    cancelOnAbort(call, control.signal);
    return call;
  }

  /**
   * Sends every event on one Ingest stream, at most `window` unacknowledged, and resolves with one ack per event
   * in the order the acks came. The deadline grows with the number of events. Rejects with the stream's error.
   */
  ingest(events: IngestEvent[], window = 256, control: CallControl = {}): Promise<IngestAck[]> {
    const call = this.stub.Ingest(
      this.metadata(),
      this.options(control, events.length * this.ingestMsPerEvent),
    );
    cancelOnAbort(call, control.signal);
    return pumpEvents(call, events, window, {
      write: (batch) => call.write(batch[0] as IngestEvent),
      acks: (message: IngestAck) => [message],
      batch: 1,
    });
  }

  /**
   * As `ingest`, through IngestBatch: `batch` events to a message (a message once `batch` slots of the window are
   * free), acks as they come, several to a message.
   */
  ingestBatched(
    events: IngestEvent[],
    batch = 64,
    window = 256,
    control: CallControl = {},
  ): Promise<IngestAck[]> {
    const call = this.stub.IngestBatch(
      this.metadata(),
      this.options(control, events.length * this.ingestMsPerEvent),
    );
    cancelOnAbort(call, control.signal);
    return pumpEvents(call, events, Math.max(window, batch), {
      write: (chunk) => call.write({ events: chunk }),
      acks: (message: IngestBatchResponse__Output) => message.acks,
      batch,
    });
  }

  /** One Recommend: every streamed item in order and the summary. Rejects with the call's error. */
  recommend(request: RecommendRequest, control: CallControl = {}): Promise<RecommendResult> {
    const call = this.stub.Recommend(request, this.metadata(), this.options(control));
    cancelOnAbort(call, control.signal);
    const result: RecommendResult = { items: [], batches: 0, summary: undefined };
    return new Promise<RecommendResult>((resolve, reject) => {
      call.on('data', (message: RecommendResponse__Output) => {
        if (message.items) {
          result.batches += 1;
          result.items.push(...message.items.items);
        }
        if (message.summary) result.summary = message.summary;
      });
      call.on('error', reject);
      call.on('end', () => resolve(result));
    });
  }

  getMemory(userId: string, control: CallControl = {}): Promise<MemoryEntry[]> {
    return new Promise((resolve, reject) => {
      const call = this.stub.GetMemory(
        { user_id: userId },
        this.metadata(),
        this.options(control),
        (error, r) => (error ? reject(error) : resolve(r?.entries ?? [])),
      );
      cancelOnAbort(call, control.signal);
    });
  }

  /** Deletes a user's memory; resolves with the number of entries removed. */
  forgetUser(userId: string, control: CallControl = {}): Promise<number> {
    return new Promise((resolve, reject) => {
      const call = this.stub.ForgetUser(
        { user_id: userId },
        this.metadata(),
        this.options(control),
        (error, r) => (error ? reject(error) : resolve(r?.removed ?? 0)),
      );
      cancelOnAbort(call, control.signal);
    });
  }

  close(): void {
    this.stub.close();
  }
}

export function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === 'number';
}

function cancelOnAbort(call: { cancel(): void }, signal: AbortSignal | undefined): void {
  if (signal === undefined) return;
  if (signal.aborted) call.cancel();
  else signal.addEventListener('abort', () => call.cancel(), { once: true });
}

/**
 * Writes `events` `batch` to a message, at most `window` unacknowledged, and resolves with the acks in arrival order
 * once the server ended the stream after the last one.
 */
function pumpEvents<Req, Res>(
  call: ClientDuplexStream<Req, Res>,
  events: IngestEvent[],
  window: number,
  framing: { write: (chunk: IngestEvent[]) => void; acks: (message: Res) => IngestAck[]; batch: number },
): Promise<IngestAck[]> {
  const acks: IngestAck[] = [];
  let next = 0;
  return new Promise<IngestAck[]>((resolve, reject) => {
    const pump = (): void => {
      while (
        next < events.length &&
        next - acks.length + Math.min(framing.batch, events.length - next) <= window
      ) {
        const chunk = events.slice(next, next + framing.batch);
        next += chunk.length;
        framing.write(chunk);
      }
      if (next === events.length && acks.length === events.length) call.end();
    };
    call.on('data', (message: Res) => {
      acks.push(...framing.acks(message));
      pump();
    });
    call.on('error', reject);
    call.on('end', () => resolve(acks));
    pump();
  });
}
