/**
 * Re-encodes every user's memory for a bundle ahead of a cut-over (the `reencode` command): the users are
 * counted first (so progress has a total), then each user gets one full encoding pass through the same Encoder
 * the gateway uses, at most `ratePerS` users started per second, `concurrency` at a time. Idempotent: a user
 * already encoded for the bundle costs one read; running it twice, or next to live gateways, is safe.
 */
import type { Logger } from '../shared/logger.js';
import type { Bundle } from './bundle.js';
import type { GatewayConfig } from './config.js';
import { Encoder } from './domain/encoder.js';
import type { MemoryStore, ModelServer } from './domain/ports.js';
import { memoryModelOf } from './ingest-wiring.js';

export interface ReencodeOptions {
  store: MemoryStore;
  modelServer: ModelServer;
  bundle: Bundle;
  config: GatewayConfig;
  logger: Logger;
  /** Users started per second (0 = unlimited). */
  ratePerS: number;
  concurrency: number;
  onStart?: (totalUsers: number) => void;
  onProgress?: (doneUsers: number, failedUsers: number) => void;
}

export interface ReencodeResult {
  users: number;
  /** Users whose pass failed: the gateways re-encode them lazily later (a rerun retries them). */
  failed: number;
  seconds: number;
}

export async function reencodeStore(o: ReencodeOptions): Promise<ReencodeResult> {
  const started = performance.now();
  let total = 0;
  for await (const user of o.store.users()) if (user !== '') total++;
  o.onStart?.(total);
  const encoder = new Encoder({
    store: o.store,
    modelServer: o.modelServer,
    model: memoryModelOf(o.bundle, o.config),
    batchSize: o.config.encodeBatch,
    logger: o.logger,
  });
  try {
    const { users, failed } = await encoder.reencodeAll({
      concurrency: o.concurrency,
      ratePerS: o.ratePerS,
      ...(o.onProgress ? { onUser: o.onProgress } : {}),
    });
    return { users, failed, seconds: (performance.now() - started) / 1000 };
  } finally {
    await encoder.stop(0);
  }
}
