/** Input validation shared by the gateway's services; failures are INVALID_ARGUMENT with a message for the caller. */
import { invalidArgument } from '../../shared/errors.js';

export interface Limits {
  maxIdBytes: number;
  maxEventIdBytes: number;
  maxFutureMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxIdBytes: 256,
  maxEventIdBytes: 128,
  maxFutureMs: 24 * 3600 * 1000,
};

// Control characters are refused: ids become store keys and log fields, where they only cause trouble.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export function validateId(field: string, value: unknown, maxBytes: number): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidArgument(`${field} must not be empty`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) throw invalidArgument(`${field} is ${bytes} bytes; at most ${maxBytes} are allowed`);
  if (CONTROL.test(value)) throw invalidArgument(`${field} must not contain control characters`);
  return value;
}

export function validateTimestamp(value: unknown, nowMs: number, maxFutureMs: number): number {
  const ts = typeof value === 'string' ? Number(value) : value;
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts))
    throw invalidArgument('timestamp_ms must be an integer');
  if (ts < 0) throw invalidArgument(`timestamp_ms must not be negative (got ${ts})`);
  if (ts > nowMs + maxFutureMs) {
    throw invalidArgument(`timestamp_ms ${ts} lies more than ${maxFutureMs} ms in the future`);
  }
  return ts;
}

export function validateRange(field: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw invalidArgument(`${field} must be in ${min}..${max} (got ${String(value)})`);
  }
  return n;
}
