/**
 * The gateway's one typed configuration, from command-line flags and `AUTOMR_*` environment variables (flags win).
 * Every option is declared once in OPTIONS, which also drives `--help`.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { AppError } from '../shared/errors.js';
import { isClusterUrl, isRedisUrl, parseClusterUrl } from './adapters/redis-url.js';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:50051')
  .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'port must be 0..65535');

const memoryStoreUrl = z.string().superRefine((v, ctx) => {
  if (v === 'lmdb' || (isRedisUrl(v) && !isClusterUrl(v))) return;
  if (!isClusterUrl(v)) {
    ctx.addIssue({
      code: 'custom',
      message:
        'expected "lmdb", redis://[user:pass@]host:port[/db] or redis-cluster://[user:pass@]h1:p1,h2:p2 (rediss:// and rediss-cluster:// for TLS)',
    });
    return;
  }
  try {
    parseClusterUrl(v);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
  }
});

/** A model-server address: host:port, or dns:///host:port (every address the name resolves to, round-robin). */
const modelServerTarget = z
  .string()
  .refine(
    (v) => hostPort.safeParse(v.startsWith('dns:///') ? v.slice('dns:///'.length) : v).success,
    'expected host:port or dns:///host:port',
  );

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z.enum(['true', 'false']).transform((v) => v === 'true');

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
    help: 'memory store: lmdb (embedded), redis[s]://[user:pass@]host:port[/db] or redis[s]-cluster://[user:pass@]h1:p1,h2:p2 (rediss = TLS)',
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
    help: 'Triton (or local model server) gRPC address; dns:///name:port balances over every address of the name (e.g. a headless Service)',
    default: '127.0.0.1:8001',
    schema: modelServerTarget,
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
    help: "memories retrieved when a request says memory_k = 0: auto (the bundle policy's memory_k; 1 without a policy) or 0..90 (0 = serve without memory)",
    default: 'auto',
    schema: z.union([z.literal('auto'), int(0, 90)]),
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
  idempotencyMaxPerUser: {
    flag: 'idempotency-max-per-user',
    env: 'AUTOMR_IDEMPOTENCY_MAX_PER_USER',
    help: 'event_ids LMDB remembers per user (of the newest appends, never fewer than the history holds); keep it >= AUTOMR_CONSUMED_MAX',
    default: '10000',
    schema: int(1, 10_000_000),
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
    help: 'at shutdown, after the drain window: bound on in-flight calls finishing (then they are cancelled)',
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
  // — quality (issue 10) —
  maxExcludeItems: {
    flag: 'max-exclude-items',
    env: 'AUTOMR_MAX_EXCLUDE_ITEMS',
    help: 'most exclude_item_ids in one Recommend (more is INVALID_ARGUMENT)',
    default: '1000',
    schema: int(0, 100_000),
  },
  maxCandidateItems: {
    flag: 'max-candidate-items',
    env: 'AUTOMR_MAX_CANDIDATE_ITEMS',
    help: 'most candidate_item_ids in one Recommend (more is INVALID_ARGUMENT)',
    default: '10000',
    schema: int(0, 100_000),
  },
  excludeConsumed: {
    flag: 'exclude-consumed',
    env: 'AUTOMR_EXCLUDE_CONSUMED',
    help: "leave the user's consumed items out of Recommend when a request does not say: auto (the bundle policy; off without one), true or false",
    default: 'auto',
    schema: z.enum(['auto', 'true', 'false']),
  },
  consumedMax: {
    flag: 'consumed-max',
    env: 'AUTOMR_CONSUMED_MAX',
    help: 'consumed items kept per user for the exclusion (the newest by event time)',
    default: '10000',
    schema: int(1, 1_000_000),
  },
  // — security (issue 11) —
  auth: {
    flag: 'auth',
    env: 'AUTOMR_AUTH',
    help: 'caller authentication: jwt (JWKS file), static (tokens file), none, or auto = none but only on a loopback --addr',
    default: 'auto',
    schema: z.enum(['auto', 'none', 'jwt', 'static']),
  },
  authJwksFile: {
    flag: 'auth-jwks-file',
    env: 'AUTOMR_AUTH_JWKS_FILE',
    help: "JWKS (JSON) with the public keys that sign callers' JWTs; re-read when it changes (auth=jwt)",
    default: '',
    schema: z.string(),
  },
  authIssuer: {
    flag: 'auth-issuer',
    env: 'AUTOMR_AUTH_ISSUER',
    help: 'required JWT "iss" (auth=jwt)',
    default: '',
    schema: z.string(),
  },
  authAudience: {
    flag: 'auth-audience',
    env: 'AUTOMR_AUTH_AUDIENCE',
    help: 'required JWT "aud" (auth=jwt)',
    default: '',
    schema: z.string(),
  },
  authTokensFile: {
    flag: 'auth-tokens-file',
    env: 'AUTOMR_AUTH_TOKENS_FILE',
    help: 'static bearer tokens, one "token scope,scope" per line; re-read when it changes (auth=static)',
    default: '',
    schema: z.string(),
  },
  reflection: {
    flag: 'reflection',
    env: 'AUTOMR_REFLECTION',
    help: 'serve gRPC server reflection (authenticated when auth is on)',
    default: 'false',
    schema: bool,
  },
  tlsCert: {
    flag: 'tls-cert',
    env: 'AUTOMR_TLS_CERT',
    help: 'PEM certificate chain of the gRPC listener (with --tls-key: TLS on; files re-read when they change)',
    default: '',
    schema: z.string(),
  },
  tlsKey: {
    flag: 'tls-key',
    env: 'AUTOMR_TLS_KEY',
    help: 'PEM private key of the gRPC listener',
    default: '',
    schema: z.string(),
  },
  tlsClientCa: {
    flag: 'tls-client-ca',
    env: 'AUTOMR_TLS_CLIENT_CA',
    help: 'PEM CA bundle: when set, clients must present a certificate it signed (mTLS)',
    default: '',
    schema: z.string(),
  },
  modelServerCa: {
    flag: 'model-server-ca',
    env: 'AUTOMR_MODEL_SERVER_CA',
    help: "PEM CA that signed the model server's certificate: when set, the model server is reached over TLS",
    default: '',
    schema: z.string(),
  },
  modelServerClientCert: {
    flag: 'model-server-client-cert',
    env: 'AUTOMR_MODEL_SERVER_CLIENT_CERT',
    help: 'PEM client certificate for mTLS to the model server',
    default: '',
    schema: z.string(),
  },
  modelServerClientKey: {
    flag: 'model-server-client-key',
    env: 'AUTOMR_MODEL_SERVER_CLIENT_KEY',
    help: 'PEM client key for mTLS to the model server',
    default: '',
    schema: z.string(),
  },
  modelServerHeaderFile: {
    flag: 'model-server-header-file',
    env: 'AUTOMR_MODEL_SERVER_HEADER_FILE',
    help: 'file holding one "name: value" header sent on every model-server call (e.g. Triton --grpc-restricted-protocol)',
    default: '',
    schema: z.string(),
  },
  redisTlsCa: {
    flag: 'redis-tls-ca',
    env: 'AUTOMR_REDIS_TLS_CA',
    help: 'PEM CA of the Redis servers; when set (or with rediss://) Redis is reached over TLS',
    default: '',
    schema: z.string(),
  },
  redisUsername: {
    flag: 'redis-username',
    env: 'AUTOMR_REDIS_USERNAME',
    help: 'Redis ACL user name',
    default: '',
    schema: z.string(),
  },
  redisPasswordFile: {
    flag: 'redis-password-file',
    env: 'AUTOMR_REDIS_PASSWORD_FILE',
    help: 'file holding the Redis password (kept out of the environment and the process list)',
    default: '',
    schema: z.string(),
  },
  storeTimeoutMs: {
    flag: 'store-timeout-ms',
    env: 'AUTOMR_STORE_TIMEOUT_MS',
    help: 'bound on one memory-store command; commands fail at once while the store is unreachable',
    default: '1000',
    schema: int(10, 600_000),
  },
  maxInflightRecommends: {
    flag: 'max-inflight-recommends',
    env: 'AUTOMR_MAX_INFLIGHT_RECOMMENDS',
    help: 'Recommend calls served at once by this gateway; more get RESOURCE_EXHAUSTED with a retry hint',
    default: '256',
    schema: int(1, 1_000_000),
  },
  maxInflightIngest: {
    flag: 'max-inflight-ingest',
    env: 'AUTOMR_MAX_INFLIGHT_INGEST',
    help: 'Ingest events being stored at once by this gateway (all streams); streams are paused beyond it',
    default: '8192',
    schema: int(1, 10_000_000),
  },
  breakerFailures: {
    flag: 'breaker-failures',
    env: 'AUTOMR_BREAKER_FAILURES',
    help: 'consecutive model-server failures (unreachable or timed out) that open the circuit breaker',
    default: '5',
    schema: int(1, 1000),
  },
  breakerResetMs: {
    flag: 'breaker-reset-ms',
    env: 'AUTOMR_BREAKER_RESET_MS',
    help: 'how long the open breaker fails calls at once before one trial call (health probes close it sooner)',
    default: '1000',
    schema: int(10, 600_000),
  },
  drainWindowMs: {
    flag: 'drain-window-ms',
    env: 'AUTOMR_DRAIN_WINDOW_MS',
    help: 'after SIGTERM: health NOT_SERVING but calls still served for this long (load balancers move away)',
    default: '0',
    schema: int(0, 600_000),
  },
  maxConcurrentStreams: {
    flag: 'max-concurrent-streams',
    env: 'AUTOMR_MAX_CONCURRENT_STREAMS',
    help: 'concurrent calls per client connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)',
    default: '256',
    schema: int(1, 65_535),
  },
  maxConnectionAgeMs: {
    flag: 'max-connection-age-ms',
    env: 'AUTOMR_MAX_CONNECTION_AGE_MS',
    help: 'connections are asked to go away after this long (clients rebalance after a scale-out); 0 = never',
    default: String(30 * 60_000),
    schema: int(0, 7 * 24 * 3600_000),
  },
  maxConnectionAgeGraceMs: {
    flag: 'max-connection-age-grace-ms',
    env: 'AUTOMR_MAX_CONNECTION_AGE_GRACE_MS',
    help: 'calls on an aged-out connection get this long to finish before it is closed',
    default: String(5 * 60_000),
    schema: int(0, 7 * 24 * 3600_000),
  },
  maxConnectionIdleMs: {
    flag: 'max-connection-idle-ms',
    env: 'AUTOMR_MAX_CONNECTION_IDLE_MS',
    help: 'a connection without calls for this long is closed; 0 = never',
    default: String(10 * 60_000),
    schema: int(0, 7 * 24 * 3600_000),
  },
  keepaliveTimeMs: {
    flag: 'keepalive-time-ms',
    env: 'AUTOMR_KEEPALIVE_TIME_MS',
    help: 'server pings an idle connection this often and closes it when the ping is not answered in 20 s',
    default: '120000',
    schema: int(1000, 7 * 24 * 3600_000),
  },
  maxRecommendRequestBytes: {
    flag: 'max-recommend-request-bytes',
    env: 'AUTOMR_MAX_RECOMMEND_REQUEST_BYTES',
    help: 'largest Recommend request (exclusion and candidate lists included)',
    default: String(1024 * 1024),
    schema: int(1024, 64 * 1024 * 1024),
  },
  maxMessageBytes: {
    flag: 'max-message-bytes',
    env: 'AUTOMR_MAX_MESSAGE_BYTES',
    help: 'largest message of every other method (one Ingest event, GetMemory, ForgetUser)',
    default: String(64 * 1024),
    schema: int(1024, 64 * 1024 * 1024),
  },
  metricsHost: {
    flag: 'metrics-host',
    env: 'AUTOMR_METRICS_HOST',
    help: 'address the Prometheus /metrics endpoint binds (0.0.0.0 to let a scraper on another host in)',
    default: '127.0.0.1',
    schema: z.string().min(1),
  },
  // — scale-out (issue 12) —
  vectorGraceS: {
    flag: 'vector-grace-s',
    env: 'AUTOMR_VECTOR_GRACE_S',
    help: "Redis: how long a model version's encodings are kept after no gateway writes them (rollback window)",
    default: String(24 * 3600),
    schema: int(0, 365 * 24 * 3600),
  },
  reencodeRate: {
    flag: 'reencode-rate',
    env: 'AUTOMR_REENCODE_RATE',
    help: 'background re-encoding passes per second for users found with encodings of another version (0 = only when read)',
    default: '20',
    schema: int(0, 100_000),
  },
  reencodeConcurrency: {
    flag: 'reencode-concurrency',
    env: 'AUTOMR_REENCODE_CONCURRENCY',
    help: 'users the reencode command encodes at once',
    default: '8',
    schema: int(1, 1024),
  },
  // — event streams (issue 13) —
  events: {
    flag: 'events',
    env: 'AUTOMR_EVENTS',
    help: 'consume interaction events from a bus into Ingest: none | nats (JetStream) | redis-streams',
    default: 'none',
    schema: z.enum(['none', 'nats', 'redis-streams']),
  },
  eventsFormat: {
    flag: 'events-format',
    env: 'AUTOMR_EVENTS_FORMAT',
    help: 'payload of messages without a content type (header / field): protobuf (automr.v1.IngestRequest) | json (proto3 JSON)',
    default: 'protobuf',
    schema: z.enum(['protobuf', 'json']),
  },
  eventsMaxInFlight: {
    flag: 'events-max-in-flight',
    env: 'AUTOMR_EVENTS_MAX_IN_FLIGHT',
    help: 'bus messages being stored at once; fetching pauses while the window is full (slow store)',
    default: '256',
    schema: int(1, 65_536),
  },
  eventsRetryMaxMs: {
    flag: 'events-retry-max-ms',
    env: 'AUTOMR_EVENTS_RETRY_MAX_MS',
    help: 'cap of the redelivery delay after store failures (exponential from 200 ms)',
    default: '30000',
    schema: int(1, 3_600_000),
  },
  consumerAddr: {
    flag: 'consumer-addr',
    env: 'AUTOMR_CONSUMER_ADDR',
    help: 'grpc.health.v1 listen address of the stand-alone consumer (npm run consumer)',
    default: '127.0.0.1:50052',
    schema: hostPort,
  },
  natsUrl: {
    flag: 'nats-url',
    env: 'AUTOMR_NATS_URL',
    help: 'NATS server(s), comma-separated (tls:// or nats://)',
    default: 'nats://127.0.0.1:4222',
    schema: z
      .string()
      .regex(
        /^((nats|tls|wss?):\/\/)?[^,\s]+(,((nats|tls|wss?):\/\/)?[^,\s]+)*$/,
        'expected nats://host:port[,...]',
      ),
  },
  natsStream: {
    flag: 'nats-stream',
    env: 'AUTOMR_NATS_STREAM',
    help: 'JetStream stream holding the events',
    default: 'AUTOMR_EVENTS',
    schema: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ - only'),
  },
  natsSubject: {
    flag: 'nats-subject',
    env: 'AUTOMR_NATS_SUBJECT',
    help: 'subject filter of the durable consumer (wildcards allowed)',
    default: 'automr.events.>',
    schema: z.string().min(1),
  },
  natsConsumer: {
    flag: 'nats-consumer',
    env: 'AUTOMR_NATS_CONSUMER',
    help: 'durable pull consumer name (shared by all gateways that split the stream)',
    default: 'automr-gateway',
    schema: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ - only'),
  },
  natsDeadLetterSubject: {
    flag: 'nats-dead-letter-subject',
    env: 'AUTOMR_NATS_DEAD_LETTER_SUBJECT',
    help: 'subject malformed/rejected events are republished to, with the reason in a header (must not match the filter)',
    default: 'automr.dead-letter.events',
    schema: z.string().min(1),
  },
  natsCreateStream: {
    flag: 'nats-create-stream',
    env: 'AUTOMR_NATS_CREATE_STREAM',
    help: 'create the stream and <stream>_DEAD_LETTER when missing (set false where the platform owns streams)',
    default: 'true',
    schema: z.enum(['true', 'false']).transform((v) => v === 'true'),
  },
  natsMaxAckPending: {
    flag: 'nats-max-ack-pending',
    env: 'AUTOMR_NATS_MAX_ACK_PENDING',
    help: "the durable consumer's max_ack_pending (unacked messages over all its instances)",
    default: '1024',
    schema: int(1, 1_000_000),
  },
  natsAckWaitMs: {
    flag: 'nats-ack-wait-ms',
    env: 'AUTOMR_NATS_ACK_WAIT_MS',
    help: 'ack_wait: an unacked message is redelivered after this long (a consumer that died)',
    default: '30000',
    schema: int(1_000, 3_600_000),
  },
  natsUser: {
    flag: 'nats-user',
    env: 'AUTOMR_NATS_USER',
    help: 'NATS user (with AUTOMR_NATS_PASSWORD)',
    default: '',
    schema: z.string(),
  },
  natsPassword: {
    flag: 'nats-password',
    env: 'AUTOMR_NATS_PASSWORD',
    help: 'NATS password (prefer the environment over the flag)',
    default: '',
    schema: z.string(),
  },
  natsToken: {
    flag: 'nats-token',
    env: 'AUTOMR_NATS_TOKEN',
    help: 'NATS auth token',
    default: '',
    schema: z.string(),
  },
  natsCredsFile: {
    flag: 'nats-creds-file',
    env: 'AUTOMR_NATS_CREDS_FILE',
    help: 'NATS .creds file (JWT + nkey seed)',
    default: '',
    schema: z.string(),
  },
  natsTlsCaFile: {
    flag: 'nats-tls-ca-file',
    env: 'AUTOMR_NATS_TLS_CA_FILE',
    help: 'CA bundle to verify the NATS server (turns TLS on)',
    default: '',
    schema: z.string(),
  },
  natsTlsCertFile: {
    flag: 'nats-tls-cert-file',
    env: 'AUTOMR_NATS_TLS_CERT_FILE',
    help: 'client certificate for NATS mutual TLS',
    default: '',
    schema: z.string(),
  },
  natsTlsKeyFile: {
    flag: 'nats-tls-key-file',
    env: 'AUTOMR_NATS_TLS_KEY_FILE',
    help: 'client key for NATS mutual TLS',
    default: '',
    schema: z.string(),
  },
  eventsRedisUrl: {
    flag: 'events-redis-url',
    env: 'AUTOMR_EVENTS_REDIS_URL',
    help: 'Redis holding the event stream: redis://[user:pass@]host:port[/db] or rediss:// (TLS)',
    default: 'redis://127.0.0.1:6379',
    schema: z.string().regex(/^rediss?:\/\/.+/, 'expected redis://host:port or rediss://host:port'),
  },
  eventsStream: {
    flag: 'events-stream',
    env: 'AUTOMR_EVENTS_STREAM',
    help: 'Redis stream key of the events (entries: payload=<bytes> [content-type=json|protobuf])',
    default: 'automr:events',
    schema: z.string().min(1),
  },
  eventsGroup: {
    flag: 'events-group',
    env: 'AUTOMR_EVENTS_GROUP',
    help: 'Redis consumer group (created at the start of the stream when missing)',
    default: 'automr-gateway',
    schema: z.string().min(1),
  },
  eventsConsumerName: {
    flag: 'events-consumer-name',
    env: 'AUTOMR_EVENTS_CONSUMER_NAME',
    help: 'this instance in the group; keep it stable across restarts (empty = host name)',
    default: '',
    schema: z.string(),
  },
  eventsDeadLetterStream: {
    flag: 'events-dead-letter-stream',
    env: 'AUTOMR_EVENTS_DEAD_LETTER_STREAM',
    help: 'Redis stream malformed/rejected events are moved to (fields: payload, reason, source-id)',
    default: 'automr:events:dead-letter',
    schema: z.string().min(1),
  },
  eventsClaimIdleMs: {
    flag: 'events-claim-idle-ms',
    env: 'AUTOMR_EVENTS_CLAIM_IDLE_MS',
    help: 'XAUTOCLAIM messages another consumer left unacked this long (a dead consumer)',
    default: '30000',
    schema: int(100, 3_600_000),
  },
  eventsRedisPassword: {
    flag: 'events-redis-password',
    env: 'AUTOMR_EVENTS_REDIS_PASSWORD',
    help: 'password of the events Redis (instead of putting it in the URL)',
    default: '',
    schema: z.string(),
  },
  eventsRedisTlsCaFile: {
    flag: 'events-redis-tls-ca-file',
    env: 'AUTOMR_EVENTS_REDIS_TLS_CA_FILE',
    help: 'CA bundle to verify the events Redis over rediss://',
    default: '',
    schema: z.string(),
  },
  // — performance (issue 14) —
  recommendBatch: {
    flag: 'recommend-batch',
    env: 'AUTOMR_RECOMMEND_BATCH',
    help: "most concurrent Recommends coalesced into one automr_recommend call and one retriever run (at most the ensemble's max_batch_size; 1 = no coalescing)",
    default: '64',
    schema: int(1, 4096),
  },
  batchDelayMs: {
    flag: 'batch-delay-ms',
    env: 'AUTOMR_BATCH_DELAY_MS',
    help: 'how long the first of concurrent model calls (Recommend, retriever, llm_lower) waits for others to join its batch (0 = those of the same event-loop turn)',
    default: '0',
    schema: z.coerce.number().min(0).max(100),
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
        `invalid ${spec.env} / --${spec.flag} = ${JSON.stringify(redactCredentials(raw))} (from ${source}): ${result.error.issues[0]?.message ?? 'bad value'}`,
      );
    }
    config[key] = result.data;
  }
  return { help: false, config: config as GatewayConfig };
}

/** A URL's `user:password@` part masked, so an error about a bad value never prints a credential. */
export function redactCredentials(value: string): string {
  return value.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/,]*@/i, '$1***@');
}

/** A config with defaults, for tests and embedders. */
export function defaultConfig(overrides: Partial<GatewayConfig> = {}): GatewayConfig {
  const { config } = loadConfig([], {});
  return { ...(config as GatewayConfig), ...overrides };
}
