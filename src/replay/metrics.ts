/**
 * Full-ranking metrics from per-sample 0-based target ranks, defined exactly as the offline toolchain
 * does (`training/automr/metrics.py`): Recall@k = rank < k; NDCG@k = 1 / log2(rank + 2) when rank < k.
 * A target missing from the served top-N gets rank N (a miss at every k <= N).
 */

export const METRIC_NAMES = ['recall@1', 'recall@5', 'recall@10', 'ndcg@5', 'ndcg@10'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];
export type Metrics = Record<MetricName, number>;

export function perSample(rank: number): Metrics {
  const gain = 1 / Math.log2(rank + 2);
  return {
    'recall@1': rank < 1 ? 1 : 0,
    'recall@5': rank < 5 ? 1 : 0,
    'recall@10': rank < 10 ? 1 : 0,
    'ndcg@5': rank < 5 ? gain : 0,
    'ndcg@10': rank < 10 ? gain : 0,
  };
}

export function summarizeRanks(ranks: readonly number[]): Metrics {
  const sums: Metrics = { 'recall@1': 0, 'recall@5': 0, 'recall@10': 0, 'ndcg@5': 0, 'ndcg@10': 0 };
  for (const rank of ranks) {
    const m = perSample(rank);
    for (const name of METRIC_NAMES) sums[name] += m[name];
  }
  const n = ranks.length;
  for (const name of METRIC_NAMES) sums[name] = n === 0 ? 0 : sums[name] / n;
  return sums;
}

/** 0-based rank of `target` in a served list (best first); `list.length` when absent. */
export function rankIn(list: readonly string[], target: string): number {
  const i = list.indexOf(target);
  return i < 0 ? list.length : i;
}

/** The offline `automr` row of the evaluation: metric means plus bootstrap 95% intervals. */
export interface OfflineRow {
  method: string;
  n: number;
  ci95: Partial<Record<MetricName, [number, number]>>;
  [metric: string]: unknown;
}

export interface MetricComparison {
  metric: MetricName;
  served: number;
  offline: number;
  ci95: [number, number] | null;
  within: boolean | null;
}

export function compareWithOffline(served: Metrics, row: OfflineRow): MetricComparison[] {
  return METRIC_NAMES.map((metric) => {
    const offline = typeof row[metric] === 'number' ? row[metric] : Number.NaN;
    const ci = row.ci95[metric] ?? null;
    return {
      metric,
      served: served[metric],
      offline,
      ci95: ci,
      within: ci === null ? null : served[metric] >= ci[0] - 1e-12 && served[metric] <= ci[1] + 1e-12,
    };
  });
}

export interface RankAgreement {
  samples: number;
  /** Same rank, with ranks at or beyond `cap` counted as equal. */
  sameRank: number;
  sameHit1: number;
  sameHit10: number;
}

export function rankAgreement(
  served: readonly number[],
  offline: readonly number[],
  cap: number,
): RankAgreement {
  const out: RankAgreement = { samples: served.length, sameRank: 0, sameHit1: 0, sameHit10: 0 };
  for (let i = 0; i < served.length; i += 1) {
    const a = Math.min(served[i] ?? cap, cap);
    const b = Math.min(offline[i] ?? cap, cap);
    if (a === b) out.sameRank += 1;
    if (a < 1 === b < 1) out.sameHit1 += 1;
    if (a < 10 === b < 10) out.sameHit10 += 1;
  }
  return out;
}
