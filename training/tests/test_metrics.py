import numpy as np
import torch

from automr.metrics import bootstrap, bootstrap_indices, ci95, paired_test, per_sample, summarize, target_rank


def test_target_rank_counts_higher_and_lower_index_ties():
    lp = torch.tensor([[0.1, 0.5, 0.5, 0.2], [0.9, 0.1, 0.1, 0.1]])
    # row 0: target 2 ties with item 1 (lower index, counts) -> rank 1; row 1: target 3 ties with 1 and 2 -> 3
    assert target_rank(lp, torch.tensor([2, 3])).tolist() == [1, 3]
    assert target_rank(lp, torch.tensor([1, 0])).tolist() == [0, 0]


def test_per_sample_recall_and_ndcg():
    m = per_sample(np.array([0, 1, 4, 5, 9, 10]))
    assert m["recall@1"].tolist() == [1, 0, 0, 0, 0, 0]
    assert m["recall@5"].tolist() == [1, 1, 1, 0, 0, 0]
    assert m["recall@10"].tolist() == [1, 1, 1, 1, 1, 0]
    assert np.allclose(m["ndcg@5"], [1, 1 / np.log2(3), 1 / np.log2(6), 0, 0, 0])
    assert np.isclose(m["ndcg@10"][4], 1 / np.log2(11))
    assert summarize(np.array([0, 20]))["recall@1"] == 0.5


def test_bootstrap_interval_brackets_the_mean_and_paired_test_counts_discordant_pairs():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, size=400)
    b = np.where(rng.random(400) < 0.5, a, a + 5)
    idx = bootstrap_indices(len(a), 500, 1)
    lo, hi = ci95(bootstrap(a, idx))["recall@1"]
    assert lo <= summarize(a)["recall@1"] <= hi and hi - lo > 0
    t = paired_test(a, b, idx)
    a_only = int(((a < 1) & (b >= 1)).sum())
    assert t["mcnemar"]["recall@1"]["a_only"] == a_only and t["mcnemar"]["recall@1"]["b_only"] == 0
    assert t["mcnemar"]["recall@1"]["p_value"] < 1e-3
    assert t["bootstrap"]["recall@5"]["ci95"][0] > 0
