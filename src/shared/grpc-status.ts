/**
 * The single mapping from AppError to a gRPC status, used by every server handler in the project.
 * Messages for INTERNAL/UNKNOWN are generic so that no stack trace or internal detail reaches a client.
 */
import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { type AppError, type ErrorCode, toAppError } from './errors.js';

const CODE_TO_STATUS: Record<ErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: status.UNAVAILABLE,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  CANCELLED: status.CANCELLED,
  UNIMPLEMENTED: status.UNIMPLEMENTED,
  INTERNAL: status.INTERNAL,
  UNKNOWN: status.UNKNOWN,
};

const STATUS_TO_CODE = new Map<status, ErrorCode>(
  Object.entries(CODE_TO_STATUS).map(([code, grpcStatus]) => [grpcStatus, code as ErrorCode]),
);

export function grpcStatusOf(code: ErrorCode): status {
  return CODE_TO_STATUS[code];
}

export function errorCodeOf(grpcStatus: status): ErrorCode {
  return STATUS_TO_CODE.get(grpcStatus) ?? 'UNKNOWN';
}

// google.rpc.Status with a google.rpc.RetryInfo detail, as gRPC's richer error model sends it in the
// `grpc-status-details-bin` trailer (field numbers from googleapis' google/rpc/status.proto and error_details.proto).
const rpcTypes = protobuf.Root.fromJSON({
  nested: {
    rpc: {
      nested: {
        Status: {
          fields: {
            code: { type: 'int32', id: 1 },
            message: { type: 'string', id: 2 },
            details: { rule: 'repeated', type: 'Any', id: 3 },
          },
        },
        Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
        Duration: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } },
        RetryInfo: { fields: { retry_delay: { type: 'Duration', id: 1 } } },
      },
    },
  },
});
const RpcStatus = rpcTypes.lookupType('rpc.Status');
const RetryInfo = rpcTypes.lookupType('rpc.RetryInfo');

/** The `grpc-status-details-bin` value telling the client to retry after `retryAfterMs`. */
export function retryInfoDetails(code: status, message: string, retryAfterMs: number): Buffer {
  const ms = Math.max(0, Math.round(retryAfterMs));
  const retry = RetryInfo.encode(
    RetryInfo.create({ retry_delay: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 } }),
  ).finish();
  const any = { type_url: 'type.googleapis.com/google.rpc.RetryInfo', value: retry };
  return Buffer.from(RpcStatus.encode(RpcStatus.create({ code, message, details: [any] })).finish());
}

/** Reads the retry delay (ms) from a `grpc-status-details-bin` value, if it carries a RetryInfo. */
export function retryDelayOf(details: Buffer): number | undefined {
  const decoded = RpcStatus.toObject(RpcStatus.decode(details), { longs: Number }) as {
    details?: { type_url: string; value: Uint8Array }[];
  };
  const any = decoded.details?.find((d) => d.type_url.endsWith('/google.rpc.RetryInfo'));
  if (any === undefined) return undefined;
  const info = RetryInfo.toObject(RetryInfo.decode(any.value), { longs: Number }) as {
    retry_delay?: { seconds?: number; nanos?: number };
  };
  return (info.retry_delay?.seconds ?? 0) * 1000 + (info.retry_delay?.nanos ?? 0) / 1_000_000;
}

/**
 * Last line of defence for "no status names an internal host, port or path": addresses (IPv4, bracketed IPv6,
 * host:port) and absolute file paths are cut from client-bound messages. Sources already avoid them.
 */
export function scrubbed(message: string): string {
  return message
    .replace(/\[[0-9a-fA-F]*:[0-9a-fA-F:.]*\](:\d+)?/g, '<address>')
    .replace(/\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b/g, '<address>')
    .replace(/\b[A-Za-z][\w.-]*:\d{2,5}\b/g, '<address>')
    .replace(/(^|[\s'"(=])\/(?:[\w.@-]+\/)+[\w.@-]*/g, '$1<path>');
}

/** Builds the status object a handler passes to its callback or `emit('error')`. */
export function toGrpcStatus(error: unknown): Partial<StatusObject> & { code: status; details: string } {
  const appError: AppError = toAppError(error);
  const code = grpcStatusOf(appError.code);
  const details =
    appError.code === 'INTERNAL' || appError.code === 'UNKNOWN'
      ? 'internal error'
      : scrubbed(appError.message);
  const metadata = new Metadata();
  if (appError.retryAfterMs !== undefined)
    metadata.set('grpc-status-details-bin', retryInfoDetails(code, details, appError.retryAfterMs));
  return { code, details, metadata };
}

/** Builds an Error carrying a gRPC status, for APIs (like grpc-js callbacks) that take a ServiceError. */
export function toServiceError(error: unknown): ServiceError {
  const { code, details, metadata } = toGrpcStatus(error);
  return Object.assign(new Error(details), { code, details, metadata: metadata ?? new Metadata() });
}
