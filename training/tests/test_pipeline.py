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


@pytest.mark.xfail(
    strict=True,
    reason="known gap: the reference model's upper half barely uses memory (oracle ~ no_memory on this data); "
    "see training/NOTES-learning.md. Strict: this starts failing as soon as AutoMR does win, to drop the marker.",
)
def test_automr_beats_no_memory_and_random_memory(fast_run):
    _, _, res = fast_run
    for other in ("no_memory", "random_memory"):
        p = res["_eval"]["paired"][f"automr_vs_{other}"]["bootstrap"]["ndcg@5"]
        assert p["ci95"][0] > 0, (other, p)
