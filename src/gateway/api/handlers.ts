/**
 * Thin gRPC handlers for automr.v1.RecommenderService: protocol ↔ domain, errors → status via the shared mapper.
 * Each call is tracked so that drain can wait for in-flight work. Ingest streams are served by `ingest-stream.ts`.
 */
import { SpanStatusCode, type Attributes } from '@opentelemetry/api';
import type {
  Metadata,
  ServerDuplexStream,
  ServerUnaryCall,
  ServerWritableStream,
  sendUnaryData,
} from '@grpc/grpc-js';
import { AppError, toAppError } from '../../shared/errors.js';
import { grpcStatusOf, toGrpcStatus, toServiceError } from '../../shared/grpc-status.js';
import { SERVICE_NAME } from '../../shared/recommender-proto.js';
import type { Logger } from '../../shared/logger.js';
import { extractContext, inServerSpan, tracingActive } from '../../shared/tracing.js';
import type { GatewayMetrics } from '../../shared/metrics.js';
import type { RecommenderServiceHandlers } from '../../generated/automr/v1/RecommenderService.js';
import type { IngestRequest__Output } from '../../generated/automr/v1/IngestRequest.js';
import type { IngestResponse } from '../../generated/automr/v1/IngestResponse.js';
import type { IngestBatchRequest__Output } from '../../generated/automr/v1/IngestBatchRequest.js';
import type { IngestBatchResponse } from '../../generated/automr/v1/IngestBatchResponse.js';
import type { RecommendRequest__Output } from '../../generated/automr/v1/RecommendRequest.js';
import type { RecommendResponse } from '../../generated/automr/v1/RecommendResponse.js';
import type { GetMemoryRequest__Output } from '../../generated/automr/v1/GetMemoryRequest.js';
import type { GetMemoryResponse } from '../../generated/automr/v1/GetMemoryResponse.js';
import type { ForgetUserRequest__Output } from '../../generated/automr/v1/ForgetUserRequest.js';
import type { ForgetUserResponse } from '../../generated/automr/v1/ForgetUserResponse.js';
import type { IngestService } from '../domain/ingest.js';
import type { Admission } from './admission.js';
import { serveIngestStream, type IngestFraming } from './ingest-stream.js';
import type { RecommendService } from '../domain/recommend.js';

export interface HandlerDeps {
  ingest: IngestService;
  recommend: RecommendService;
  logger: Logger;
  metrics?: GatewayMetrics;
  /** Refuses new calls while draining. */
  draining: () => boolean;
  /** Per-gateway bounds on in-flight Recommends and Ingest events (none when absent). */
  admission?: Admission;
  /** Open Ingest streams register here so that drain can ask them to finish. */
  openStreams?: Set<() => void>;
}

function headersOf(metadata: Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata.getMap())) if (typeof v === 'string') out[k] = v;
  return out;
}

/**
 * The call's abort signal (client cancel or deadline) and `done`, which drops its listener. grpc-js enforces the
 * deadline itself (it answers DEADLINE_EXCEEDED and emits 'cancelled'), so no timer of our own per call: a
 * cancellation at or past the deadline is the deadline.
 */
function signalOf(call: {
  on(event: 'cancelled', fn: () => void): unknown;
  removeListener(event: 'cancelled', fn: () => void): unknown;
  getDeadline(): Date | number;
}): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const onCancelled = () => {
    const deadline = call.getDeadline();
    const ms = deadline instanceof Date ? deadline.getTime() : deadline;
    // grpc-js's timer may fire within a millisecond of the deadline as Date.now() reads it.
    controller.abort(
      Date.now() >= ms - 1
        ? new AppError('DEADLINE_EXCEEDED', 'deadline exceeded')
        : new AppError('CANCELLED', 'client cancelled the call'),
    );
  };
  call.on('cancelled', onCancelled);
  return {
    signal: controller.signal,
    done: () => call.removeListener('cancelled', onCancelled),
  };
}

/** Server span names and attributes as the OpenTelemetry RPC conventions say: `package.Service/Method`. */
const spanName = (method: string) => `${SERVICE_NAME}/${method}`;
const rpcAttributes = (method: string) => ({
  'rpc.system': 'grpc',
  'rpc.service': SERVICE_NAME,
  'rpc.method': method,
});
const RECOMMEND_SPAN = spanName('Recommend');
const RECOMMEND_ATTRIBUTES = rpcAttributes('Recommend');
/** Resolved writes share one promise (no allocation per message without back-pressure). */
const WRITTEN = Promise.resolve();

/** Ingest: one event per message each way; acks of one turn written corked (one write per ack through grpc-js). */
const singleEvents: IngestFraming<IngestRequest__Output, IngestResponse> = {
  events: (message) => [message],
  write: (call, acks) => {
    if (acks.length === 1) {
      call.write(acks[0] as IngestResponse);
      return;
    }
    call.cork();
    for (const ack of acks) call.write(ack);
    call.uncork();
  },
};

