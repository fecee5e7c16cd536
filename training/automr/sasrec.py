"""SASRec (Kang & McAuley, ICDM 2018), the paper's conventional baseline, trained on the same split.

The architecture is the original's: item embeddings scaled by sqrt(d) plus learned positions, dropout, pre-LN causal
self-attention blocks (the query is layer-normed, keys/values are not), point-wise two-layer FFN, timeline mask on
padding, final LayerNorm, shared item embeddings for scoring, Adam(beta2=0.98). The loss is full-softmax
cross-entropy over the catalog instead of the paper's BCE with one sampled negative: with one negative SASRec reached
half the reference transformer's Recall@1 on ml-100k, and later work (e.g. Klenitskiy & Vasilev, RecSys 2023) shows
the softmax loss is what closes that gap; a baseline must be trained as well as the method it is compared with.
Epochs are chosen on validation NDCG@10 (patience, wall-clock budget); `pipeline` picks dropout on validation.
A user history longer than `maxlen` is cut into consecutive segments (each with its own context) instead of keeping
only the newest `maxlen` items. Only positions whose target is a training row contribute to the loss.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .exclusion import consumed_mask
from .metrics import target_rank
from .popularity import metrics_from_ranks


@dataclass
class SASRecConfig:
    d: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    maxlen: int = 100
    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 120  # a cap; the epoch is chosen on validation
    patience: int = 12  # epochs without a better validation NDCG@10
    eval_every: int = 3
    valid_samples: int = 2000  # seeded subsample of validation for early stopping
    seed: int = 0
    select_exclude: bool = False  # validation ranking with the user's consumed items excluded (the served one)
    time_budget_s: float | None = 1800.0


class _Block(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(d, eps=1e-8)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ln_ffn = nn.LayerNorm(d, eps=1e-8)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.Dropout(dropout), nn.ReLU(), nn.Linear(d, d), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, causal: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        q = self.ln_attn(x)
        a, _ = self.attn(q, x, x, attn_mask=causal, need_weights=False)
        x = q + a
        x = self.ln_ffn(x)
        x = x + self.ffn(x)
        return x * keep


class SASRec(nn.Module):
    """Items are 1..n_items (0 = padding); sequences are right-aligned (left-padded)."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.item = nn.Embedding(n_items + 1, cfg.d, padding_idx=0)
        self.pos = nn.Embedding(cfg.maxlen, cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg.d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_blocks))
        self.ln = nn.LayerNorm(cfg.d, eps=1e-8)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        b, t = seq.shape
        x = self.item(seq) * self.cfg.d**0.5
        x = x + self.pos(torch.arange(t, device=seq.device)).unsqueeze(0)
        keep = (seq > 0).unsqueeze(-1).to(x.dtype)
        x = self.drop(x) * keep
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=seq.device), diagonal=1)
        for blk in self.blocks:
            x = blk(x, causal, keep)
        return self.ln(x)

    def score_all(self, seq: torch.Tensor) -> torch.Tensor:
        """Scores over items 1..n (column j = item j+1) from the last position."""
        h = self.encode(seq)[:, -1]
        return h @ self.item.weight[1:].T


def _left_pad(rows: list[np.ndarray], t: int) -> np.ndarray:
    out = np.zeros((len(rows), t), dtype=np.int64)
    for i, r in enumerate(rows):
        r = r[-t:]
        if len(r):
            out[i, t - len(r) :] = r
    return out


def _training_segments(prep, cfg: SASRecConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, positives, loss mask) [S, maxlen] and each segment's user, from the train rows; items are token - 2."""
    train = prep.splits["train"]
    by_user: dict[int, set[int]] = {}
    for u, p in train:
        by_user.setdefault(int(u), set()).add(int(p))
    ins, pos, msk, users = [], [], [], []
    for u, targets in by_user.items():
        items = prep.seqs[u].astype(np.int64) - 2
        end = max(targets)  # last training target index
        while end >= 1:
            start = max(0, end - cfg.maxlen)
            idx = np.arange(start + 1, end + 1)
            ins.append(items[start:end])
            pos.append(items[start + 1 : end + 1])
            msk.append(np.array([i in targets for i in idx], dtype=np.int64))
            users.append(u)
            end = start
    users_arr = np.asarray(users, dtype=np.int64)
    return _left_pad(ins, cfg.maxlen), _left_pad(pos, cfg.maxlen), _left_pad(msk, cfg.maxlen), users_arr


def _rows_inputs(prep, rows: np.ndarray, maxlen: int) -> np.ndarray:
    return _left_pad([prep.seqs[int(u)][max(0, int(p) - maxlen) : int(p)].astype(np.int64) - 2 for u, p in rows], maxlen)


@torch.no_grad()
def rank_rows(model: SASRec, prep, rows: np.ndarray, batch: int = 512, exclude: bool = False) -> np.ndarray:
    model.eval()
    out = []
    for s in range(0, len(rows), batch):
        r = rows[s : s + batch]
        seq = torch.from_numpy(_rows_inputs(prep, r, model.cfg.maxlen))
        scores = model.score_all(seq)
        tgt = torch.tensor([int(prep.seqs[int(u)][int(p)]) - 3 for u, p in r], dtype=torch.long)
        out.append(target_rank(scores, tgt, consumed_mask(prep, r) if exclude else None).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def train_sasrec(prep, cfg: SASRecConfig | None = None, log=print) -> tuple[SASRec, dict]:
    cfg = cfg or SASRecConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n_items = len(prep.catalog_ids)
    model = SASRec(n_items, cfg)
    for name, p in model.named_parameters():
        if p.dim() > 1:
            nn.init.xavier_normal_(p)
    with torch.no_grad():
        model.item.weight[0].zero_()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    ins, pos, msk, _ = _training_segments(prep, cfg)
    valid = prep.splits["valid"]
    if len(valid) > cfg.valid_samples:
        valid = valid[np.sort(rng.choice(len(valid), cfg.valid_samples, replace=False))]
    best, best_state, best_epoch, bad = -1.0, copy.deepcopy(model.state_dict()), 0, 0
    t0 = time.time()
    stopped = "epochs"
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order = rng.permutation(len(ins))
        for s in range(0, len(order), cfg.batch_size):
            b = order[s : s + cfg.batch_size]
            y = torch.from_numpy(pos[b])
            m = (torch.from_numpy(msk[b]) > 0) & (y > 0)
            h = model.encode(torch.from_numpy(ins[b]))[m]  # [n_targets, d]: only training targets
            logits = h @ model.item.weight[1:].T
            loss = F.cross_entropy(logits, y[m] - 1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs:
            r = rank_rows(model, prep, valid, exclude=cfg.select_exclude)
            score = float(metrics_from_ranks(r)["NDCG@10"]) if len(r) else 0.0
            if score > best:
                best, best_state, best_epoch, bad = score, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                bad += cfg.eval_every
            el = time.time() - t0
            log(f"sasrec epoch {epoch}/{cfg.max_epochs} loss {loss.item():.4f} valid NDCG@10 {score:.4f} "
                f"(best {best:.4f}; {el:.0f} s, at most {el / epoch * (cfg.max_epochs - epoch):.0f} s left)")
            if bad >= cfg.patience:
                stopped = "patience"
                break
            if cfg.time_budget_s is not None and el > cfg.time_budget_s:
                stopped = "time_budget"
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, {"best_epoch": best_epoch, "best_valid_ndcg@10": best, "stopped_by": stopped,
                   "train_seconds": round(time.time() - t0, 1)}
