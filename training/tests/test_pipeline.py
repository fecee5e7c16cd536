"""CI-scale end-to-end run of the eval pipeline on seeded synthetic data."""

import json
import os

import numpy as np
import pytest

from automr.data import synthetic
from automr.evaluate import rank_with_slots
from automr.memory import sample_view
from automr.pipeline import fast_config, run


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    prep = synthetic(n_users=300, n_items=120, seed=0)
    out = os.path.join(tmp, "result.json")
    res = run(prep, out, fast_config(), cache_root=os.path.join(tmp, "cache"), export=False)
    return prep, out, res


def test_pipeline_writes_the_table_figures_and_replay_targets(fast_run):
    prep, out, res = fast_run
    doc = json.load(open(out))
    rows = {r["method"]: r for r in doc["rows"]}
    assert list(rows)[:3] == ["popularity", "sasrec", "no_memory"]
    assert {"random_memory", "recent_memory", "semantic_memory", "automr", "oracle_memory"} <= set(rows)
    n = len(prep.splits["test"])
    for r in rows.values():
        assert r["n"] == n > 2000
        for m in ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10"):
            lo, hi = r["ci95"][m]
            assert lo <= r[m] <= hi
        assert r["recall@1"] <= r["recall@5"] <= r["recall@10"]
    assert [s["delta"] for s in doc["label_search"]] == [k for k, _ in fast_config().label_grid]
    assert doc["paired"]["automr_vs_no_memory"]["mcnemar"]["recall@1"]["p_value"] <= 1.0
    for f in res["figures"].values():
        assert os.path.getsize(f) > 1000
    targets = json.load(open(res["replay_targets"]))
    hits = np.array([s["hit@1"] for s in targets["samples"]])
    assert len(hits) == n and abs(hits.mean() - rows["automr"]["recall@1"]) < 1e-9


def test_automr_row_equals_running_upper_with_the_retrieved_element(fast_run):
    """The table lookup the evaluation uses is exactly the served computation (lower -> retrieve -> upper)."""
    prep, _, res = fast_run
    ev = res["_eval"]
    rows = prep.splits["test"][:400]
    import torch

    from automr.memory import Memory

    model, mem = res["_model"], res["_memory"]
    assert isinstance(mem, Memory) and isinstance(model, torch.nn.Module)
    view = sample_view(mem, rows)
    choice = ev["_choices"]["automr"][:400]
    direct = rank_with_slots(model, prep, mem, view, choice.reshape(-1, 1))
    assert np.array_equal(direct, ev["_ranks"]["automr"][:400])


def test_single_slot_memory_rows_are_consistent_and_memory_does_not_hurt(fast_run):
    """What holds at CI scale, asserted instead of a win.

    AutoMR beating no_memory/random_memory is NOT shown at this scale. Measured on this fixture and on two larger
    variants (d_model 64 / 4 layers / 8 epochs, with and without favourites=3 + p_explore=1.0 in the generator),
    even the oracle element lifts NDCG@10 by <= 0.006, so no retriever can win, and automr's paired 95% intervals
    against no_memory and random_memory straddle 0. What must hold regardless: the oracle (per sample, the element
    maximising the target's log-probability) is at least no_memory and every single-slot method, within 1e-3 (rank
    is not strictly monotone in log-probability), and the trained retriever does not degrade the model beyond a small non-inferiority margin.
    """
    _, _, res = fast_run
    ev = res["_eval"]
    rows = {r["method"]: r for r in ev["rows"]}
    single = ("random_memory", "recent_memory", "semantic_memory", "automr")
    for m in ("recall@10", "ndcg@10"):
        assert rows["oracle_memory"][m] >= rows["no_memory"][m] - 1e-3, m
        for name in single:
            assert rows["oracle_memory"][m] >= rows[name][m] - 1e-3, (name, m)
    for other in ("no_memory", "random_memory"):
        b = ev["paired"][f"automr_vs_{other}"]["bootstrap"]
        # Non-inferiority: the whole paired 95% interval of (automr - other) lies above a small margin. (A tiny
        # significant loss, ~1e-4 NDCG@10, does occur on some seeds, so "not significantly worse" would be wrong.)
        for m, margin in (("recall@10", 0.01), ("ndcg@10", 0.005)):
            assert b[m]["ci95"][0] > -margin, (other, m, b[m])
