/**
 * Gateway bootstrap: loads the bundle, builds stores and adapters, wires the domain services, serves
 * automr.v1.RecommenderService + grpc.health.v1.Health + reflection, and drains gracefully.
 */
import { Server } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { AppError } from '../shared/errors.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { createGatewayMetrics } from '../shared/metrics.js';
import { LmdbMemoryStore } from './adapters/lmdb-store.js';
import { OnnxRetriever } from './adapters/onnx-retriever.js';
import { RedisMemoryStore } from './adapters/redis-store.js';
import { ModelServerBreaker } from './adapters/model-server-breaker.js';
import { TritonModelServer } from './adapters/triton-model-server.js';
import { createHandlers } from './api/handlers.js';
import { loadRecommenderProto, SERVICE_NAME } from '../shared/recommender-proto.js';
import { loadBundle, type Bundle } from './bundle.js';
import type { GatewayConfig } from './config.js';
import type { Encoder } from './domain/encoder.js';
import type { MemoryStore, ModelServer, Retriever } from './domain/ports.js';
import { RecommendService } from './domain/recommend.js';
import { Admission } from './api/admission.js';
import { WatchStreams } from './api/watch-streams.js';
import { messageLimits } from './api/message-limits.js';
import { gatewaySecurity, modelServerTransport, type GatewaySecurity } from './security.js';
import { CONSUMER_HEALTH_SERVICE, startEventConsumer } from './events.js';
import { createIngest } from './ingest-wiring.js';

export interface GatewayDeps {
  logger?: Logger;
  store?: MemoryStore;
  modelServer?: ModelServer;
  retriever?: Retriever;
  bundle?: Bundle;
  /** How often readiness of the model server and store is polled for health (default 200 ms). */
  healthIntervalMs?: number;
}

export interface RunningGateway {
  address: string;
  port: number;
  /** Caller authentication and transport in force (start-up messages say when auth is off). */
  security: Pick<GatewaySecurity, 'auth' | 'tls'>;
  bundle: Bundle;
  encoder: Encoder;
  /** Health NOT_SERVING, stop accepting, let in-flight calls finish within the drain bound, flush stores. */
  drain(): Promise<void>;
  /** Immediate shutdown (in-flight calls are cancelled); stores still flushed. */
  close(): Promise<void>;
}

/** The configured store; Redis reads and writes the encodings of `modelVersion` (the bundle's). */
export function createMemoryStore(config: GatewayConfig, logger: Logger, modelVersion: string): MemoryStore {
  if (config.memoryStore === 'lmdb')
    return new LmdbMemoryStore(config.dataDir, {
      consumedMax: config.consumedMax,
      idempotencyMax: config.idempotencyMaxPerUser,
    });
  return new RedisMemoryStore({
    url: config.memoryStore,
    prefix: config.redisPrefix,
    idempotencyTtlMs: config.idempotencyTtlS * 1000,
    consumedMax: config.consumedMax,
    modelVersion,
    vectorGraceMs: config.vectorGraceS * 1000,
    logger,
    connection: {
      tlsCa: config.redisTlsCa,
      username: config.redisUsername,
      passwordFile: config.redisPasswordFile,
      commandTimeoutMs: config.storeTimeoutMs,
    },
  });
}

