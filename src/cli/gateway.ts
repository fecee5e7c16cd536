/**
 * `automr-gateway`: starts telemetry and the gateway from flags + AUTOMR_* environment, prints where it
 * listens, and drains on SIGTERM/SIGINT (health NOT_SERVING, in-flight calls finish within the bound, stores
 * flushed, exit 0).
 */
import { AppError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { configHelp, loadConfig, redactCredentials } from '../gateway/config.js';
import { startGateway } from '../gateway/server.js';
import { startTelemetry } from '../telemetry/otel.js';
import { drainOnSignal } from './drain-on-signal.js';

let parsed;
try {
  parsed = loadConfig(process.argv.slice(2));
} catch (error) {
  console.error(`automr-gateway: ${error instanceof AppError ? error.message : String(error)}`);
  process.exit(2);
}
if (parsed.help || parsed.config === undefined) {
  console.log(configHelp());
  process.exit(0);
}
const config = parsed.config;
const logger = createLogger({ name: 'automr-gateway', level: config.logLevel });

try {
  const telemetry = await startTelemetry({
    serviceName: 'automr-gateway',
    metricsPort: config.metricsPort,
    metricsHost: config.metricsHost,
  });
  const gateway = await startGateway(config, { logger });
  console.log(
    `automr gateway listening on ${gateway.address} (store ${redactCredentials(config.memoryStore)}, model server ${config.modelServer}, bundle ${gateway.bundle.modelVersion})` +
      (config.metricsPort > 0 ? `; metrics on ${config.metricsHost}:${config.metricsPort}/metrics` : ''),
  );
  const { auth, tls } = gateway.security;
  console.log(
    auth === 'none'
      ? `auth is OFF: any caller that reaches ${gateway.address} may read and delete every user's memory` +
          (config.auth === 'auto' ? ' (allowed because it listens on loopback only)' : ' (AUTOMR_AUTH=none)')
      : `auth: ${auth}; transport: ${tls === 'off' ? 'plaintext' : tls}`,
  );
  drainOnSignal(logger, {
    message: 'draining',
    hardStopMs: config.drainWindowMs + config.drainTimeoutMs + 10_000,
    drain: async () => {
      await gateway.drain();
      await telemetry.shutdown();
    },
  });
} catch (error) {
  const message = error instanceof AppError ? error.message : String(error);
  logger.error({ err: error }, 'gateway failed to start');
  console.error(`automr-gateway: ${message}`);
  process.exit(1);
}
