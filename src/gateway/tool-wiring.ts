/**
 * What a stand-alone tool (`npm run import`, `npm run reencode`) opens for the configured bundle: the bundle, the
 * memory store for its model version and a model-server client on the gateway's transport settings, plus a wait for
 * dependencies that may still be starting (a Job next to a rollout).
 */
import { AppError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { TritonModelServer } from './adapters/triton-model-server.js';
import { loadBundle, type Bundle } from './bundle.js';
import type { GatewayConfig } from './config.js';
import type { MemoryStore } from './domain/ports.js';
import { modelServerTransport } from './security.js';
import { createMemoryStore } from './server.js';

export interface ToolBackends {
  bundle: Bundle;
  store: MemoryStore;
  modelServer: TritonModelServer;
  close(): Promise<void>;
}

export async function openToolBackends(config: GatewayConfig, logger: Logger): Promise<ToolBackends> {
  const bundle = await loadBundle(config.bundle);
  const store = createMemoryStore(config, logger, bundle.modelVersion);
  const modelServer = new TritonModelServer({
    address: config.modelServer,
    bundle,
    deadlineMs: config.inferDeadlineMs,
    logger,
    transport: modelServerTransport(config),
  });
  return {
    bundle,
    store,
    modelServer,
    async close() {
      modelServer.close();
      await store.close();
    },
  };
}

/** Polls each check once a second until it answers true; UNAVAILABLE naming the first one still down at the deadline. */
export async function waitUntilReady(
  checks: [what: string, ready: () => Promise<boolean>][],
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const [what, ready] of checks) {
    while (!(await ready())) {
      if (Date.now() > deadline) throw new AppError('UNAVAILABLE', `${what} not ready`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