export async function startGateway(config: GatewayConfig, deps: GatewayDeps = {}): Promise<RunningGateway> {
  const logger = deps.logger ?? createLogger({ name: 'automr-gateway', level: config.logLevel });
  // First: a refused security set-up must not leave stores or sessions open.
  const security = gatewaySecurity(config, logger);
  const bundle = deps.bundle ?? (await loadBundle(config.bundle));
  const metrics = createGatewayMetrics();
  const batching = { maxBatch: config.recommendBatch, delayMs: config.batchDelayMs };
  const retriever =
    deps.retriever ?? (await OnnxRetriever.load(bundle.retrieverPath, bundle.dModel, batching));
  // The breaker guards the adapter's model-server calls below its coalescing (one batch = one outcome); an injected
  // ModelServer (tests) brings its own fault handling.
  const modelServer =
    deps.modelServer ??
    new TritonModelServer({
      address: config.modelServer,
      bundle,
      deadlineMs: config.inferDeadlineMs,
      recommendBatch: batching,
      logger,
      onError: (model) => metrics.tritonErrors.add(1, { model }),
      transport: modelServerTransport(config),
      breaker: new ModelServerBreaker({
        failures: config.breakerFailures,
        resetMs: config.breakerResetMs,
        logger,
      }),
    });
  const store = deps.store ?? createMemoryStore(config, logger, bundle.modelVersion);

  const { model, limits, encoder, ingest } = createIngest(config, {
    store,
    modelServer,
    bundle,
    logger,
    metrics,
  });
  // What a request that leaves memory_k / exclude_consumed unset gets: the deployment setting, `auto` = the bundle's.
  const defaultMemoryK = Math.min(
    config.memoryK === 'auto' ? bundle.policy.memoryK : config.memoryK,
    bundle.maxMemory,
  );
  const excludeConsumed =
    config.excludeConsumed === 'auto' ? bundle.policy.excludeConsumed : config.excludeConsumed === 'true';
  const recommend = new RecommendService({
    store,
    modelServer,
    retriever,
    encoder,
    catalog: bundle,
    model,
    limits,
    defaultMemoryK,
    excludeConsumed,
    encodeWaitMs: config.encodeWaitMs,
    metrics,
  });

  // After SIGTERM: `shuttingDown` at once (health NOT_SERVING), `draining` after the drain window (new calls
  // refused, open streams asked to finish).
  let shuttingDown = false;
  let draining = false;
  const openStreams = new Set<() => void>();
  const watchStreams = new WatchStreams();
  const admission = new Admission({
    maxRecommends: config.maxInflightRecommends,
    maxIngestEvents: config.maxInflightIngest,
  });
  const { definition, grpc } = loadRecommenderProto();
  const limited = messageLimits(
    grpc.automr.v1.RecommenderService.service,
    { Recommend: config.maxRecommendRequestBytes },
    config.maxMessageBytes,
  );
  const server = new Server({
    interceptors: [...security.interceptors, watchStreams.interceptor, limited.interceptor],
    'grpc.max_receive_message_length': limited.maxBytes,
    'grpc.max_concurrent_streams': config.maxConcurrentStreams,
    ...(config.maxConnectionAgeMs > 0 ? { 'grpc.max_connection_age_ms': config.maxConnectionAgeMs } : {}),
    'grpc.max_connection_age_grace_ms': config.maxConnectionAgeGraceMs,
    ...(config.maxConnectionIdleMs > 0 ? { 'grpc.max_connection_idle_ms': config.maxConnectionIdleMs } : {}),
    'grpc.keepalive_time_ms': config.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': 20_000,
    // No channelz service is served: its per-call counters and timestamps are pure cost (docs/PERF-NOTES.md).
    'grpc.enable_channelz': 0,
  });
  server.addService(
    limited.service,
    createHandlers({
      ingest,
      recommend,
      logger,
      metrics,
      draining: () => draining,
      admission,
      openStreams,
    }),
  );
  const health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
  // Bus consumer (AUTOMR_EVENTS): reports under its own health service; Recommend keeps serving without the bus.
  const consumer = startEventConsumer(config, ingest, logger);
  if (consumer !== undefined) health.setStatus(CONSUMER_HEALTH_SERVICE, 'NOT_SERVING');
  health.addToServer(server);
  if (config.reflection) new ReflectionService(definition).addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(config.addr, security.credentials, (error, bound) => {
      if (error)
        reject(
          new AppError('UNAVAILABLE', `cannot listen on ${config.addr}: ${error.message}`, { cause: error }),
        );
      else resolve(bound);
    });
  }).catch(async (error: unknown) => {
    await consumer?.stop(0);
    security.close();
    await store.close();
    modelServer.close();
    await retriever.close();
    throw error;
  });
  const host = config.addr.slice(0, config.addr.lastIndexOf(':'));
  const address = `${host}:${port}`;

  let lastStatus: ServingStatus | undefined;
  const setStatus = (status: ServingStatus) => {
    if (status === lastStatus) return;
    lastStatus = status;
    health.setStatus('', status);
    health.setStatus(SERVICE_NAME, status);
    logger.info({ status }, 'health status');
  };
  let checking = false;
  const checkHealth = async () => {
    if (checking || shuttingDown) return;
    checking = true;
    try {
      const [modelReady, storeReady, busReady] = await Promise.all([
        modelServer.ready(),
        store.ready(),
        consumer?.ready(),
      ]);
      const serving = modelReady && storeReady;
      // Encodings that failed while a dependency was away are retried as soon as it is back.
      if (serving && lastStatus === 'NOT_SERVING') encoder.resumeRetries();
      if (!shuttingDown) setStatus(serving ? 'SERVING' : 'NOT_SERVING');
      if (consumer !== undefined && !shuttingDown) {
        health.setStatus(
          CONSUMER_HEALTH_SERVICE,
          busReady === true && storeReady ? 'SERVING' : 'NOT_SERVING',
        );
      }
    } finally {
      checking = false;
    }
  };
  await checkHealth();
  const healthTimer = setInterval(() => void checkHealth(), deps.healthIntervalMs ?? 200);
  healthTimer.unref();

  logger.info(
    {
      address,
      store: store.kind,
      modelServer: config.modelServer,
      modelVersion: bundle.modelVersion,
      auth: security.auth,
      tls: security.tls,
      excludeConsumed,
      memoryK: defaultMemoryK,
      policy: bundle.policy.reason,
    },
    'gateway listening',
  );

  let stopping: Promise<void> | undefined;
  const shutdown = (graceful: boolean): Promise<void> => {
    stopping ??= (async () => {
      shuttingDown = true;
      clearInterval(healthTimer);
      setStatus('NOT_SERVING');
      if (graceful && config.drainWindowMs > 0) {
        // Load balancers see NOT_SERVING and move away while calls still succeed.
        logger.info({ windowMs: config.drainWindowMs }, 'NOT_SERVING; still serving during the drain window');
        await new Promise((resolve) => setTimeout(resolve, config.drainWindowMs));
      }
      draining = true;
      // Streams do not end on their own: Ingest streams finish once their acks are out, Watch streams end.
      for (const finish of [...openStreams]) finish();
      watchStreams.endAll();
      const bound = graceful ? config.drainTimeoutMs : 0;
      if (consumer !== undefined) {
        health.setStatus(CONSUMER_HEALTH_SERVICE, 'NOT_SERVING');
        // Stop pulling first; messages in flight settle within the bound (the rest is redelivered).
        await consumer.stop(bound);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          logger.warn({ boundMs: bound }, 'drain bound reached; cancelling remaining calls');
          server.forceShutdown();
          resolve();
        }, bound);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await encoder.stop(graceful ? Math.min(bound, 2_000) : 0);
      await store.close();
      modelServer.close();
      await retriever.close();
      security.close();
      logger.info('gateway stopped');
    })();
    return stopping;
  };

  return {
    address,
    port,
    security: { auth: security.auth, tls: security.tls },
    bundle,
    encoder,
    drain: () => shutdown(true),
    close: () => shutdown(false),
  };
}
