/**
 * The recommend pipeline: read memory → z_t (stored, or encoded now if the newest element lags) → retriever
 * scores the memory → the top memory_k go with the prompt to automr_recommend in ONE call → tokens map back to
 * catalog items → streamed in batches, then a summary. Also the memory queries (GetMemory, ForgetUser).
 */
import { inSpan } from '../../shared/tracing.js';
import type { GatewayMetrics } from '../../shared/metrics.js';
import type { Encoder } from './encoder.js';
import {
  encodedFlags,
  isEncoded,
  memoryRange,
  promptOf,
  topScored,
  viewStart,
  windowTokens,
  type MemoryModel,
} from './memory.js';
import { invalidArgument } from '../../shared/errors.js';
import { ExclusionMask, excludeItems, requestMask } from './exclusion.js';
import type { Catalog, MemoryStore, ModelServer, Retriever, StoredEntry } from './ports.js';
import { validateId, validateIdList, validateRange, type Limits } from './validation.js';

export interface RankedItem {
  rank: number;
  item_id: string;
  title: string;
  score: number;
}

export interface RetrievedMemory {
  item_id: string;
  timestamp_ms: number;
  score: number;
  event_id: string;
}

export interface RecommendSummary {
  retrieved: RetrievedMemory[];
  model_version: string;
  timings: {
    memory_read_ms: number;
    encode_ms: number;
    retrieve_ms: number;
    infer_ms: number;
    total_ms: number;
  };
  history_size: number;
  memory_size: number;
  pending_encodings: number;
  encoding_lagging: boolean;
  /** Whether the user's consumed items were masked out of the ranking. */
  consumed_excluded: boolean;
  /** Catalog items masked out (consumed, excluded by the request, outside its candidates). */
  excluded_count: number;
  /** Memory elements given to the model. */
  memory_k: number;
}

/** Where results go: the gRPC handler writes them to the response stream (respecting back-pressure). */
export interface RecommendSink {
  items(batch: RankedItem[]): Promise<void>;
  summary(summary: RecommendSummary): Promise<void>;
}

export interface RecommendInput {
  user_id?: unknown;
  top_n?: unknown;
  memory_k?: unknown;
  exclude_consumed?: unknown;
  exclude_item_ids?: unknown;
  candidate_item_ids?: unknown;
}

export interface ValidatedRecommend {
  userId: string;
  topN: number;
  memoryK: number;
  excludeConsumed: boolean;
  excludeItemIds: string[];
  candidateItemIds: string[];
}

export interface RecommendDeps {
  store: MemoryStore;
  modelServer: ModelServer;
  retriever: Retriever;
  encoder: Encoder;
  catalog: Catalog;
  model: MemoryModel;
  limits: Limits;
  defaultMemoryK: number;
  /** Whether the user's consumed items are excluded when a request leaves `exclude_consumed` unset. */
  excludeConsumed: boolean;
  /** How long Recommend waits for a user's in-progress encoding before using what is encoded (ms). */
  encodeWaitMs?: number;
  batchSize?: number;
  metrics?: GatewayMetrics;
}

export interface MemoryView {
  event_id: string;
  item_id: string;
  timestamp_ms: number;
  encoded: boolean;
  unknown_item: boolean;
}

/** Metric attributes, built once (instruments read them, never keep them). */
const STAGE_ATTRIBUTES = {
  'memory.read': { stage: 'memory.read' },
  encode: { stage: 'encode' },
  retrieve: { stage: 'retrieve' },
  infer: { stage: 'infer' },
} as const;
const HISTORY_ATTRIBUTES = { kind: 'history' } as const;
const MEMORY_ATTRIBUTES = { kind: 'memory' } as const;

interface HistoryView {
  encoded: readonly boolean[];
  /** Elements of the history view not encoded for the current version and window. */
  pending: number;
  /** Encoded memory elements (the retriever's candidates), oldest first, and their vectors. */
  usable: readonly StoredEntry[];
  vectors: readonly Float32Array[];
}

export class RecommendService {
  /**
   * What Recommend derives from a history array alone (encoded flags, pending count, usable memory elements), per
   * array: a store that hands out an unchanged (cached) history again skips it.
   */
  private readonly views = new WeakMap<readonly StoredEntry[], HistoryView>();

  /**
   * The mask of a user's consumed set and history items, per consumed-set array and history array: a store that
   * hands out both unchanged (cached) again skips the item lookups.
   */
  private readonly consumedMasks = new WeakMap<
    readonly string[],
    { entries: readonly StoredEntry[]; mask: ExclusionMask }
  >();

