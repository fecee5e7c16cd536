/**
 * The ingest half of the gateway (memory model, encoder, ingest service) built from the config, shared by the
 * gateway and the stand-alone event consumer so both store and encode events exactly the same way.
 */
import type { Logger } from '../shared/logger.js';
import type { GatewayMetrics } from '../shared/metrics.js';
import type { Bundle } from './bundle.js';
import type { GatewayConfig } from './config.js';
import { Encoder } from './domain/encoder.js';
import { IngestService } from './domain/ingest.js';
import { retainedEntries, type MemoryModel } from './domain/memory.js';
import type { MemoryStore, ModelServer } from './domain/ports.js';
import { DEFAULT_LIMITS, type Limits } from './domain/validation.js';

export interface IngestWiring {
  model: MemoryModel;
  limits: Limits;
  encoder: Encoder;
  ingest: IngestService;
}

/** The memory parameters of a bundle under a config (also the `reencode` command's). */
export function memoryModelOf(bundle: Bundle, config: GatewayConfig): MemoryModel {
  return {
    modelVersion: bundle.modelVersion,
    window: bundle.window,
    maxMemory: bundle.maxMemory,
    bos: bundle.tokens.bos,
    maxHistory: config.maxHistory,
  };
}

export function createIngest(
  config: GatewayConfig,
  d: {
    store: MemoryStore;
    modelServer: ModelServer;
    bundle: Bundle;
    logger: Logger;
    metrics?: GatewayMetrics;
  },
): IngestWiring {
  const { store, modelServer, bundle, logger, metrics } = d;
  const model = memoryModelOf(bundle, config);
  const limits: Limits = {
    ...DEFAULT_LIMITS,
    maxFutureMs: config.maxFutureMs,
    maxExcludeItems: config.maxExcludeItems,
    maxCandidateItems: config.maxCandidateItems,
  };
  const encoder = new Encoder({
    store,
    modelServer,
    model,
    batchSize: config.encodeBatch,
    batchDelayMs: config.batchDelayMs,
    logger,
    metrics,
    // No re-encoding scan at start-up (its cost would grow with the users): the encoder re-encodes lazily.
    reencodeRate: config.reencodeRate,
  });
  const ingest = new IngestService({
    store,
    encoder,
    catalog: bundle,
    limits,
    maxHistory: config.maxHistory,
    historyContext: retainedEntries(model) - model.maxHistory,
    metrics,
  });
  return { model, limits, encoder, ingest };
}