/** IngestBatch: the acks of one turn as one message. */
const batchedEvents: IngestFraming<IngestBatchRequest__Output, IngestBatchResponse> = {
  events: (message) => message.events,
  write: (call, acks) => call.write({ acks }),
};

const DRAINING = () =>
  new AppError('UNAVAILABLE', 'gateway is shutting down; retry on another instance', { retryable: true });

export function createHandlers(d: HandlerDeps): RecommenderServiceHandlers {
  // Attributes of successful calls per method, built once (metric attributes are read, never kept by reference).
  const okAttributes = new Map<string, Attributes>();
  const observe = (method: string, started: number, error?: unknown) => {
    let attributes = error === undefined ? okAttributes.get(method) : undefined;
    if (attributes === undefined) {
      attributes = {
        ...rpcAttributes(method),
        'rpc.grpc.status_code': error === undefined ? 0 : grpcStatusOf(toAppError(error).code),
      };
      if (error === undefined) okAttributes.set(method, attributes);
    }
    d.metrics?.requestDuration.record((performance.now() - started) / 1000, attributes);
    if (error !== undefined && toAppError(error).code === 'INTERNAL')
      d.logger.error({ err: error, method }, 'request failed');
  };

  /** Runs a unary handler in a server span continuing the caller's trace. */
  function unary<Req, Res>(method: string, work: (req: Req) => Promise<Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      const started = performance.now();
      if (d.draining()) return callback(toServiceError(DRAINING()));
      inServerSpan(
        spanName(method),
        rpcAttributes(method),
        () => headersOf(call.metadata),
        (span) => {
          work(call.request).then(
            (res) => {
              span.end();
              observe(method, started);
              callback(null, res);
            },
            (error: unknown) => {
              span.setStatus({ code: SpanStatusCode.ERROR, message: toAppError(error).message });
              span.end();
              observe(method, started, error);
              callback(toServiceError(error));
            },
          );
        },
      );
    };
  }

  /** Opens an Ingest-like stream unless draining or over the admission bound. */
  function ingestStream<Req, Res>(
    method: string,
    call: ServerDuplexStream<Req, Res>,
    framing: IngestFraming<Req, Res>,
  ): void {
    const started = performance.now();
    if (d.draining()) {
      call.emit('error', toServiceError(DRAINING()));
      return;
    }
    try {
      d.admission?.admitIngestStream();
    } catch (error) {
      call.emit('error', toServiceError(error));
      return;
    }
    serveIngestStream(call, framing, {
      ingest: d.ingest,
      logger: d.logger,
      ...(d.admission === undefined ? {} : { admission: d.admission }),
      ...(d.openStreams === undefined ? {} : { openStreams: d.openStreams }),
      observe: (error) => observe(method, started, error),
      draining: DRAINING,
      parent: tracingActive() ? extractContext(headersOf(call.metadata)) : undefined,
    });
  }

  return {
    Ingest(call: ServerDuplexStream<IngestRequest__Output, IngestResponse>) {
      ingestStream('Ingest', call, singleEvents);
    },

    IngestBatch(call: ServerDuplexStream<IngestBatchRequest__Output, IngestBatchResponse>) {
      ingestStream('IngestBatch', call, batchedEvents);
    },

    Recommend(call: ServerWritableStream<RecommendRequest__Output, RecommendResponse>) {
      const started = performance.now();
      if (d.draining()) {
        call.emit('error', toServiceError(DRAINING()));
        return;
      }
      const { signal, done } = signalOf(call);
      const write = (msg: RecommendResponse) =>
        call.write(msg) ? WRITTEN : new Promise<void>((resolve) => call.once('drain', () => resolve()));
      inServerSpan(
        RECOMMEND_SPAN,
        RECOMMEND_ATTRIBUTES,
        () => headersOf(call.metadata),
        (span) => {
          const run = () =>
            d.recommend.recommend(
              call.request,
              {
                items: (batch) => write({ items: { items: batch } }),
                summary: (summary) => write({ summary }),
              },
              signal,
            );
          (d.admission ? d.admission.recommend(run) : run()).then(
            () => {
              done();
              span.end();
              observe('Recommend', started);
              call.end();
            },
            (error: unknown) => {
              done();
              span.setStatus({ code: SpanStatusCode.ERROR, message: toAppError(error).message });
              span.end();
              observe('Recommend', started, error);
              call.emit('error', toGrpcStatus(error));
            },
          );
        },
      );
    },

    GetMemory: unary<GetMemoryRequest__Output, GetMemoryResponse>('GetMemory', async (req) => ({
      entries: await d.recommend.getMemory(req),
    })),

    ForgetUser: unary<ForgetUserRequest__Output, ForgetUserResponse>('ForgetUser', async (req) => ({
      removed: await d.recommend.forget(req),
    })),
  };
}