  constructor(private readonly d: RecommendDeps) {}

  private consumedMask(consumed: readonly string[], entries: readonly StoredEntry[]): ExclusionMask {
    const known = this.consumedMasks.get(consumed);
    if (known?.entries === entries) return known.mask;
    const { catalog } = this.d;
    const mask = new ExclusionMask(catalog.size);
    excludeItems(mask, catalog, consumed);
    // History items are consumed too (this also covers data stored before the consumed set existed).
    for (const e of entries) {
      const token = catalog.tokenOf(e.itemId);
      if (token !== undefined) mask.exclude(token - catalog.itemTokenBase);
    }
    this.consumedMasks.set(consumed, { entries, mask });
    return mask;
  }

  private viewOf(entries: readonly StoredEntry[]): HistoryView {
    let view = this.views.get(entries);
    if (view === undefined) {
      const { model } = this.d;
      const encoded = encodedFlags(entries, model);
      const { start, end } = memoryRange(entries.length, model);
      const usable: StoredEntry[] = [];
      for (let i = start; i < end; i++) if (encoded[i] === true) usable.push(entries[i] as StoredEntry);
      const vectors = usable.map((e) => e.vector as Float32Array);
      view = { encoded, pending: countPending(entries, encoded, model), usable, vectors };
      this.views.set(entries, view);
    }
    return view;
  }

  validate(input: RecommendInput): ValidatedRecommend {
    const { limits } = this.d;
    const userId = validateId('user_id', input.user_id, limits.maxIdBytes);
    const topN = validateRange('top_n', input.top_n, 1, this.d.catalog.topK);
    const k = validateRange('memory_k', input.memory_k ?? 0, 0, this.d.model.maxMemory);
    const excludeItemIds = validateIdList(
      'exclude_item_ids',
      input.exclude_item_ids,
      limits.maxExcludeItems,
      limits.maxIdBytes,
    );
    const candidateItemIds = validateIdList(
      'candidate_item_ids',
      input.candidate_item_ids,
      limits.maxCandidateItems,
      limits.maxIdBytes,
    );
    const excludeConsumed = input.exclude_consumed;
    if (excludeConsumed !== undefined && excludeConsumed !== null && typeof excludeConsumed !== 'boolean')
      throw invalidArgument('exclude_consumed must be a boolean');
    return {
      userId,
      topN,
      memoryK: k === 0 ? this.d.defaultMemoryK : k,
      excludeConsumed: excludeConsumed ?? this.d.excludeConsumed,
      excludeItemIds,
      candidateItemIds,
    };
  }

