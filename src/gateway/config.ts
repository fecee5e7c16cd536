/**
 * The gateway's one typed configuration, from command-line flags and `AUTOMR_*` environment variables (flags win).
 * Every option is declared once in OPTIONS, which also drives `--help`.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { AppError } from '../shared/errors.js';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:50051')
  .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'port must be 0..65535');

const memoryStoreUrl = z
  .string()
  .refine(
    (v) => v === 'lmdb' || /^rediss?:\/\/.+/.test(v) || /^redis-cluster:\/\/[^,]+:\d+(,[^,]+:\d+)*$/.test(v),
    'expected "lmdb", redis://host:port[/db] or redis-cluster://h1:p1,h2:p2',
  );

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

interface OptionSpec {
  flag: string;
  env: string;
  help: string;
  default: string;
  schema: z.ZodType;
}

const OPTIONS = {
  addr: {
    flag: 'addr',
    env: 'AUTOMR_ADDR',
    help: 'gRPC listen address (port 0 = any free port)',
    default: '127.0.0.1:50051',
    schema: hostPort,
  },
  dataDir: {
    flag: 'data-dir',
    env: 'AUTOMR_DATA_DIR',
    help: 'directory of the embedded memory store',
    default: './data',
    schema: z.string().min(1),
  },
  memoryStore: {
    flag: 'memory-store',
    env: 'AUTOMR_MEMORY_STORE',
    help: 'memory store: lmdb (embedded), redis://host:port or redis-cluster://h1:p1,h2:p2',
    default: 'lmdb',
    schema: memoryStoreUrl,
  },
  redisPrefix: {
    flag: 'redis-prefix',
    env: 'AUTOMR_REDIS_PREFIX',
    help: 'key prefix in Redis',
    default: 'automr',
    schema: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'letters, digits, _ . : - only'),
  },
  modelServer: {
    flag: 'model-server',
    env: 'AUTOMR_MODEL_SERVER',
    help: 'Triton (or local model server) gRPC address',
    default: '127.0.0.1:8001',
    schema: hostPort,
  },
  bundle: {
    flag: 'bundle',
    env: 'AUTOMR_BUNDLE',
    help: 'bundle folder holding manifest.json and retriever.onnx',
    default: './bundle',
    schema: z.string().min(1),
  },
  memoryK: {
    flag: 'memory-k',
    env: 'AUTOMR_MEMORY_K',
    help: 'memories retrieved when a request says memory_k = 0',
    default: '1',
    schema: int(1, 90),
  },
  maxHistory: {
    flag: 'max-history',
    env: 'AUTOMR_MAX_HISTORY',
    help: 'interactions kept per user (oldest dropped)',
    default: '100',
    schema: int(1, 100_000),
  },
  maxFutureMs: {
    flag: 'max-future-ms',
    env: 'AUTOMR_MAX_FUTURE_MS',
    help: 'how far past now an event timestamp may lie',
    default: String(24 * 3600 * 1000),
    schema: int(0, 365 * 24 * 3600 * 1000),
  },
  idempotencyTtlS: {
    flag: 'idempotency-ttl-s',
    env: 'AUTOMR_IDEMPOTENCY_TTL_S',
    help: 'how long Redis remembers an event_id',
    default: String(7 * 24 * 3600),
    schema: int(1, 365 * 24 * 3600),
  },
  encodeBatch: {
    flag: 'encode-batch',
    env: 'AUTOMR_ENCODE_BATCH',
    help: 'most prompts per llm_lower call',
    default: '64',
    schema: int(1, 4096),
  },
  encodeWaitMs: {
    flag: 'encode-wait-ms',
    env: 'AUTOMR_ENCODE_WAIT_MS',
    help: "how long Recommend waits for a user's in-progress encoding before using what is encoded (0 = never)",
    default: '2000',
    schema: int(0, 60_000),
  },
  inferDeadlineMs: {
    flag: 'infer-deadline-ms',
    env: 'AUTOMR_INFER_DEADLINE_MS',
    help: 'deadline of one model-server call',
    default: '10000',
    schema: int(1, 600_000),
  },
  drainTimeoutMs: {
    flag: 'drain-timeout-ms',
    env: 'AUTOMR_DRAIN_TIMEOUT_MS',
    help: 'bound on in-flight calls at shutdown',
    default: '10000',
    schema: int(0, 600_000),
  },
  metricsPort: {
    flag: 'metrics-port',
    env: 'AUTOMR_METRICS_PORT',
    help: 'Prometheus /metrics port (0 = off)',
    default: '9464',
    schema: int(0, 65535),
  },
  logLevel: {
    flag: 'log-level',
    env: 'AUTOMR_LOG_LEVEL',
    help: 'fatal|error|warn|info|debug|trace|silent',
    default: 'info',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  },
} satisfies Record<string, OptionSpec>;

type Options = typeof OPTIONS;
export type GatewayConfig = { [K in keyof Options]: z.infer<Options[K]['schema']> };

export function configHelp(): string {
  const lines = ['Usage: automr-gateway [options]', '', 'Options (flag, environment variable, default):'];
  for (const spec of Object.values(OPTIONS) as OptionSpec[]) {
    lines.push(`  --${spec.flag} <value>   ${spec.env}   (default ${spec.default})`, `      ${spec.help}`);
  }
  lines.push(
    '  --help   print this help',
    '',
    'Telemetry uses the standard OTEL_* variables (e.g. OTEL_TRACES_EXPORTER=otlp).',
  );
  return lines.join('\n');
}

export interface ParsedArgs {
  help: boolean;
  config?: GatewayConfig;
}

/** Parses flags and environment; throws INVALID_ARGUMENT naming the option and the reason on a bad value. */
export function loadConfig(argv: string[] = [], env: NodeJS.ProcessEnv = process.env): ParsedArgs {
  const specs = OPTIONS as Record<string, OptionSpec>;
  const flagOptions: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const spec of Object.values(specs)) flagOptions[spec.flag] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: flagOptions, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new AppError('INVALID_ARGUMENT', `${(error as Error).message} (see --help)`);
  }
  if (values.help === true) return { help: true };
  const config: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    const fromFlag = values[spec.flag];
    const raw = typeof fromFlag === 'string' ? fromFlag : (env[spec.env] ?? spec.default);
    const source =
      typeof fromFlag === 'string' ? `--${spec.flag}` : env[spec.env] !== undefined ? spec.env : 'default';
    const result = spec.schema.safeParse(raw.trim());
    if (!result.success) {
      throw new AppError(
        'INVALID_ARGUMENT',
        `invalid ${spec.env} / --${spec.flag} = ${JSON.stringify(raw)} (from ${source}): ${result.error.issues[0]?.message ?? 'bad value'}`,
      );
    }
    config[key] = result.data;
  }
  return { help: false, config: config as GatewayConfig };
}

/** A config with defaults, for tests and embedders. */
export function defaultConfig(overrides: Partial<GatewayConfig> = {}): GatewayConfig {
  const { config } = loadConfig([], {});
  return { ...(config as GatewayConfig), ...overrides };
}
