"""CI-scale end-to-end run of the eval pipeline on seeded synthetic data (about 4 minutes on 2 cores)."""

import json
import os

import numpy as np
import pytest

from automr.data import synthetic
from automr.evaluate import rank_with_slots
from automr.memory import sample_view
from automr.pipeline import FAST_SYNTHETIC, fast_config, run


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    prep = synthetic(seed=0, **FAST_SYNTHETIC)
    out = os.path.join(tmp, "result.json")
    res = run(prep, out, fast_config(), cache_root=os.path.join(tmp, "cache"), export=False)
    return prep, out, res


def test_pipeline_writes_the_table_figures_and_replay_targets(fast_run):
    prep, out, res = fast_run
    doc = json.load(open(out))
    rows = {r["method"]: r for r in doc["rows"]}
    assert list(rows)[:3] == ["popularity", "sasrec", "no_memory"]
    assert {"random_memory", "recent_memory", "semantic_memory", "automr", "oracle_memory"} <= set(rows)
    n = doc["split"]["test_samples_evaluated"]
    assert n == min(fast_config().test_samples, len(prep.splits["test"]))
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
    import torch

    from automr.memory import Memory

    model, mem = res["_model"], res["_memory"]
    assert isinstance(mem, Memory) and isinstance(model, torch.nn.Module)
    view = sample_view(mem, res["_test_view"].rows[:400])
    choice = ev["_choices"]["automr"][:400]
    direct = rank_with_slots(model, prep, mem, view, choice.reshape(-1, 1))
    assert np.array_equal(direct, ev["_ranks"]["automr"][:400])


def test_automr_beats_no_memory_and_random_memory(fast_run):
    """The paper's claim at CI scale: the KL-trained retriever's element helps, and more than a random element.

    Asserted on the paired bootstrap (same test samples, 300 resamples): the whole 95% interval of automr minus
    the other method lies above 0 for Recall@10 and NDCG@10. Recall@1 is not asserted: on this data the retrieved
    element lifts the target into the top 10 far more often than to the very top, and the Recall@1 difference
    straddles 0 (measured with seeds 1 and 2: -0.006 and +0.006, both intervals containing 0).
    """
    _, _, res = fast_run
    ev = res["_eval"]
    for other in ("no_memory", "random_memory"):
        b = ev["paired"][f"automr_vs_{other}"]["bootstrap"]
        for m in ("recall@10", "ndcg@10"):
            assert b[m]["ci95"][0] > 0, (other, m, b[m])


def test_oracle_bounds_every_single_slot_method(fast_run):
    """The oracle (per sample, the element maximising the target's log-probability) is at least no_memory and every
    single-slot method, within 1e-3 (rank is not strictly monotone in log-probability)."""
    _, _, res = fast_run
    rows = {r["method"]: r for r in res["_eval"]["rows"]}
    for m in ("recall@10", "ndcg@10"):
        for name in ("no_memory", "random_memory", "recent_memory", "semantic_memory", "automr"):
            assert rows["oracle_memory"][m] >= rows[name][m] - 1e-3, (name, m)
