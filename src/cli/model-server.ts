/**
 * `npm run model-server`: the local Triton-protocol model server on a Triton model repository.
 * For development, tests and single-machine use; production runs NVIDIA Triton on the same repository.
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { z } from 'zod';
import { startModelServer } from '../model-server/server.js';
import { createLogger } from '../shared/logger.js';
import { isLoopback } from '../shared/transport.js';
import { startTelemetry } from '../telemetry/otel.js';
import { drainOnSignal } from './drain-on-signal.js';

const HELP = `Usage: node dist/cli/model-server.js [options]

Serves a Triton model repository over Triton's gRPC protocol (KServe v2).
For development, tests and single-machine use; production runs NVIDIA Triton with the same repository:
  tritonserver --model-repository=$PWD/triton-models

Options (environment variable in brackets):
  --repository PATH        model repository            [AUTOMR_MODEL_REPOSITORY, default ./triton-models]
  --address HOST:PORT      gRPC listen address         [AUTOMR_MODEL_SERVER_ADDR, default 127.0.0.1:8001]
  --max-message-bytes N    max gRPC message size       [AUTOMR_MODEL_SERVER_MAX_MESSAGE_BYTES, default 67108864]
  --intra-op-threads N     onnxruntime intra-op threads per session [AUTOMR_ORT_INTRA_OP_THREADS, default 1]
  --inter-op-threads N     onnxruntime inter-op threads per session [AUTOMR_ORT_INTER_OP_THREADS, default 1]
  --ort-in-worker BOOL     run each ONNX session in a worker thread [AUTOMR_ORT_IN_WORKER, default true]
  --drain-timeout-ms N     bound on finishing in-flight requests at SIGTERM [AUTOMR_DRAIN_TIMEOUT_MS, default 10000]
  --tls-cert FILE          PEM certificate chain: TLS on (with --tls-key); re-read on change [AUTOMR_MODEL_SERVER_TLS_CERT]
  --tls-key FILE           PEM private key                                    [AUTOMR_MODEL_SERVER_TLS_KEY]
  --tls-client-ca FILE     PEM CA: callers must present a certificate it signed (mTLS) [AUTOMR_MODEL_SERVER_TLS_CLIENT_CA]
  --allow-unauthenticated BOOL  listen beyond loopback without mTLS [AUTOMR_MODEL_SERVER_ALLOW_UNAUTHENTICATED, default false]
  -h, --help               this text
Tracing: the incoming W3C traceparent is continued; exporters come from the standard OTEL_* variables
(e.g. OTEL_TRACES_EXPORTER=console or otlp with OTEL_EXPORTER_OTLP_ENDPOINT).`;

const { values } = parseArgs({
  options: {
    repository: { type: 'string' },
    address: { type: 'string' },
    'max-message-bytes': { type: 'string' },
    'intra-op-threads': { type: 'string' },
    'inter-op-threads': { type: 'string' },
    'drain-timeout-ms': { type: 'string' },
    'ort-in-worker': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-client-ca': { type: 'string' },
    'allow-unauthenticated': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help === true) {
  console.log(HELP);
  process.exit(0);
}

const env = process.env;
const Config = z.object({
  repository: z.string().min(1),
  address: z.string().regex(/^[^\s]+:\d+$/, 'expected HOST:PORT'),
  maxMessageBytes: z.coerce.number().int().positive(),
  intraOpThreads: z.coerce.number().int().min(1).max(64),
  interOpThreads: z.coerce.number().int().min(1).max(64),
  drainTimeoutMs: z.coerce.number().int().min(0),
  ortInWorker: z.enum(['true', 'false']).transform((v) => v === 'true'),
  tlsCert: z.string(),
  tlsKey: z.string(),
  tlsClientCa: z.string(),
  allowUnauthenticated: z.enum(['true', 'false']).transform((v) => v === 'true'),
});
const parsed = Config.safeParse({
  repository: values.repository ?? env.AUTOMR_MODEL_REPOSITORY ?? './triton-models',
  address: values.address ?? env.AUTOMR_MODEL_SERVER_ADDR ?? '127.0.0.1:8001',
  maxMessageBytes:
    values['max-message-bytes'] ?? env.AUTOMR_MODEL_SERVER_MAX_MESSAGE_BYTES ?? 64 * 1024 * 1024,
  intraOpThreads: values['intra-op-threads'] ?? env.AUTOMR_ORT_INTRA_OP_THREADS ?? 1,
  interOpThreads: values['inter-op-threads'] ?? env.AUTOMR_ORT_INTER_OP_THREADS ?? 1,
  drainTimeoutMs: values['drain-timeout-ms'] ?? env.AUTOMR_DRAIN_TIMEOUT_MS ?? 10_000,
  ortInWorker: values['ort-in-worker'] ?? env.AUTOMR_ORT_IN_WORKER ?? 'true',
  tlsCert: values['tls-cert'] ?? env.AUTOMR_MODEL_SERVER_TLS_CERT ?? '',
  tlsKey: values['tls-key'] ?? env.AUTOMR_MODEL_SERVER_TLS_KEY ?? '',
  tlsClientCa: values['tls-client-ca'] ?? env.AUTOMR_MODEL_SERVER_TLS_CLIENT_CA ?? '',
  allowUnauthenticated:
    values['allow-unauthenticated'] ?? env.AUTOMR_MODEL_SERVER_ALLOW_UNAUTHENTICATED ?? 'false',
});
if (!parsed.success) {
  console.error(`invalid configuration: ${parsed.error.message}\n\n${HELP}`);
  process.exit(2);
}
const config = parsed.data;
// Secure by default: beyond loopback, only callers with a client certificate (mTLS), unless said otherwise.
if (!isLoopback(config.address) && config.tlsClientCa === '' && !config.allowUnauthenticated) {
  console.error(
    `refusing to listen on ${config.address} without client authentication: set --tls-cert, --tls-key and ` +
      '--tls-client-ca (mTLS), or --allow-unauthenticated true to expose it on purpose',
  );
  process.exit(2);
}

// Same OpenTelemetry set-up as the gateway: W3C trace context continued from callers, exporters from OTEL_*.
const telemetry = await startTelemetry({ serviceName: 'automr-model-server' });

const logger = createLogger({ name: 'automr-model-server' });
try {
  const server = await startModelServer({
    repository: resolve(config.repository),
    address: config.address,
    logger,
    maxMessageBytes: config.maxMessageBytes,
    intraOpThreads: config.intraOpThreads,
    interOpThreads: config.interOpThreads,
    sessionsInWorkers: config.ortInWorker,
    tls: { cert: config.tlsCert, key: config.tlsKey, clientCa: config.tlsClientCa },
  });
  drainOnSignal(logger, {
    message: 'draining',
    hardStopMs: config.drainTimeoutMs + 10_000,
    drain: async () => {
      await server.drain(config.drainTimeoutMs);
      await telemetry.shutdown();
    },
  });
} catch (error) {
  logger.fatal({ err: error }, 'model server failed to start');
  process.exit(1);
}
