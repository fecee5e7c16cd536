"""PPL-delta labels (paper Eq. 5) and the per-element score table every single-slot method is evaluated from.

For each sample and each memory element m we run llm_upper once with exactly one memory slot filled (the paper's
combine(z_t, z_m)) and keep log P(y | z_t, z_m) and the full-ranking rank of the target y; with the slot masked we
get log P(y | z_t). The prompt's layer-L hidden states are computed once per sample and shared by all its elements,
and many (sample, element) pairs go through llm_upper in one batch.

Items are single tokens here, so the product over y's tokens in Eq. 5 is one probability.
Label variants (the paper fixes neither the scale of delta nor a temperature):
  kind "prob": delta = P(y|z_t,z_m) - P(y|z_t)   (Eq. 5 as printed; tiny on 1.6k-item catalogs)
  kind "logp": delta = log P(y|z_t,z_m) - log P(y|z_t)   (per-token log-PPL reduction)
  s' = softmax(delta / tau) over the valid memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .data import make_prompt_batch, targets_of
from .exclusion import consumed_mask, renormalise
from .memory import Memory, SampleView
from .metrics import target_rank


@dataclass
class MemoryScores:
    base_logp: np.ndarray  # [n] log P(y | z_t)
    base_rank: np.ndarray  # [n] rank of y with no memory
    logp: np.ndarray  # [n, M] log P(y | z_t, z_m); nan where no element
    rank: np.ndarray  # [n, M] rank of y with element m; -1 where no element
    # The same on the served distribution with the user's consumed items excluded (automr.exclusion): log P is
    # renormalised over the allowed items (-inf for a consumed target), ranks skip consumed items (n_items for a
    # consumed target).
    base_logp_x: np.ndarray | None = None
    base_rank_x: np.ndarray | None = None
    logp_x: np.ndarray | None = None
    rank_x: np.ndarray | None = None

    def subset(self, idx: np.ndarray) -> "MemoryScores":
        return MemoryScores(*(None if v is None else v[idx] for v in self._fields()))

    def _fields(self) -> tuple:
        return (self.base_logp, self.base_rank, self.logp, self.rank, self.base_logp_x, self.base_rank_x, self.logp_x,
                self.rank_x)

    def served(self, exclude: bool) -> "MemoryScores":
        """The table of the ranking that is served: with exclusion, the _x columns in the plain columns' place."""
        if not exclude:
            return MemoryScores(self.base_logp, self.base_rank, self.logp, self.rank)
        assert self.rank_x is not None, "table scored without exclusion columns"
        return MemoryScores(self.base_logp_x, self.base_rank_x, self.logp_x, self.rank_x)


def no_memory_args(b: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The contract's 'no memory': k = 1 with memory_mask = [0]."""
    return torch.zeros(b, 1, d), torch.zeros(b, 1, dtype=torch.long)


@torch.no_grad()
def score_memory(
    model, prep, mem: Memory, view: SampleView, pair_batch: int = 4096, progress: bool = True, desc: str = "labels"
) -> MemoryScores:
    model.eval()
    n, m_max = view.mem_idx.shape
    d = mem.Z.shape[1]
    base_logp = np.zeros(n, dtype=np.float32)
    base_rank = np.zeros(n, dtype=np.int64)
    logp = np.full((n, m_max), np.nan, dtype=np.float32)
    rank = np.full((n, m_max), -1, dtype=np.int64)
    base_logp_x, base_rank_x = base_logp.copy(), base_rank.copy()
    logp_x, rank_x = logp.copy(), rank.copy()
    targets = torch.from_numpy(targets_of(prep, view.rows))
    n_mem = view.n_mem
    # Chunks of samples holding about pair_batch (sample, element) pairs.
    per_chunk = max(1, pair_batch // max(1, int(n_mem.mean()) if n else 1))
    bar = tqdm(total=int(n_mem.sum()), desc=desc, unit="pair", disable=not progress, mininterval=2.0)
    for s in range(0, n, per_chunk):
        sl = slice(s, min(n, s + per_chunk))
        ids, mask = make_prompt_batch(prep, view.rows[sl])
        hidden, _ = model.lower(ids, mask)
        b = hidden.shape[0]
        tg = targets[sl]
        mm, mk = no_memory_args(b, d)
        lp = model.upper(hidden, mask, mm, mk)
        ex = consumed_mask(prep, view.rows[sl])
        base_logp[sl] = lp.gather(1, tg.view(-1, 1)).squeeze(1).numpy()
        base_rank[sl] = target_rank(lp, tg).numpy()
        lpx = renormalise(lp, ex)
        base_logp_x[sl] = lpx.gather(1, tg.view(-1, 1)).squeeze(1).numpy()
        base_rank_x[sl] = target_rank(lp, tg, ex).numpy()
        si, sj = np.nonzero(view.mem_idx[sl] >= 0)
        for p in range(0, len(si), pair_batch):
            ii, jj = si[p : p + pair_batch], sj[p : p + pair_batch]
            ti = torch.from_numpy(ii)
            memv = mem.Z[torch.from_numpy(view.mem_idx[sl][ii, jj])].unsqueeze(1)
            lp = model.upper(hidden[ti], mask[ti], memv, torch.ones(len(ii), 1, dtype=torch.long))
            t = tg[ti]
            logp[s + ii, jj] = lp.gather(1, t.view(-1, 1)).squeeze(1).numpy()
            rank[s + ii, jj] = target_rank(lp, t).numpy()
            exi = ex[ti]
            logp_x[s + ii, jj] = renormalise(lp, exi).gather(1, t.view(-1, 1)).squeeze(1).numpy()
            rank_x[s + ii, jj] = target_rank(lp, t, exi).numpy()
            bar.update(len(ii))
    bar.close()
    return MemoryScores(base_logp, base_rank, logp, rank, base_logp_x, base_rank_x, logp_x, rank_x)


def deltas(scores: MemoryScores, kind: str) -> np.ndarray:
    """[n, M] delta per element (nan where no element)."""
    if kind == "prob":
        return (np.exp(scores.logp.astype(np.float64)) - np.exp(scores.base_logp.astype(np.float64))[:, None]).astype(
            np.float32
        )
    if kind == "logp":
        with np.errstate(invalid="ignore"):
            d = scores.logp - scores.base_logp[:, None]
        return np.where(np.isinf(scores.base_logp)[:, None] & ~np.isnan(scores.logp), 0.0, d).astype(np.float32)
    raise ValueError(f"unknown delta kind {kind!r}")


def make_labels(scores: MemoryScores, kind: str, tau: float) -> np.ndarray:
    """s' = softmax(delta / tau) over the valid memory; rows with no memory are all 0."""
    dl = deltas(scores, kind).astype(np.float64) / tau
    valid = ~np.isnan(dl)
    dl = np.where(valid, dl, -np.inf)
    mx = np.max(dl, axis=1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    e = np.where(valid, np.exp(dl - mx), 0.0)
    z = e.sum(1, keepdims=True)
    return np.where(z > 0, e / np.where(z > 0, z, 1.0), 0.0).astype(np.float32)
