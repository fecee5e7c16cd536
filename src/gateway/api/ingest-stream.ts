/**
 * One Ingest-like stream (Ingest: one event per message each way; IngestBatch: many): events go to the ingest
 * service as they arrive, in order; each ack is written only once its event resolved (durable, duplicate or
 * rejected). Acks resolved in one event-loop turn are written together (one group commit resolves a whole batch at
 * once): IngestBatch sends them as one message, Ingest as one corked write per ack. Back-pressure: at most
 * INGEST_WINDOW events of the stream in flight (and the gateway-wide admission bound), else the stream is paused; an
 * IngestBatch message already read is served whole, so a stream may overshoot by one message (at most
 * AUTOMR_MAX_MESSAGE_BYTES of events).
 * A store failure writes the acks already due, then ends the stream with the error (the producer resends what was
 * not acked; idempotency makes that safe).
 */
import { context, type Context } from '@opentelemetry/api';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { toAppError, type AppError } from '../../shared/errors.js';
import { toGrpcStatus } from '../../shared/grpc-status.js';
import type { Logger } from '../../shared/logger.js';
import type { IngestRequest__Output } from '../../generated/automr/v1/IngestRequest.js';
import type { IngestResponse } from '../../generated/automr/v1/IngestResponse.js';
import type { Ack, IngestService } from '../domain/ingest.js';
import type { Admission } from './admission.js';

/** Most events of one stream being stored at once; beyond it the stream is paused (back-pressure). */
const INGEST_WINDOW = 1024;

/** How a method's messages carry events and acks. */
export interface IngestFraming<Req, Res> {
  events(message: Req): readonly IngestRequest__Output[];
  /** Writes the acks due (at least one), in the order they resolved. */
  write(call: ServerDuplexStream<Req, Res>, acks: IngestResponse[]): void;
}

export interface IngestStreamDeps {
  ingest: IngestService;
  logger: Logger;
  admission?: Admission;
  openStreams?: Set<() => void>;
  /** Records the call's outcome (duration, status). */
  observe: (error?: unknown) => void;
  draining: () => AppError;
  /** The caller's trace context when tracing is active (events run in it), else undefined. */
  parent: Context | undefined;
}

const ackMessage = (ack: Ack): IngestResponse => ({
  event_id: ack.eventId,
  status: `STATUS_${ack.status}`,
  message: ack.message,
  unknown_item: ack.unknownItem,
});

export function serveIngestStream<Req, Res>(
  call: ServerDuplexStream<Req, Res>,
  framing: IngestFraming<Req, Res>,
  d: IngestStreamDeps,
): void {
  let inFlight = 0;
  let ended = false;
  let failed = false;
  // Drain asked this stream to finish: no new events are read; once the in-flight ones are acked it ends.
  let closing = false;
  let waitingForRoom = false;
  const resumeWhenRoom = () => {
    waitingForRoom = false;
    if (inFlight < INGEST_WINDOW && !closing) call.resume();
  };
  let acks: IngestResponse[] = [];
  let flushScheduled = false;
  const flushAcks = () => {
    flushScheduled = false;
    if (acks.length === 0 || failed) return;
    const due = acks;
    acks = [];
    framing.write(call, due);
  };
  const finishIfDone = () => {
    if (inFlight !== 0 || failed) return;
    if (ended) {
      flushAcks();
      d.observe();
      d.openStreams?.delete(finish);
      call.end();
    } else if (closing) {
      // Every durable ack is written before the stream ends; the client resends the rest elsewhere.
      flushAcks();
      failed = true;
      d.openStreams?.delete(finish);
      d.observe(d.draining());
      call.emit('error', toGrpcStatus(d.draining()));
    }
  };
  const finish = () => {
    closing = true;
    call.pause();
    finishIfDone();
  };
  d.openStreams?.add(finish);
  // One settle step per event (no extra promise per event for bookkeeping).
  const settled = () => {
    inFlight--;
    d.admission?.ingestFinished();
    if (inFlight < INGEST_WINDOW && !waitingForRoom && !closing) call.resume();
    finishIfDone();
  };
  const onAck = (ack: Ack) => {
    if (!failed) {
      acks.push(ackMessage(ack));
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushAcks);
      }
    }
    settled();
  };
  const onError = (error: unknown) => {
    if (!failed) {
      // Acks of events already durable go out before the error ends the stream.
      flushAcks();
      failed = true;
      d.observe(error);
      d.logger.warn({ err: toAppError(error).message }, 'ingest stream failed');
      call.emit('error', toGrpcStatus(error));
    }
    settled();
  };
  const { parent } = d;
  call.on('data', (message: Req) => {
    if (failed) return;
    for (const req of framing.events(message)) {
      inFlight++;
      if (inFlight >= INGEST_WINDOW) call.pause();
      if (d.admission?.ingestStarted(resumeWhenRoom) === true) {
        waitingForRoom = true;
        call.pause();
      }
      (parent === undefined ? d.ingest.ingest(req) : context.with(parent, () => d.ingest.ingest(req))).then(
        onAck,
        onError,
      );
    }
  });
  call.on('end', () => {
    ended = true;
    finishIfDone();
  });
  const gone = () => {
    failed = true;
    d.openStreams?.delete(finish);
    d.admission?.forget(resumeWhenRoom);
  };
  call.on('error', gone);
  call.on('cancelled', gone);
}
