/**
 * The paper's memory (§3.1) over a stored history. Element m's encoding is `query` of llm_lower on the prompt
 * bos + the K-item window ending at m. An encoding is usable only if it was made by the current model version
 * over the element's current window: its key records both, so a late event (which changes the windows of the
 * K elements after it) or a bundle change makes exactly the affected encodings stale, never mixed in.
 */
import type { StoredEntry } from './ports.js';

export interface MemoryModel {
  modelVersion: string;
  window: number;
  maxMemory: number;
  bos: number;
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

export interface EncodeJob {
  seq: number;
  prompt: number[];
  encKey: string;
}

/** Elements whose encoding is missing or stale, newest first (the newest matter most to Recommend). */
export function staleElements(entries: readonly StoredEntry[], model: MemoryModel): EncodeJob[] {
  const jobs: EncodeJob[] = [];
  for (let i = entries.length - 1; i >= 0; i--) {
    if (isEncoded(entries, i, model)) continue;
    const tokens = windowTokens(entries, i, model.window);
    jobs.push({
      seq: (entries[i] as StoredEntry).seq,
      prompt: promptOf(tokens, model.bos),
      encKey: encKeyOf(model.modelVersion, tokens),
    });
  }
  return jobs;
}

/** Indexes of the memory M_{u,t}: every element except the newest K, at most maxMemory (the newest of them). */
export function memoryRange(length: number, model: MemoryModel): { start: number; end: number } {
  const end = Math.max(0, length - model.window);
  return { start: Math.max(0, end - model.maxMemory), end };
}
