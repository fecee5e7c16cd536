/**
 * Load on the bidirectional Ingest stream: `streams` open streams, users partitioned across them (so one
 * user's events stay in order on one stream). Closed loop keeps `window` events outstanding per stream
 * (an ack frees a slot); open loop sends `rate` events/s in total whatever the acks do. Latency is from
 * sending (open loop: from the intended send time) to the event's durable ack. With `batch`, the method is
 * IngestBatch: events go `batch` to a message (closed loop: a message as soon as `batch` slots are free; open loop:
 * the events due on a stream in one tick, cut into messages of at most `batch`) and acks come several to a message.
 */
import { performance } from 'node:perf_hooks';
import { Client, Metadata, credentials, type ClientDuplexStream } from '@grpc/grpc-js';
import { createHistogram, encodeHistogram, recordMs } from './histogram.js';
import { paceArrivals } from './pacing.js';
import { loadMethod } from './grpc-target.js';
import { tokenOptionsFromEnv } from '../shared/transport.js';

export interface IngestLoadSpec {
  address: string;
  protoPath: string;
  includeDirs: string[];
  service: string;
  method: string;
  streams: number;
  /** Closed loop: events outstanding per stream. */
  window: number;
  /** Events per IngestBatch message (`method` is then IngestBatch); absent: one event per Ingest message. */
  batch?: number;
  /** Open loop when set: events/s over all streams. */
  rate?: number;
  warmupMs: number;
  durationMs: number;
  /** Users are `${userPrefix}${i}` for i < users. */
  users: number;
  userPrefix: string;
  /** Catalog item ids to draw from. */
  items: string[];
  /** Makes event ids unique across runs against the same store. */
  runId: string;
  /** Timestamp of the first event; each later event is 1 ms later. */
  baseTimestampMs: number;
}

export interface IngestLoadResult {
  spec: Omit<IngestLoadSpec, 'items'>;
  acked: number;
  /** Acks over the whole run, warmup included (to normalise server-side counters). */
  allAcked: number;
  accepted: number;
  duplicate: number;
  rejected: number;
  errors: number;
  errorSamples: string[];
  elapsedS: number;
  eps: number;
  latency: string;
  /** Every user that received at least one event. */
  usersTouched: number;
}

interface Ack {
  eventId?: string;
  status?: string;
  message?: string;
}

interface IngestEvent {
  eventId: string;
  userId: string;
  itemId: string | undefined;
  timestampMs: number;
}

interface OpenStream {
  call: ClientDuplexStream<unknown, unknown>;
  /** Events not yet written (batched mode). */
  queued: IngestEvent[];
  users: number[];
  nextUser: number;
  outstanding: number;
  sentAt: Map<string, { at: number; measured: boolean }>;
}

