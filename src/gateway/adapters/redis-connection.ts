/**
 * ioredis connection options shared by single-node and cluster URLs: TLS (rediss://, or a CA file for either
 * form), ACL user name and password, and fail-fast behaviour. While Redis is unreachable a command fails at once
 * (no offline queue) instead of waiting; a command that was sent fails after `commandTimeoutMs`; reconnects are
 * tried every ≤ 250 ms so service resumes within a second of Redis coming back.
 */
import { readFileSync } from 'node:fs';
import type { RedisOptions } from 'ioredis';
import { AppError } from '../../shared/errors.js';

export interface RedisConnectionSettings {
  /** PEM CA of the Redis servers; turns TLS on (also for cluster URLs). */
  tlsCa?: string;
  username?: string;
  /** File holding the password (trailing newline ignored). */
  passwordFile?: string;
  /** Bound on one command once sent (default 1000 ms). */
  commandTimeoutMs?: number;
}

const RECONNECT_MAX_MS = 250;

function readSecret(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (error) {
    throw new AppError('FAILED_PRECONDITION', `cannot read ${what} ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/** Options for `new Redis(url, options)` and for a Cluster's `redisOptions`. */
export function redisConnectionOptions(url: string, s: RedisConnectionSettings = {}): RedisOptions {
  const tls = url.startsWith('rediss://') || Boolean(s.tlsCa);
  const timeout = s.commandTimeoutMs ?? 1000;
  return {
    enableOfflineQueue: false,
    commandTimeout: timeout,
    connectTimeout: Math.max(timeout, 1000),
    maxRetriesPerRequest: 1,
    lazyConnect: false,
    retryStrategy: (times: number) => Math.min(50 * times, RECONNECT_MAX_MS),
    ...(tls ? { tls: s.tlsCa ? { ca: readSecret(s.tlsCa, 'Redis TLS CA') } : {} } : {}),
    ...(s.username ? { username: s.username } : {}),
    ...(s.passwordFile ? { password: readSecret(s.passwordFile, 'Redis password file') } : {}),
  };
}

/** Cluster-level retry of the initial node list, as eager as the per-node reconnects. */
export const clusterRetryStrategy = (times: number): number => Math.min(50 * times, RECONNECT_MAX_MS);
