/** Input validation shared by the gateway's services; failures are INVALID_ARGUMENT with a message for the caller. */
import { invalidArgument } from '../../shared/errors.js';

export interface Limits {
  maxIdBytes: number;
  maxEventIdBytes: number;
  maxFutureMs: number;
  /** Most `exclude_item_ids` in one Recommend. */
  maxExcludeItems: number;
  /** Most `candidate_item_ids` in one Recommend. */
  maxCandidateItems: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxIdBytes: 256,
  maxEventIdBytes: 128,
  maxFutureMs: 24 * 3600 * 1000,
  maxExcludeItems: 1_000,
  maxCandidateItems: 10_000,
};

// Control characters are refused: ids become store keys and log fields, where they only cause trouble.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
// With the u flag a surrogate pair is one code point, so only lone surrogates match the range.
const LONE_SURROGATE_OR_REPLACEMENT = /[\uD800-\uDFFF\uFFFD]/u;

export function validateId(field: string, value: unknown, maxBytes: number): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidArgument(`${field} must not be empty`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) throw invalidArgument(`${field} is ${bytes} bytes; at most ${maxBytes} are allowed`);
  if (CONTROL.test(value)) throw invalidArgument(`${field} must not contain control characters`);
  // Invalid UTF-8 on the wire decodes to U+FFFD: refusing it keeps different byte strings from aliasing one id.
  if (LONE_SURROGATE_OR_REPLACEMENT.test(value)) throw invalidArgument(`${field} is not valid UTF-8`);
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

/**
 * A bounded list of ids (e.g. `exclude_item_ids`): at most `maxCount`, each non-empty, at most `maxBytes` bytes,
 * valid UTF-8 (a proto string decoded from invalid UTF-8 holds U+FFFD, which no catalog id is allowed to carry).
 * The message names the field and the offending position.
 */
export function validateIdList(field: string, value: unknown, maxCount: number, maxBytes: number): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalidArgument(`${field} must be a list of ids`);
  if (value.length > maxCount) {
    throw invalidArgument(`${field} has ${value.length} ids; at most ${maxCount} are allowed`);
  }
  value.forEach((id: unknown, i) => {
    const at = `${field}[${i}]`;
    validateId(at, id, maxBytes);
  });
  return value as string[];
}
