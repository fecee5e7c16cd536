"""Test-split evaluation: every method reduced to per-sample target ranks (full ranking over the catalog).

Single-slot memory methods (random, recent, semantic, automr@1, oracle) pick one column of the test MemoryScores
table, which holds the target's rank with each element run through llm_upper; `rank_with_slots` runs llm_upper for
real (used for k > 1, and by the tests to prove the table equals the direct computation).
"""

from __future__ import annotations

import numpy as np
import torch

from .data import make_prompt_batch, targets_of, train_item_counts
from .labels import MemoryScores
from .memory import Memory, SampleView, gather_memory
from .metrics import bootstrap, bootstrap_indices, ci95, paired_test, summarize, target_rank
from .retriever_train import ranks_of_choice, retriever_scores, top_k_slots

DAY = 86_400.0


@torch.no_grad()
def rank_with_slots(model, prep, mem: Memory, view: SampleView, slots: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Ranks with the memory columns slots[i] (-1 = empty slot, masked) filled; k = slots.shape[1] >= 1."""
    model.eval()
    tg = torch.from_numpy(targets_of(prep, view.rows))
    out = np.zeros(len(view.rows), dtype=np.int64)
    for s in range(0, len(view.rows), batch):
        sl = slice(s, s + batch)
        ids, mask = make_prompt_batch(prep, view.rows[sl])
        hidden, _ = model.lower(ids, mask)
        cols = slots[sl]
        idx = np.where(cols >= 0, np.take_along_axis(view.mem_idx[sl], np.maximum(cols, 0), 1), -1)
        m, mk = gather_memory(mem, idx)
        lp = model.upper(hidden, mask, m, mk)
        out[sl] = target_rank(lp, tg[sl]).numpy()
    return out


def popularity_ranks(prep, rows: np.ndarray) -> np.ndarray:
    """Rank by training-period interaction count; ties broken by catalog row (not in the target's favour)."""
    counts = train_item_counts(prep)
    order = np.lexsort((np.arange(len(counts)), -counts))
    pos_of = np.empty(len(counts), dtype=np.int64)
    pos_of[order] = np.arange(len(counts))
    return pos_of[targets_of(prep, rows)]


def random_choice(view: SampleView, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_mem = view.n_mem
    c = (rng.random(len(n_mem)) * np.maximum(n_mem, 1)).astype(np.int64)
    return np.where(n_mem > 0, c, -1)


def recent_choice(view: SampleView) -> np.ndarray:
    """The newest element outside the window (memory is stored oldest first)."""
    return np.where(view.n_mem > 0, view.n_mem - 1, -1)


def semantic_choice(mem: Memory, view: SampleView, batch: int = 2048) -> np.ndarray:
    """ReLLa adapted to generation: cosine between z_t and each element, best one."""
    out = np.full(len(view.rows), -1, dtype=np.int64)
    for s in range(0, len(view.rows), batch):
        sl = slice(s, s + batch)
        q = torch.nn.functional.normalize(mem.Z[torch.from_numpy(view.query_idx[sl])], dim=-1)
        m, mk = gather_memory(mem, view.mem_idx[sl])
        cos = torch.einsum("bd,bmd->bm", q, torch.nn.functional.normalize(m, dim=-1)).numpy()
        out[sl] = top_k_slots(cos, mk.numpy() > 0, 1)[:, 0]
    return out


def oracle_choice(table: MemoryScores) -> np.ndarray:
    """The element with the largest delta for the true target (= the largest log P(y | z_t, z_m))."""
    lp = np.where(np.isnan(table.logp), -np.inf, table.logp)
    c = np.argmax(lp, axis=1)
    return np.where(np.isfinite(lp.max(axis=1)), c, -1)


def method_row(name: str, ranks: np.ndarray, idx: np.ndarray, extra: dict | None = None) -> dict:
    row = {"method": name, **summarize(ranks), "n": int(len(ranks)), "ci95": ci95(bootstrap(ranks, idx))}
    if extra:
        row.update(extra)
    return row


def rq3(prep, view: SampleView, choice: np.ndarray, ranks_automr: np.ndarray, ranks_none: np.ndarray) -> dict:
    """How far back the retrieved element lies for samples AutoMR gets right at 1 and no_memory gets wrong."""
    sel = np.nonzero((ranks_automr < 1) & (ranks_none >= 1) & (choice >= 0))[0]
    back_pos, back_days = [], []
    for i in sel:
        u, p = int(view.rows[i, 0]), int(view.rows[i, 1])
        m = int(view.mem_pos[i, choice[i]])
        back_pos.append(p - m)
        back_days.append((prep.times[u][p] - prep.times[u][m]) / DAY)
    # Reference: the same distances over every memory element of those samples (what a uniform pick would give).
    all_pos = [int(view.rows[i, 1]) - int(m) for i in sel for m in view.mem_pos[i][view.mem_pos[i] >= 0]]

    def q(v):
        if not len(v):
            return None
        a = np.asarray(v, dtype=np.float64)
        return {k: float(np.percentile(a, p)) for k, p in (("p25", 25), ("median", 50), ("p75", 75))} | {
            "mean": float(a.mean()),
            "max": float(a.max()),
        }

    return {
        "n_samples": int(len(sel)),
        "sample_index": [int(i) for i in sel],
        "positions_back": q(back_pos),
        "days_back": q(back_days),
        "positions_back_all_memory": q(all_pos),
        "positions_back_values": [int(x) for x in back_pos],
        "days_back_values": [float(round(x, 3)) for x in back_days],
    }


def evaluate_test(
    model,
    prep,
    mem: Memory,
    view: SampleView,
    table: MemoryScores,
    retriever,
    sasrec_ranks: np.ndarray | None,
    extra_k: tuple[int, ...] = (3,),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    idx = bootstrap_indices(len(view.rows), n_boot, seed)
    choices: dict[str, np.ndarray] = {
        "random_memory": random_choice(view, seed),
        "recent_memory": recent_choice(view),
        "semantic_memory": semantic_choice(mem, view),
    }
    rscores = retriever_scores(retriever, mem, view)
    choices["automr"] = top_k_slots(rscores, view.mem_mask, 1)[:, 0]
    choices["oracle_memory"] = oracle_choice(table)
    ranks: dict[str, np.ndarray] = {"popularity": popularity_ranks(prep, view.rows)}
    if sasrec_ranks is not None:
        ranks["sasrec"] = sasrec_ranks
    ranks["no_memory"] = table.base_rank
    for name in ("random_memory", "recent_memory", "semantic_memory", "automr"):
        ranks[name] = ranks_of_choice(table, choices[name])
    for k in extra_k:
        ranks[f"automr@k={k}"] = rank_with_slots(model, prep, mem, view, top_k_slots(rscores, view.mem_mask, k))
    ranks["oracle_memory"] = ranks_of_choice(table, choices["oracle_memory"])
    rows = [method_row(name, r, idx) for name, r in ranks.items()]
    has_mem = view.n_mem > 0
    sub_idx = bootstrap_indices(int(has_mem.sum()), n_boot, seed + 1)
    rows_mem = [method_row(name, r[has_mem], sub_idx) for name, r in ranks.items()]
    boot = {name: bootstrap(r, idx) for name, r in ranks.items() if name in ("automr", "random_memory", "no_memory")}
    return {
        "rows": rows,
        "rows_samples_with_memory": rows_mem,
        "paired": {
            "automr_vs_no_memory": paired_test(ranks["automr"], ranks["no_memory"], idx),
            "automr_vs_random_memory": paired_test(ranks["automr"], ranks["random_memory"], idx),
            "automr_vs_semantic_memory": paired_test(ranks["automr"], ranks["semantic_memory"], idx),
        },
        "rq3": rq3(prep, view, choices["automr"], ranks["automr"], ranks["no_memory"]),
        "_ranks": ranks,
        "_choices": choices,
        "_boot": boot,
    }


def format_table(rows: list[dict]) -> str:
    cols = ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10")
    w = max(len(r["method"]) for r in rows) + 2
    lines = [f"{'method':<{w}}" + "".join(f"{c:>22}" for c in cols) + f"{'n':>8}"]
    for r in rows:
        cells = "".join(
            f"{r[c]:>8.4f} [{r['ci95'][c][0]:.4f},{r['ci95'][c][1]:.4f}]".rjust(22) for c in cols
        )
        lines.append(f"{r['method']:<{w}}{cells}{r['n']:>8}")
    return "\n".join(lines)
