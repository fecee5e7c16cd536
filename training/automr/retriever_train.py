"""Retriever training (paper Eq. 3 and 6): KL(s' || s) with Adam, early stopping on validation with patience 10.

The validation figures are read from the validation MemoryScores table (the target's rank and log-probability with
each single element), which is exactly what running llm_upper with the retrieved element gives, without re-running
the model per epoch. Two stopping criteria:
  "recall@1": the paper's (§5.1.4): Recall@1 of the full pipeline with the top-1 element, NDCG@10 breaking ties;
  "gain": the mean log P(y | z_t, z_pick) - log P(y | z_t) of the top-1 element, i.e. how much the pick lowers the
          target's perplexity. Measured here: on a few thousand validation samples Recall@1 moves by a handful of
          hits between epochs, so the paper's criterion stops at whichever early epoch got lucky (epochs 1-4 of
          60 on synthetic data); the gain is a per-sample continuous quantity and keeps the retriever training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from .labels import MemoryScores
from .memory import Memory, SampleView, gather_memory
from .metrics import summarize
from .retriever import Retriever


@dataclass
class RetrieverConfig:
    lr: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 100
    patience: int = 10
    seed: int = 0
    weight_decay: float = 0.0
    select: str = "gain"  # early-stopping criterion: "gain" or "recall@1" (see the module docstring)


@dataclass
class TrainInfo:
    best_epoch: int = 0
    best_valid: dict = field(default_factory=dict)
    epochs: int = 0
    history: list = field(default_factory=list)


def new_retriever(d: int) -> Retriever:
    return Retriever(d)


@torch.no_grad()
def retriever_scores(retriever: Retriever, mem: Memory, view: SampleView, batch: int = 1024) -> np.ndarray:
    """[n, M] retriever scores (0 on empty slots)."""
    retriever.eval()
    out = np.zeros(view.mem_idx.shape, dtype=np.float32)
    for s in range(0, len(view.rows), batch):
        sl = slice(s, s + batch)
        q = mem.Z[torch.from_numpy(view.query_idx[sl])]
        m, mk = gather_memory(mem, view.mem_idx[sl])
        out[sl] = retriever(q, m, mk).numpy()
    return out


def top_k_slots(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """[n, k] columns of the k best valid slots, best first; -1 where a sample has fewer than k elements."""
    s = np.where(mask, scores, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    ok = np.take_along_axis(mask, order, 1)
    return np.where(ok, order, -1)


def ranks_of_choice(table: MemoryScores, choice: np.ndarray) -> np.ndarray:
    """Rank of the target when the single element in column choice[i] is used (base rank where choice is -1)."""
    c = np.maximum(choice, 0)
    r = table.rank[np.arange(len(choice)), c]
    return np.where(choice >= 0, r, table.base_rank)


def pick_gain(table: MemoryScores, choice: np.ndarray) -> float:
    """Mean log-probability gain of the target from the chosen single element (0 where no element)."""
    c = np.maximum(choice, 0)
    with np.errstate(invalid="ignore"):
        gain = table.logp[np.arange(len(choice)), c] - table.base_logp
    # A target excluded from the served ranking (a repeat under exclusion) has -inf either way: no gain to find.
    return float(np.mean(np.where((choice >= 0) & np.isfinite(gain), gain, 0.0))) if len(choice) else 0.0


def selection_key(cfg: "RetrieverConfig", valid: dict) -> tuple[float, float]:
    """Larger is better; valid holds the summarize() metrics plus "gain"."""
    if cfg.select == "gain":
        return (valid["gain"], valid["recall@1"])
    if cfg.select == "recall@1":
        # NDCG@10 only breaks exact ties, which are common on small validation sets.
        return (valid["recall@1"], valid["ndcg@10"])
    raise ValueError(f"unknown retriever selection {cfg.select!r}")


def _kl(labels: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(s'||s) with s = masked softmax(logits), summed over valid slots, averaged over samples.

    Uses the retriever's raw logits and a masked log-softmax (not log of the exported probabilities) so tiny
    probabilities keep their gradient; s' log s' is constant in theta but kept so the value reads as a KL.
    """
    valid = mask.bool()
    log_s = torch.log_softmax(logits.masked_fill(~valid, -1e30), dim=1)
    log_l = torch.log(labels.clamp(min=1e-30))
    term = torch.where(valid & (labels > 0), labels * (log_l - log_s), torch.zeros_like(logits))
    return term.sum(1).mean()


def train_retriever(
    mem: Memory,
    train_view: SampleView,
    train_labels: np.ndarray,
    valid_view: SampleView,
    valid_table: MemoryScores,
    cfg: RetrieverConfig | None = None,
    log=print,
) -> tuple[Retriever, TrainInfo]:
    cfg = cfg or RetrieverConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    d = mem.Z.shape[1]
    ret = new_retriever(d)
    opt = torch.optim.Adam(ret.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    keep = np.nonzero(train_view.n_mem > 0)[0]
    labels = torch.from_numpy(train_labels)
    info = TrainInfo()
    best_key, best_state, bad = (-float("inf"), -float("inf")), copy.deepcopy(ret.state_dict()), 0
    for epoch in range(1, cfg.max_epochs + 1):
        ret.train()
        order = keep[rng.permutation(len(keep))]
        tot, nb = 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            b = order[s : s + cfg.batch_size]
            q = mem.Z[torch.from_numpy(train_view.query_idx[b])]
            m, mk = gather_memory(mem, train_view.mem_idx[b])
            loss = _kl(labels[torch.from_numpy(b)], ret.logits(q, m, mk), mk)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss)
            nb += 1
        vs = retriever_scores(ret, mem, valid_view)
        choice = top_k_slots(vs, valid_view.mem_mask, 1)[:, 0]
        met = {**summarize(ranks_of_choice(valid_table, choice)), "gain": pick_gain(valid_table, choice)}
        key = selection_key(cfg, met)
        info.history.append({"epoch": epoch, "kl": tot / max(1, nb), **met})
        if key > best_key:
            best_key, best_state, bad = key, copy.deepcopy(ret.state_dict()), 0
            info.best_epoch, info.best_valid = epoch, met
        else:
            bad += 1
        info.epochs = epoch
        if bad >= cfg.patience:
            break
    log(f"retriever: best epoch {info.best_epoch}/{info.epochs} valid {info.best_valid}")
    ret.load_state_dict(best_state)
    ret.eval()
    return ret, info
