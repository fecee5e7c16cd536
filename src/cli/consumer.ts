/**
 * `npm run consumer`: the event-stream consumer as its own process (AUTOMR_EVENTS=nats|redis-streams), feeding the
 * same ingest service as the gateway into the configured store and encoding memory through the model server.
 * Serves only grpc.health.v1 on AUTOMR_CONSUMER_ADDR ('' and automr.v1.EventConsumer: SERVING while the bus and
 * the store answer). SIGTERM/SIGINT: stop fetching, let in-flight messages settle, flush, exit 0.
 *
 * With the embedded LMDB store one process owns a data directory: run the consumer inside the gateway
 * (AUTOMR_EVENTS on the gateway) or against Redis; a stand-alone consumer and a gateway on one LMDB directory would
 * hand out colliding sequence numbers.
 */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { TritonModelServer } from '../gateway/adapters/triton-model-server.js';
import { loadBundle } from '../gateway/bundle.js';
import { configHelp, loadConfig } from '../gateway/config.js';
import { CONSUMER_HEALTH_SERVICE, startEventConsumer } from '../gateway/events.js';
import { createIngest } from '../gateway/ingest-wiring.js';
import { modelServerTransport } from '../gateway/security.js';
import { createMemoryStore } from '../gateway/server.js';
import { AppError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { createGatewayMetrics } from '../shared/metrics.js';
import { startTelemetry } from '../telemetry/otel.js';
import { drainOnSignal } from './drain-on-signal.js';

let parsed;
try {
  parsed = loadConfig(process.argv.slice(2));
} catch (error) {
  console.error(`automr-consumer: ${error instanceof AppError ? error.message : String(error)}`);
  process.exit(2);
}
if (parsed.help || parsed.config === undefined) {
  console.log(
    'automr-consumer: the event-stream consumer alone (set AUTOMR_EVENTS); it reads the gateway settings below.\n',
  );
  console.log(configHelp());
  process.exit(0);
}
const config = parsed.config;
const logger = createLogger({ name: 'automr-consumer', level: config.logLevel });
if (config.events === 'none') {
  console.error('automr-consumer: set AUTOMR_EVENTS (or --events) to nats or redis-streams');
  process.exit(2);
}

try {
  const telemetry = await startTelemetry({ serviceName: 'automr-consumer', metricsPort: config.metricsPort });
  const bundle = await loadBundle(config.bundle);
  const metrics = createGatewayMetrics();
  const modelServer = new TritonModelServer({
    address: config.modelServer,
    bundle,
    deadlineMs: config.inferDeadlineMs,
    logger,
    onError: (model) => metrics.tritonErrors.add(1, { model }),
    transport: modelServerTransport(config),
  });
  const store = createMemoryStore(config, logger, bundle.modelVersion);
  const { encoder, ingest } = createIngest(config, { store, modelServer, bundle, logger, metrics });
  const consumer = startEventConsumer(config, ingest, logger);
  if (consumer === undefined) throw new AppError('INVALID_ARGUMENT', 'no event source configured');

  const server = new Server();
  const health = new HealthImplementation({ '': 'NOT_SERVING', [CONSUMER_HEALTH_SERVICE]: 'NOT_SERVING' });
  health.addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(config.consumerAddr, ServerCredentials.createInsecure(), (error, bound) =>
      error
        ? reject(new AppError('UNAVAILABLE', `cannot listen on ${config.consumerAddr}`, { cause: error }))
        : resolve(bound),
    ),
  );
  let stopping = false;
  const setStatus = (status: ServingStatus) => {
    health.setStatus('', status);
    health.setStatus(CONSUMER_HEALTH_SERVICE, status);
  };
  const check = async () => {
    const [bus, storeReady] = await Promise.all([consumer.ready(), store.ready()]);
    if (!stopping) setStatus(bus && storeReady ? 'SERVING' : 'NOT_SERVING');
  };
  const timer = setInterval(() => void check(), 1_000);
  timer.unref();
  void check();
  const host = config.consumerAddr.slice(0, config.consumerAddr.lastIndexOf(':'));
  console.log(
    `automr consumer (${config.events}) health listening on ${host}:${port} (store ${config.memoryStore}, model server ${config.modelServer})`,
  );

  drainOnSignal(logger, {
    message: 'stopping consumer',
    hardStopMs: config.drainTimeoutMs + 10_000,
    drain: async () => {
      stopping = true;
      setStatus('NOT_SERVING');
      clearInterval(timer);
      await consumer.stop(config.drainTimeoutMs);
      await encoder.stop(Math.min(config.drainTimeoutMs, 2_000));
      await store.close();
      modelServer.close();
      server.forceShutdown();
      await telemetry.shutdown();
    },
  });
} catch (error) {
  logger.error({ err: error }, 'consumer failed to start');
  console.error(`automr-consumer: ${error instanceof AppError ? error.message : String(error)}`);
  process.exit(1);
}
