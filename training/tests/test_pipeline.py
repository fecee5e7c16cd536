"""CI-scale end-to-end run of the eval pipeline on seeded synthetic data (where long-term memory matters by
construction): AutoMR must beat the memory-less model and random retrieval on the same test samples."""

import json
import os

import numpy as np

from automr.data import synthetic
from automr.pipeline import fast_config, run


def test_fast_pipeline_automr_beats_no_memory_and_random(tmp_path):
    prep = synthetic(n_users=300, n_items=120, seed=0)
    out = os.path.join(tmp_path, "result.json")
    cfg = fast_config()
    res = run(prep, out, cfg, cache_root=os.path.join(tmp_path, "cache"), export=False)
    rows = {r["method"]: r for r in json.load(open(out))["rows"]}
    assert {"popularity", "sasrec", "no_memory", "random_memory", "recent_memory", "semantic_memory", "automr",
            "oracle_memory"} <= set(rows)
    n = rows["automr"]["n"]
    assert n == len(prep.splits["test"]) > 2000
    ev = res["_eval"]
    # Per-sample paired comparison on NDCG@5 (less noisy than Recall@1): the paired bootstrap interval of the
    # difference must lie above 0, against both baselines.
    for other in ("no_memory", "random_memory"):
        p = ev["paired"][f"automr_vs_{other}"]["bootstrap"]["ndcg@5"]
        assert p["ci95"][0] > 0, (other, p, rows["automr"], rows[other])
    assert rows["oracle_memory"]["recall@1"] >= rows["automr"]["recall@1"]
    for f in res["figures"].values():
        assert os.path.getsize(f) > 1000
    targets = json.load(open(res["replay_targets"]))
    hits = np.array([s["hit@1"] for s in targets["samples"]])
    assert len(hits) == n and abs(hits.mean() - rows["automr"]["recall@1"]) < 1e-9
