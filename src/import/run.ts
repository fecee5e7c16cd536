/**
 * One bulk import under a gateway config: opens the configured store and model server for the bundle, stores the
 * raw rows (`importRaw`), then encodes every imported user (`encodeUsers`), and summarises both phases with their
 * rates. Used by `npm run import`, the bench's import section and the replay's `--history import`.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { GatewayConfig } from '../gateway/config.js';
import { retainedEntries } from '../gateway/domain/memory.js';
import type { ModelServer } from '../gateway/domain/ports.js';
import { createIngest } from '../gateway/ingest-wiring.js';
import { openToolBackends, waitUntilReady } from '../gateway/tool-wiring.js';
import { AppError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { encodeUsers, importRaw, type Progress } from './importer.js';
import type { RowSource } from './rows.js';

export interface ImportRunOptions {
  source: RowSource;
  /** Resume state (default `<data dir>/import-<hash of the input path, store and key prefix>.json`). */
  statePath?: string;
  /** Ignore the state file and start at the first row (still idempotent). */
  restart?: boolean;
  /** Encode the imported users' memory after storing the rows (default true). */
  encode?: boolean;
  /** Rows per store transaction. */
  batchRows?: number;
  /** Users encoded at once. */
  encodeConcurrency?: number;
  onProgress?: (p: Progress) => void;
}

export interface ImportSummary {
  file: string;
  store: string;
  rows: number;
  resumedFrom: number;
  accepted: number;
  duplicates: number;
  rejected: number;
  rejections: { line: number; reason: string }[];
  rawSeconds: number;
  /** Rows of this run (not the resumed ones) per second of the raw phase. */
  rawEventsPerSecond: number;
  users: number;
  encodeSeconds?: number;
  /** Memory elements the model server encoded (llm_lower prompts) and their rate. */
  encodedElements?: number;
  encodeElementsPerSecond?: number;
  encodeUsersPerSecond?: number;
  encodeFailedUsers?: number;
}

const STORE_WAIT_MS = 30_000;

/** Passes every call through, counting the prompts sent to `encode` (the encode rate). */
function countingEncodes(modelServer: ModelServer): { counted: ModelServer; prompts: () => number } {
  let prompts = 0;
  const counted: ModelServer = {
    ready: (signal) => modelServer.ready(signal),
    encode: (batch, signal) => {
      prompts += batch.length;
      return modelServer.encode(batch, signal);
    },
    recommend: (prompt, memory, mask, signal) => modelServer.recommend(prompt, memory, mask, signal),
    close: () => modelServer.close(),
  };
  return { counted, prompts: () => prompts };
}

export function defaultStatePath(config: GatewayConfig, source: RowSource): string {
  // The key prefix names the Redis store as much as the URL does (one Redis may hold several).
  const store = config.memoryStore === 'lmdb' ? 'lmdb' : `${config.memoryStore} ${config.redisPrefix}`;
  const hash = createHash('sha256').update(source.file).update(store).digest('hex');
  return path.join(path.resolve(config.dataDir), `import-${hash.slice(0, 16)}.json`);
}

const round3 = (seconds: number): number => Number(seconds.toFixed(3));
const perSecond = (n: number, seconds: number): number => Math.round(n / Math.max(seconds, 1e-6));

export async function runImport(
  config: GatewayConfig,
  o: ImportRunOptions,
  logger: Logger,
): Promise<ImportSummary> {
  const backends = await openToolBackends(config, logger);
  const { bundle, store, modelServer } = backends;
  const { counted, prompts } = countingEncodes(modelServer);
  const { encoder, model, limits } = createIngest(config, { store, modelServer: counted, bundle, logger });
  try {
    await waitUntilReady([['memory store', () => store.ready()]], STORE_WAIT_MS);
    const raw = await importRaw({
      source: o.source,
      store,
      bundle,
      limits,
      maxHistory: config.maxHistory,
      historyContext: retainedEntries(model) - model.maxHistory,
      statePath: o.statePath ?? defaultStatePath(config, o.source),
      restart: o.restart === true,
      batchRows: o.batchRows ?? 16384,
      ...(o.onProgress === undefined ? {} : { onProgress: o.onProgress }),
    });
    const summary: ImportSummary = {
      file: o.source.file,
      store: store.kind,
      rows: raw.state.rows,
      resumedFrom: raw.resumedFrom,
      accepted: raw.state.accepted,
      duplicates: raw.state.duplicates,
      rejected: raw.state.rejected,
      rejections: raw.rejections,
      rawSeconds: round3(raw.seconds),
      rawEventsPerSecond: perSecond(raw.state.rows - raw.resumedFrom, raw.seconds),
      users: raw.users.length,
    };
    if (o.encode === false || raw.users.length === 0) return summary;
    if (!(await modelServer.ready())) {
      throw new AppError(
        'UNAVAILABLE',
        `model server ${config.modelServer} is not ready; raw events are stored (rerun, or let the gateway encode them at start-up)`,
      );
    }
    const encoded = await encodeUsers({
      encoder,
      users: raw.users,
      concurrency: o.encodeConcurrency ?? 32,
      ...(o.onProgress === undefined ? {} : { onProgress: o.onProgress }),
    });
    summary.encodeSeconds = round3(encoded.seconds);
    summary.encodedElements = prompts();
    summary.encodeElementsPerSecond = perSecond(prompts(), encoded.seconds);
    summary.encodeUsersPerSecond = perSecond(raw.users.length, encoded.seconds);
    summary.encodeFailedUsers = encoded.failed;
    return summary;
  } finally {
    await encoder.stop(0);
    await backends.close();
  }
}