export async function runIngestLoad(spec: IngestLoadSpec): Promise<IngestLoadResult> {
  const method = loadMethod(spec);
  const client = new Client(spec.address, credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
    ...tokenOptionsFromEnv(),
  });
  const histogram = createHistogram();
  const counts = { acked: 0, allAcked: 0, accepted: 0, duplicate: 0, rejected: 0, errors: 0 };
  const errorSamples: string[] = [];
  const touched = new Set<number>();
  const start = performance.now();
  const measureStart = start + spec.warmupMs;
  const end = measureStart + spec.durationMs;
  let sequence = 0;
  let lastAck = measureStart;
  let stopping = false;

  const noteError = (message: string): void => {
    counts.errors += 1;
    if (errorSamples.length < 5) errorSamples.push(message);
  };

  const streams: OpenStream[] = [];
  const finished: Promise<void>[] = [];
  for (let s = 0; s < spec.streams; s += 1) {
    const users: number[] = [];
    for (let u = s; u < spec.users; u += spec.streams) users.push(u);
    const call = client.makeBidiStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      new Metadata(),
      {},
    );
    const stream: OpenStream = { call, queued: [], users, nextUser: 0, outstanding: 0, sentAt: new Map() };
    streams.push(stream);
    finished.push(
      new Promise<void>((resolve) => {
        call.on('status', () => resolve());
        call.on('error', (error: Error) => {
          noteError(error.message);
          resolve();
        });
      }),
    );
  }

  const batch = spec.batch ?? 0;
  /** Writes the stream's queued events, at most `batch` to a message. */
  const flush = (stream: OpenStream): void => {
    while (stream.queued.length > 0) stream.call.write({ events: stream.queued.splice(0, batch) });
  };
  const send = (stream: OpenStream, intended?: number): boolean => {
    if (stream.users.length === 0) return false;
    const user = stream.users[stream.nextUser % stream.users.length] ?? 0;
    stream.nextUser += 1;
    const n = sequence++;
    const eventId = `${spec.runId}-${n}`;
    const now = performance.now();
    const at = intended ?? now;
    stream.sentAt.set(eventId, { at, measured: at >= measureStart });
    stream.outstanding += 1;
    touched.add(user);
    const event: IngestEvent = {
      eventId,
      userId: `${spec.userPrefix}${user}`,
      itemId: spec.items[(n * 7919) % spec.items.length],
      timestampMs: spec.baseTimestampMs + n,
    };
    if (batch > 0) stream.queued.push(event);
    else stream.call.write(event);
    return true;
  };

  const closedLoop = spec.rate === undefined;
  for (const stream of streams) {
    const onAck = (ack: Ack, now: number): void => {
      stream.outstanding -= 1;
      counts.allAcked += 1;
      const sent = ack.eventId === undefined ? undefined : stream.sentAt.get(ack.eventId);
      if (sent !== undefined && ack.eventId !== undefined) stream.sentAt.delete(ack.eventId);
      if (sent?.measured === true && sent.at < end) {
        counts.acked += 1;
        if (ack.status === 'STATUS_ACCEPTED') counts.accepted += 1;
        else if (ack.status === 'STATUS_DUPLICATE') counts.duplicate += 1;
        else {
          counts.rejected += 1;
          if (errorSamples.length < 5) errorSamples.push(`rejected: ${ack.message ?? ''}`);
        }
        recordMs(histogram, now - sent.at);
        lastAck = Math.max(lastAck, now);
      }
    };
    stream.call.on('data', (message: unknown) => {
      const now = performance.now();
      if (batch > 0) for (const ack of (message as { acks: Ack[] }).acks) onAck(ack, now);
      else onAck(message as Ack, now);
      if (closedLoop && !stopping && now < end) {
        // Batched: a message once `batch` slots are free (the window is never exceeded).
        if (batch > 0) {
          while (stream.outstanding + batch <= spec.window) for (let i = 0; i < batch; i += 1) send(stream);
          flush(stream);
        } else send(stream);
      }
      if (stopping && stream.outstanding === 0) stream.call.end();
    });
  }

  if (closedLoop) {
    for (const stream of streams) {
      for (let i = 0; i < spec.window; i += 1) send(stream);
      flush(stream);
    }
    await new Promise((resolve) => setTimeout(resolve, end - performance.now()));
  } else {
    let issued = 0;
    await paceArrivals(
      start,
      end,
      1000 / (spec.rate ?? 1),
      (intended) => {
        const stream = streams[issued++ % streams.length];
        if (stream !== undefined) send(stream, intended);
      },
      () => {
        if (batch > 0) for (const stream of streams) flush(stream);
      },
    );
  }
  stopping = true;
  for (const stream of streams) if (stream.outstanding === 0) stream.call.end();
  const drainTimer = setTimeout(() => {
    for (const stream of streams) stream.call.cancel();
  }, 30_000);
  await Promise.all(finished);
  clearTimeout(drainTimer);
  client.close();

  const elapsedS = (Math.max(lastAck, end) - measureStart) / 1000;
  const { items: _items, ...rest } = spec;
  return {
    spec: rest,
    ...counts,
    errorSamples,
    elapsedS,
    eps: elapsedS > 0 ? counts.acked / elapsedS : 0,
    latency: encodeHistogram(histogram),
    usersTouched: touched.size,
  };
}
