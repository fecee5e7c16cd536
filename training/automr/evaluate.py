"""Test-split evaluation: every method reduced to per-sample target ranks (full ranking over the catalog).

Single-slot memory methods (random, recent, semantic, automr@1, oracle) pick one column of the test MemoryScores
table, which holds the target's rank with each element run through llm_upper; `rank_with_slots` runs llm_upper for
real (used for k > 1, and by the tests to prove the table equals the direct computation).
"""

from __future__ import annotations

import numpy as np
import torch

from .data import make_prompt_batch, targets_of, train_item_counts
from .exclusion import consumed_mask
from .labels import MemoryScores
from .memory import Memory, SampleView, gather_memory
from .metrics import bootstrap, bootstrap_indices, ci95, paired_test, summarize, target_rank
from .retriever_train import ranks_of_choice, retriever_scores, top_k_slots

DAY = 86_400.0


@torch.no_grad()
def rank_with_slots(
    model, prep, mem: Memory, view: SampleView, slots: np.ndarray, batch: int = 1024, exclude: bool = False
) -> np.ndarray:
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
        out[sl] = target_rank(lp, tg[sl], consumed_mask(prep, view.rows[sl]) if exclude else None).numpy()
    return out


def popularity_ranks(prep, rows: np.ndarray, exclude: bool = False, batch: int = 2048) -> np.ndarray:
    """Rank by training-period interaction count; ties broken by catalog row (not in the target's favour)."""
    counts = torch.from_numpy(train_item_counts(prep).astype(np.float64))
    tg = torch.from_numpy(targets_of(prep, rows))
    out = []
    for s in range(0, len(rows), batch):
        sc = counts.unsqueeze(0).expand(len(rows[s : s + batch]), -1)
        out.append(target_rank(sc, tg[s : s + batch], consumed_mask(prep, rows[s : s + batch]) if exclude else None))
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def foreign_view(view: SampleView, seed: int) -> SampleView:
    """Each sample's memory replaced by another user's: the first n_mem[i] elements of a random sample j of a
    different user with at least as many elements (same candidate count, so the two oracles are comparable)."""
    rng = np.random.default_rng(seed)
    n = len(view.rows)
    users, n_mem = view.rows[:, 0], view.n_mem
    order = np.argsort(n_mem, kind="stable")
    sorted_n = n_mem[order]
    mi = np.full_like(view.mem_idx, -1)
    mp = np.full_like(view.mem_pos, -1)
    for i in range(n):
        k = int(n_mem[i])
        if k == 0:
            continue
        lo = int(np.searchsorted(sorted_n, k))  # candidates: samples with >= k elements
        for _ in range(50):
            j = int(order[rng.integers(lo, n)])
            if users[j] != users[i]:
                mi[i, :k], mp[i, :k] = view.mem_idx[j, :k], view.mem_pos[j, :k]
                break
    return SampleView(rows=view.rows, query_idx=view.query_idx, mem_idx=mi, mem_pos=mp)


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


def suffixed(name: str, exclude: bool) -> str:
    return name + ("+exclude" if exclude else "")


def served_method(memory_k: int, exclude: bool) -> str:
    base = "no_memory" if memory_k == 0 else "automr" if memory_k == 1 else f"automr@k={memory_k}"
    return suffixed(base, exclude)


def evaluate_test(
    model,
    prep,
    mem: Memory,
    view: SampleView,
    table: MemoryScores,
    retriever,
    baseline_ranks: dict[str, dict[bool, np.ndarray]],
    foreign_table: MemoryScores | None,
    policy: dict,
    extra_k: tuple[int, ...] = (3,),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Every method's per-sample ranks without and with consumed-item exclusion, rows, the served row and the
    paired tests. baseline_ranks: extra models (sasrec, long_context) -> {exclude: ranks}."""
    idx = bootstrap_indices(len(view.rows), n_boot, seed)
    rscores = retriever_scores(retriever, mem, view)
    ks = sorted({1, *extra_k, *([policy["memory_k"]] if policy["memory_k"] > 1 else [])})
    top = {k: top_k_slots(rscores, view.mem_mask, k) for k in ks}
    choices: dict[str, np.ndarray] = {
        "random_memory": random_choice(view, seed),
        "recent_memory": recent_choice(view),
        "semantic_memory": semantic_choice(mem, view),
        "automr": top[1][:, 0],
    }
    ranks: dict[str, np.ndarray] = {}
    for ex in (False, True):
        t = table.served(ex)
        ranks[suffixed("popularity", ex)] = popularity_ranks(prep, view.rows, ex)
        for name, by_ex in baseline_ranks.items():
            ranks[suffixed(name, ex)] = by_ex[ex]
        ranks[suffixed("no_memory", ex)] = t.base_rank
        for name in ("random_memory", "recent_memory", "semantic_memory", "automr"):
            ranks[suffixed(name, ex)] = ranks_of_choice(t, choices[name])
        for k in ks[1:]:
            ranks[suffixed(f"automr@k={k}", ex)] = rank_with_slots(model, prep, mem, view, top[k], exclude=ex)
        oc = oracle_choice(t)
        choices[suffixed("oracle_memory", ex)] = oc
        ranks[suffixed("oracle_memory", ex)] = ranks_of_choice(t, oc)
        if foreign_table is not None:
            ft = foreign_table.served(ex)
            ranks[suffixed("oracle_foreign_memory", ex)] = ranks_of_choice(ft, oracle_choice(ft))
    rows = [method_row(name, r, idx) for name, r in ranks.items()]
    has_mem = view.n_mem > 0
    sub_idx = bootstrap_indices(int(has_mem.sum()), n_boot, seed + 1)
    rows_mem = [method_row(name, r[has_mem], sub_idx) for name, r in ranks.items()]
    ex = bool(policy["exclude_consumed"])
    served = served_method(int(policy["memory_k"]), ex)
    paired = {}
    for e in (False, True):
        a = suffixed("automr", e)
        for other in ("no_memory", "random_memory", "semantic_memory"):
            paired[f"{a}_vs_{suffixed(other, e)}"] = paired_test(ranks[a], ranks[suffixed(other, e)], idx)
    for other in ("no_memory", "random_memory"):
        o = suffixed(other, ex)
        paired[f"served_vs_{o}"] = paired_test(ranks[served], ranks[o], idx)
    if foreign_table is not None:
        o, f = suffixed("oracle_memory", ex), suffixed("oracle_foreign_memory", ex)
        paired[f"{o}_vs_{f}"] = paired_test(ranks[o], ranks[f], idx)
    served_row = {"method": served, "exclude_consumed": ex, "memory_k": int(policy["memory_k"]),
                  **summarize(ranks[served]), "n": int(len(view.rows))}
    boot_names = [suffixed(n, ex) for n in ("automr", "random_memory", "no_memory")]
    boot = {n.replace("+exclude", ""): bootstrap(ranks[n], idx) for n in boot_names}
    return {
        "rows": rows,
        "rows_samples_with_memory": rows_mem,
        "served": served_row,
        "paired": paired,
        "rq3": rq3(prep, view, choices["automr"], ranks[suffixed("automr", ex)], ranks[suffixed("no_memory", ex)]),
        "_ranks": ranks,
        "_choices": choices,
        "_boot": boot,
        "_served": served,
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
