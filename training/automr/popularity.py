"""Full-ranking metrics (Recall@k, NDCG@k over the whole catalog) and the popularity baseline."""

from __future__ import annotations

import numpy as np

from .data import Prepared, targets_of, train_item_counts

KS = (1, 5, 10)
METRICS = ("Recall@1", "Recall@5", "Recall@10", "NDCG@5", "NDCG@10")


def ranks_of(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target among all items; ties go to the lower catalog index (deterministic)."""
    scores = np.asarray(scores)
    t = scores[np.arange(len(targets)), targets][:, None]
    idx = np.arange(scores.shape[1])[None, :]
    better = (scores > t) | ((scores == t) & (idx < targets[:, None]))
    return better.sum(axis=1)


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, float]:
    ranks = np.asarray(ranks)
    out: dict[str, float] = {}
    for k in KS:
        out[f"Recall@{k}"] = float(np.mean(ranks < k)) if len(ranks) else 0.0
    for k in (5, 10):
        gain = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
        out[f"NDCG@{k}"] = float(np.mean(gain)) if len(ranks) else 0.0
    return out


def popularity_scores(prep: Prepared) -> np.ndarray:
    """Item scores = interactions in the training period (before validation)."""
    return train_item_counts(prep).astype(np.float64)


def evaluate_popularity(prep: Prepared, split: str) -> dict[str, float]:
    rows = prep.splits[split]
    targets = targets_of(prep, rows)
    pop = popularity_scores(prep)
    t = pop[targets]
    idx = np.arange(len(pop))
    # Same tie rule as ranks_of, without materialising a [n, N] score matrix.
    order_better = np.array([((pop > s) | ((pop == s) & (idx < j))).sum() for s, j in zip(t, targets)])
    return metrics_from_ranks(order_better)


def format_table(rows: dict[str, dict[str, float]], title: str = "") -> str:
    head = f"{'model':<28}" + "".join(f"{m:>11}" for m in METRICS)
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for name, m in rows.items():
        lines.append(f"{name:<28}" + "".join(f"{m[k]:>11.4f}" for k in METRICS))
    return "\n".join(lines)
