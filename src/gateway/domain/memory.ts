/**
 * The paper's memory (§3.1) over a stored history. Element m's encoding is `query` of llm_lower on the prompt
 * bos + the K-item window ending at m. An encoding is usable only if it was made by the current model version
 * over the element's current window: its key records both, so a late event (which changes the windows of the
 * K elements after it) or a bundle change makes exactly the affected encodings stale, never mixed in.
 *
 * History view vs. raw entries: the history (GetMemory, Recommend's memory and prompt) is the `maxHistory` newest
 * events, but the store also keeps the `window - 1` events before them, only as window context. Offline
 * (training/automr/data.py `memory_indices`), element m at position pos is encoded over seqs[m-9 .. m] of the
 * FULL sequence for m down to pos-100, so the oldest element in the view needs the 9 events before the view to
 * get the same vector as offline (and not be re-keyed over a truncated window when those events are trimmed).
 */
import type { StoredEntry } from './ports.js';

export interface MemoryModel {
  modelVersion: string;
  window: number;
  maxMemory: number;
  bos: number;
  /** Events in the history view (the newest ones); the store keeps `window - 1` more as window context. */
  maxHistory: number;
}

/** Raw entries the store keeps per user: the history view plus the window context of its oldest element. */
export function retainedEntries(model: Pick<MemoryModel, 'maxHistory' | 'window'>): number {
  return model.maxHistory + Math.max(0, model.window - 1);
}

/** Index of the first raw entry in the history view (entries before it are window context only). */
export function viewStart(length: number, model: MemoryModel): number {
  return Math.max(0, length - model.maxHistory);
}

export function windowTokens(entries: readonly StoredEntry[], index: number, window: number): number[] {
  return entries.slice(Math.max(0, index - window + 1), index + 1).map((e) => e.token);
}

export function promptOf(tokens: readonly number[], bos: number): number[] {
  return [bos, ...tokens];
}

export function encKeyOf(modelVersion: string, tokens: readonly number[]): string {
  return `${modelVersion}|${tokens.join(',')}`;
}

export function isEncoded(entries: readonly StoredEntry[], index: number, model: MemoryModel): boolean {
  const e = entries[index];
  return (
    e?.vector !== undefined &&
    e.encKey === encKeyOf(model.modelVersion, windowTokens(entries, index, model.window))
  );
}

/**
 * `isEncoded` for every element of the history view (index = raw index; context entries are false), computed
 * once per read: callers that test the same elements several times (Recommend) build each key only once.
 */
export function encodedFlags(entries: readonly StoredEntry[], model: MemoryModel): boolean[] {
  const flags = new Array<boolean>(entries.length).fill(false);
  for (let i = viewStart(entries.length, model); i < entries.length; i++)
    flags[i] = isEncoded(entries, i, model);
  return flags;
}

export interface EncodeJob {
  seq: number;
  timestampMs: number;
  prompt: number[];
  encKey: string;
}

/**
 * Elements of the history view whose encoding is missing or stale, newest first (the newest matter most to
 * Recommend). Context-only entries before the view are never encoded. `entries` may be a suffix of the raw
 * entries (a tail read); only the elements from index `from` on are checked.
 */
export function staleElements(entries: readonly StoredEntry[], model: MemoryModel, from = 0): EncodeJob[] {
  const jobs: EncodeJob[] = [];
  const first = Math.max(from, viewStart(entries.length, model));
  for (let i = entries.length - 1; i >= first; i--) {
    const tokens = windowTokens(entries, i, model.window);
    const encKey = encKeyOf(model.modelVersion, tokens);
    const entry = entries[i] as StoredEntry;
    // The key alone decides (a tail read carries keys, not vectors; a stored key always has its vector).
    if (entry.encKey === encKey) continue;
    jobs.push({
      seq: entry.seq,
      timestampMs: entry.timestampMs,
      prompt: promptOf(tokens, model.bos),
      encKey,
    });
  }
  return jobs;
}

/**
 * Raw indexes of the memory M_{u,t} among `length` raw entries: every element of the history view except the
 * newest K, at most maxMemory (the newest of them).
 */
export function memoryRange(length: number, model: MemoryModel): { start: number; end: number } {
  const end = Math.max(0, length - model.window);
  return { start: Math.max(viewStart(length, model), end - model.maxMemory), end };
}

/**
 * Indexes of the `k` highest scores, best first; equal scores go to the newer element. The same order as sorting
 * every element, without building and sorting an object per memory element on every Recommend (k is the policy's
 * 1–3 by default; a request may ask for up to the whole memory of 90, O(k × memory) comparisons).
 */
export function topScored(scores: ArrayLike<number>, elements: readonly StoredEntry[], k: number): number[] {
  const best: number[] = [];
  if (k <= 0) return best;
  const before = (i: number, j: number): boolean => {
    const a = scores[i] ?? 0;
    const b = scores[j] ?? 0;
    return (
      a > b ||
      (a === b && (elements[i] as StoredEntry).timestampMs > (elements[j] as StoredEntry).timestampMs)
    );
  };
  for (let i = 0; i < elements.length; i++) {
    if (best.length === k && !before(i, best[k - 1] as number)) continue;
    let at = best.length === k ? k - 1 : best.length;
    while (at > 0 && before(i, best[at - 1] as number)) {
      best[at] = best[at - 1] as number;
      at--;
    }
    best[at] = i;
  }
  return best;
}
