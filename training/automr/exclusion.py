"""Consumed-item exclusion: what a user already consumed is not recommended again (the served policy).

A sample (u, pos) has consumed set = every item of seqs[u][:pos] (the whole history, not only the 100-item window),
the same set the gateway keeps per user (Contract A). Excluded items never enter the ranking; a target that is
itself consumed (a repeat) becomes unreachable, so exclusion can only pay where repeats are rare. The policy is
therefore decided from the training data's repeat-consumption rate (`decide_exclusion`).

The "served" distribution under exclusion is the model's softmax renormalised over the allowed items
(`masked_log_softmax`): Eq. 5 labels, the retriever and the trainer's exclusion loss all use it.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import N_SPECIAL, Prepared

# Exclusion makes every repeat target a certain miss, so on any Recall@k it can cost at most the repeat rate
# (in absolute terms). At 1% that worst case stays below the smallest gains exclusion is worth having: ranking
# ~10 already-consumed items out of a top-10 is worth far more on once-only data (ratings, purchases of durables),
# while logs with real re-consumption (music, groceries, the synthetic generator with repeats on) sit well above it.
REPEAT_RATE_THRESHOLD = 0.01


def repeat_rate(prep: Prepared, split: str = "train") -> float:
    """Share of the split's samples whose target the user had consumed before (anywhere in the history)."""
    rows = prep.splits[split]
    if not len(rows):
        return 0.0
    hits = 0
    by_user: dict[int, list[int]] = {}
    for u, p in rows:
        by_user.setdefault(int(u), []).append(int(p))
    for u, ps in by_user.items():
        s = prep.seqs[u]
        first = first_occurrence(s, prep.n_items)
        for p in ps:
            hits += int(first[int(s[p]) - N_SPECIAL] < p)
    return hits / len(rows)


def decide_exclusion(rate: float, threshold: float = REPEAT_RATE_THRESHOLD) -> bool:
    return rate < threshold


def first_occurrence(seq: np.ndarray, n_items: int) -> np.ndarray:
    """[n_items] position of each catalog row's first occurrence in seq (len(seq) + big where absent)."""
    first = np.full(n_items, np.iinfo(np.int64).max // 2, dtype=np.int64)
    rows = np.asarray(seq, dtype=np.int64) - N_SPECIAL
    # Fancy assignment keeps the last write for repeated indices: writing in reverse leaves the first occurrence.
    first[rows[::-1]] = np.arange(len(rows) - 1, -1, -1)
    return first


def consumed_mask(prep: Prepared, rows: np.ndarray) -> torch.Tensor:
    """[n, n_items] bool: True where the catalog row was consumed by user u before position pos."""
    out = np.zeros((len(rows), prep.n_items), dtype=bool)
    for i, (u, p) in enumerate(rows):
        out[i, prep.seqs[int(u)][: int(p)] - N_SPECIAL] = True
    return torch.from_numpy(out)


def masked_log_softmax(logits: torch.Tensor, excluded: torch.Tensor | None) -> torch.Tensor:
    """log_softmax over the allowed items; excluded entries are -inf."""
    if excluded is None:
        return torch.log_softmax(logits, dim=-1)
    return torch.log_softmax(logits.masked_fill(excluded, -float("inf")), dim=-1)


def renormalise(log_probs: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """The served distribution from the model's log_probs: renormalised over allowed items, -inf elsewhere."""
    return masked_log_softmax(log_probs, excluded)