  async recommend(input: RecommendInput, sink: RecommendSink, signal?: AbortSignal): Promise<void> {
    const req = this.validate(input);
    const { userId, topN, memoryK } = req;
    const mask = requestMask(this.d.catalog, req.candidateItemIds, req.excludeItemIds);
    const t0 = performance.now();
    const stage = (name: keyof typeof STAGE_ATTRIBUTES, started: number) => {
      const ms = performance.now() - started;
      this.d.metrics?.stageDuration.record(ms, STAGE_ATTRIBUTES[name]);
      return ms;
    };
    const { model, catalog } = this.d;

    let t = performance.now();
    // The consumed set is read alongside the history (one round trip each, concurrently).
    const [firstRead, consumed] = await Promise.all([
      inSpan('memory.read', () => this.d.store.read(userId, signal)),
      req.excludeConsumed
        ? inSpan('memory.consumed', () => this.d.store.consumed(userId, signal))
        : undefined,
    ]);
    let entries = firstRead;
    let view = this.viewOf(entries);
    if ((this.d.encodeWaitMs ?? 0) > 0 && view.pending > 0) {
      // Events acked a moment ago are usually being encoded right now: wait (bounded) rather than lose them.
      await inSpan('encode.wait', () => this.d.encoder.settle(userId, this.d.encodeWaitMs ?? 0));
      entries = await inSpan('memory.read', () => this.d.store.read(userId, signal));
      view = this.viewOf(entries);
    } else if (view.pending > 0) {
      // Lazy re-encoding on read: elements of another model version (or missed ones) are encoded in the background.
      this.d.encoder.schedule(userId);
    }
    const { encoded, pending, usable, vectors } = view;
    if (consumed !== undefined) mask.add(this.consumedMask(consumed, entries));
    const memoryReadMs = stage('memory.read', t);
    const n = entries.length;
    // bos + the newest `window` items' tokens.
    const prompt = [model.bos];
    for (let i = Math.max(0, n - model.window); i < n; i++) prompt.push((entries[i] as StoredEntry).token);

    // z_t = the newest element; encoded now when the encoder has not caught up with it yet.
    let zt: Float32Array | undefined;
    let encodeMs = 0;
    if (n > 0) {
      const newest = entries[n - 1] as StoredEntry;
      if (encoded[n - 1] === true) zt = newest.vector;
      else {
        t = performance.now();
        [zt] = await inSpan('encode', () =>
          this.d.encoder.encodePrompts([promptOf(windowTokens(entries, n - 1, model.window), model.bos)]),
        );
        encodeMs = stage('encode', t);
      }
    }

    const historySize = n - viewStart(n, model);

    let retrieved: { entry: StoredEntry; score: number }[] = [];
    let retrieveMs = 0;
    if (zt !== undefined && usable.length > 0 && memoryK > 0) {
      t = performance.now();
      const query = zt;
      const scores = await inSpan('retrieve', async (span) => {
        span.setAttribute('automr.memory.size', usable.length);
        return this.d.retriever.score(query, vectors, signal);
      });
      retrieved = topScored(scores, usable, memoryK).map((i) => ({
        entry: usable[i] as StoredEntry,
        score: scores[i] ?? 0,
      }));
      retrieveMs = stage('retrieve', t);
    }
    this.d.metrics?.memorySize.record(historySize, HISTORY_ATTRIBUTES);
    this.d.metrics?.memorySize.record(usable.length, MEMORY_ATTRIBUTES);

    t = performance.now();
    const out = await this.d.modelServer.recommend(
      prompt,
      retrieved.map((r) => r.entry.vector as Float32Array),
      mask.bits,
      signal,
    );
    const inferMs = stage('infer', t);

    const items: RankedItem[] = [];
    for (let i = 0; i < out.tokens.length && items.length < topN; i++) {
      // -inf: fewer allowed items than the model's top-k; the rest of the list is excluded items.
      if (out.scores[i] === Number.NEGATIVE_INFINITY) break;
      const item = catalog.itemOf(out.tokens[i] as number);
      if (item === undefined) continue; // special tokens never name an item
      items.push({
        rank: items.length + 1,
        item_id: item.itemId,
        title: item.title,
        score: out.scores[i] ?? 0,
      });
    }

    await inSpan('stream', async () => {
      const size = this.d.batchSize ?? 10;
      if (items.length <= size) await sink.items(items);
      else for (let i = 0; i < items.length; i += size) await sink.items(items.slice(i, i + size));
      await sink.summary({
        retrieved: retrieved.map((r) => ({
          item_id: r.entry.itemId,
          timestamp_ms: r.entry.timestampMs,
          score: r.score,
          event_id: r.entry.eventId,
        })),
        model_version: model.modelVersion,
        timings: {
          memory_read_ms: memoryReadMs,
          encode_ms: encodeMs,
          retrieve_ms: retrieveMs,
          infer_ms: inferMs,
          total_ms: performance.now() - t0,
        },
        history_size: historySize,
        memory_size: usable.length,
        pending_encodings: pending,
        encoding_lagging: pending > 0,
        consumed_excluded: req.excludeConsumed,
        excluded_count: mask.count,
        memory_k: retrieved.length,
      });
    });
  }

  async getMemory(input: { user_id?: unknown }): Promise<MemoryView[]> {
    const userId = validateId('user_id', input.user_id, this.d.limits.maxIdBytes);
    const entries = await inSpan('memory.read', () => this.d.store.read(userId));
    const first = viewStart(entries.length, this.d.model);
    return entries.slice(first).map((e, j) => ({
      event_id: e.eventId,
      item_id: e.itemId,
      timestamp_ms: e.timestampMs,
      encoded: isEncoded(entries, first + j, this.d.model),
      unknown_item: e.token === this.d.catalog.tokens.unk,
    }));
  }

  async forget(input: { user_id?: unknown }): Promise<number> {
    const userId = validateId('user_id', input.user_id, this.d.limits.maxIdBytes);
    return inSpan('memory.write', () => this.d.store.forget(userId));
  }
}

/** Elements of the history view not encoded for the current version and window. */
function countPending(
  entries: readonly StoredEntry[],
  encoded: readonly boolean[],
  model: MemoryModel,
): number {
  let pending = 0;
  for (let i = viewStart(entries.length, model); i < entries.length; i++) if (encoded[i] !== true) pending++;
  return pending;
}
