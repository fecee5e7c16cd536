"""Full-ranking metrics, bootstrap intervals and paired tests over per-sample target ranks.

Every method is reduced to one integer per test sample: the 0-based rank of the true target among all catalog
items (0 = ranked first). Recall@k and NDCG@k follow from it, so every row of the table, the bootstrap and the
paired tests share one code path.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

KS = (1, 5, 10)
METRIC_NAMES = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")


def target_rank(log_probs: torch.Tensor, target_index: torch.Tensor, excluded: torch.Tensor | None = None) -> torch.Tensor:
    """0-based rank of each target among all items: items scored higher, plus equal-scored items with a lower
    catalog index (the same deterministic tie rule as automr.popularity.ranks_of and a stable descending sort).

    With ``excluded`` ([n, n_items] bool) excluded items are not ranked at all, and an excluded target gets rank
    n_items (never a hit): the served ranking under consumed-item exclusion."""
    tgt = log_probs.gather(1, target_index.view(-1, 1))
    idx = torch.arange(log_probs.shape[1], device=log_probs.device).unsqueeze(0)
    better = (log_probs > tgt) | ((log_probs == tgt) & (idx < target_index.view(-1, 1)))
    if excluded is None:
        return better.sum(dim=1)
    rank = (better & ~excluded).sum(dim=1)
    return torch.where(excluded.gather(1, target_index.view(-1, 1)).squeeze(1), log_probs.shape[1], rank)


def per_sample(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample metric values (float64 arrays of the same length as ranks)."""
    r = np.asarray(ranks, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for k in KS:
        out[f"recall@{k}"] = (r < k).astype(np.float64)
    gain = 1.0 / np.log2(r.astype(np.float64) + 2.0)
    for k in (5, 10):
        out[f"ndcg@{k}"] = np.where(r < k, gain, 0.0)
    return out


def summarize(ranks: np.ndarray) -> dict[str, float]:
    return {name: float(v.mean()) if len(v) else 0.0 for name, v in per_sample(ranks).items()}


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """One shared set of resample indices, so intervals of different methods are paired resamples."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def bootstrap(ranks: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Metric means over each bootstrap resample: name -> [n_boot]."""
    ps = per_sample(ranks)
    return {name: v[idx].mean(axis=1) for name, v in ps.items()}


def ci95(boot: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for name, v in boot.items()}


def paired_test(ranks_a: np.ndarray, ranks_b: np.ndarray, idx: np.ndarray) -> dict:
    """Compare method a against method b on the same samples.

    - paired bootstrap of the difference of means (a - b) for every metric: 95% interval and the one-sided
      share of resamples where a <= b;
    - exact McNemar test (two-sided binomial on the discordant pairs) on Recall@1 and Recall@5 hits.
    """
    pa, pb = per_sample(ranks_a), per_sample(ranks_b)
    out: dict = {"bootstrap": {}, "mcnemar": {}}
    for name in METRIC_NAMES:
        d = pa[name] - pb[name]
        bd = d[idx].mean(axis=1)
        out["bootstrap"][name] = {
            "diff": float(d.mean()),
            "ci95": [float(np.percentile(bd, 2.5)), float(np.percentile(bd, 97.5))],
            "p_le_0": float((bd <= 0).mean()),
        }
    for k in (1, 5):
        ha, hb = pa[f"recall@{k}"] > 0, pb[f"recall@{k}"] > 0
        a_only, b_only = int((ha & ~hb).sum()), int((~ha & hb).sum())
        n_disc = a_only + b_only
        p = float(stats.binomtest(a_only, n_disc, 0.5).pvalue) if n_disc else 1.0
        out["mcnemar"][f"recall@{k}"] = {"a_only": a_only, "b_only": b_only, "p_value": p}
    return out


def ndcg_gain(rank: int) -> float:
    return 1.0 / math.log2(rank + 2.0)
