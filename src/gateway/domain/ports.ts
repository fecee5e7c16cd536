/** Ports of the gateway domain: small interfaces that the adapters (lmdb, Redis, Triton, onnxruntime) implement. */

/** One catalog item: its external id, its vocabulary token and a title for display. */
export interface CatalogItem {
  itemId: string;
  token: number;
  title: string;
}

/** The served bundle's catalog and vocabulary as the domain sees them (the bundle loader implements it). */
export interface Catalog {
  /** Most items one Recommend may return (the ranking graph's top-k). */
  readonly topK: number;
  readonly tokens: { pad: number; bos: number; unk: number };
  /** Item token for an external id, or undefined for an item outside the catalog. */
  tokenOf(itemId: string): number | undefined;
  /** The item of a vocabulary token, or undefined for a special token. */
  itemOf(token: number): CatalogItem | undefined;
  /** Number of catalog items N (the width of the model's ranking and of its exclusion mask, in bits). */
  readonly size: number;
  /** Token of the first catalog item: item index i (the exclusion mask's bit i) is token − itemTokenBase. */
  readonly itemTokenBase: number;
}

/** One interaction as the ingest service hands it to a store. */
export interface NewEvent {
  userId: string;
  eventId: string;
  itemId: string;
  /** Vocabulary token of the item (2 = unk for an item outside the catalog). */
  token: number;
  timestampMs: number;
}

/** One element of a user's history, as stored. */
export interface StoredEntry {
  eventId: string;
  itemId: string;
  token: number;
  timestampMs: number;
  /** Arrival order within the user; breaks timestamp ties. */
  seq: number;
  /** Encoding of this element, if any; valid only when `encKey` matches the current version and window. */
  vector?: Float32Array;
  encKey?: string;
}

export interface AppendResult {
  status: 'accepted' | 'duplicate';
  seq?: number;
  /**
   * The accepted event is older than the `maxHistory` newest ones, so it is not in the history (the cap dropped
   * it at once, or keeps it only as window context of the oldest element).
   */
  dropped?: boolean;
}

export interface VectorUpdate {
  seq: number;
  /** The entry's timestamp: with `seq` it is the entry's key, so stores update it without a scan. */
  timestampMs: number;
  encKey: string;
  vector: Float32Array;
}

export interface MemoryStore {
  readonly kind: string;
  ready(): Promise<boolean>;
  /**
   * Atomically: checks the idempotency key (per user), inserts the event in (timestamp, arrival) order and drops
   * the oldest entries beyond `maxHistory + context` (the `context` oldest kept are window context only).
   * Resolves only once the event is durable.
   */
  append(event: NewEvent, maxHistory: number, context?: number): Promise<AppendResult>;
  /**
   * Bulk form of `append` for the import: the same result as appending the events one after the other in array
   * order (the same entries in the same (timestamp, arrival) order, idempotency keys and cap; arrival sequence
   * values may differ by gaps), written in as few durable transactions as the store allows. Calls in flight
   * together apply in call order. Resolves once all are durable; per event: accepted or duplicate.
   */
  appendMany(
    events: readonly NewEvent[],
    maxHistory: number,
    context?: number,
  ): Promise<AppendResult['status'][]>;
  /**
   * The user's raw entries (history view plus window context), oldest first. Read-only: a store may share them
   * (and their vectors) between calls.
   */
  read(userId: string, signal?: AbortSignal): Promise<readonly StoredEntry[]>;
  /**
   * A suffix of `read` for the encoder after appends: every entry at or after `sinceTimestampMs` plus the
   * `context` entries before them (their windows), oldest first. Entries carry `encKey` but no `vector`.
   */
  readTail(userId: string, sinceTimestampMs: number, context: number): Promise<StoredEntry[]>;
  /** Stores encodings; updates for entries that no longer exist are ignored. */
  putVectors(userId: string, updates: VectorUpdate[]): Promise<void>;
  /**
   * The user's consumed item ids (any order): every item of an accepted event, kept beyond the history cap up to
   * the store's bound (the newest by event time), written in the same atomic, durable step as the event. Read-only:
   * a store may hand out the same array again while the set is unchanged.
   */
  consumed(userId: string, signal?: AbortSignal): Promise<readonly string[]>;
  /** Deletes everything held for the user; resolves to the number of history entries removed. */
  forget(userId: string): Promise<number>;
  /** Every user with a history (for the background re-encoder). */
  users(): AsyncIterable<string>;
  close(): Promise<void>;
}

export interface RecommendOutput {
  /** Item tokens, best first (read-only: an adapter may hand out views of its response). */
  tokens: ArrayLike<number>;
  scores: ArrayLike<number>;
}

/** The LLM split at layer L, served by Triton or the local model server. */
export interface ModelServer {
  ready(signal?: AbortSignal): Promise<boolean>;
  /** `query` of llm_lower for each prompt (token lists, unpadded). */
  encode(prompts: number[][], signal?: AbortSignal): Promise<Float32Array[]>;
  /**
   * One automr_recommend call; `memory` may be empty (then one masked slot is sent). `excludeMask` is the packed
   * `exclude_mask` row (docs/BUNDLE.md): excluded items never reach the returned top-k, whose tail scores are -inf
   * when fewer items are allowed.
   */
  recommend(
    prompt: number[],
    memory: Float32Array[],
    excludeMask: Uint8Array,
    signal?: AbortSignal,
  ): Promise<RecommendOutput>;
  close(): void;
}

/** The AutoMR retriever: scores each memory element for a query. */
export interface Retriever {
  score(query: Float32Array, memory: readonly Float32Array[], signal?: AbortSignal): Promise<Float32Array>;
  close(): Promise<void>;
}
