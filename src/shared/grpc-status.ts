/**
 * The single mapping from AppError to a gRPC status, used by every server handler in the project.
 * Messages for INTERNAL/UNKNOWN are generic so that no stack trace or internal detail reaches a client.
 */
import { Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
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

/** Builds the status object a handler passes to its callback or `emit('error')`. */
export function toGrpcStatus(error: unknown): Partial<StatusObject> & { code: status; details: string } {
  const appError: AppError = toAppError(error);
  const code = grpcStatusOf(appError.code);
  const details =
    appError.code === 'INTERNAL' || appError.code === 'UNKNOWN' ? 'internal error' : appError.message;
  return { code, details, metadata: new Metadata() };
}

/** Builds an Error carrying a gRPC status, for APIs (like grpc-js callbacks) that take a ServiceError. */
export function toServiceError(error: unknown): ServiceError {
  const { code, details, metadata } = toGrpcStatus(error);
  return Object.assign(new Error(details), { code, details, metadata: metadata ?? new Metadata() });
}
