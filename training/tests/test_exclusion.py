"""Consumed-item exclusion: the offline ranking never holds a consumed item, stays full, and the policy follows the
training data's repeat rate."""

import numpy as np
import torch

from automr.data import N_SPECIAL, finalize
from automr.exclusion import REPEAT_RATE_THRESHOLD, consumed_mask, decide_exclusion, first_occurrence, repeat_rate
from automr.metrics import target_rank
from automr.synthetic import synthetic
from automr.train import chunk_batch, chunk_exclusion


def _ranked_list(scores: torch.Tensor, excluded: torch.Tensor, k: int) -> list[list[int]]:
    """The served top-k: excluded items get -inf before the top-k, -inf entries are dropped."""
    s = scores.masked_fill(excluded, -float("inf"))
    top = torch.topk(s, k, dim=1)
    return [[int(i) for i, v in zip(ix, vs) if v > -float("inf")] for ix, vs in zip(top.indices, top.values)]


def test_no_consumed_item_is_ranked_and_the_top_n_stays_full():
    prep = synthetic(n_users=40, n_items=300, seed=1)
    rows = prep.splits["test"][:200]
    ex = consumed_mask(prep, rows)
    scores = torch.randn(len(rows), prep.n_items)
    # Make the consumed items the best-scored ones: exclusion must still keep every one of them out.
    scores = scores + 10.0 * ex.float()
    top_n = 20
    for (u, p), ranked, e in zip(rows, _ranked_list(scores, ex, top_n), ex):
        consumed = set((prep.seqs[int(u)][: int(p)] - N_SPECIAL).tolist())
        assert set(np.nonzero(e.numpy())[0].tolist()) == consumed
        assert not consumed & set(ranked)
        assert len(ranked) == min(top_n, prep.n_items - len(consumed))
        assert len(ranked) == top_n  # histories hold at most 120 of the 300 items


def test_excluded_rank_counts_only_allowed_items_and_a_consumed_target_is_a_miss():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    excluded = torch.tensor([[True, False, True, False, False], [False, False, False, True, False]])
    target = torch.tensor([3, 3])
    assert target_rank(scores, target).tolist() == [3, 3]
    # row 0: items 0 and 2 were consumed, only item 1 is ahead; row 1: the target itself was consumed
    assert target_rank(scores, target, excluded).tolist() == [1, 5]


def test_repeat_rate_and_policy():
    # user a repeats item x once in 4 targets; user b never repeats
    seqs = [np.array([3, 4, 3, 5, 6]), np.array([4, 5, 6, 7, 8])]
    times = [np.arange(5) * 10, np.arange(5) * 10 + 1]
    prep = finalize(["x", "y", "z", "w", "v", "q"], ["x", "y", "z", "w", "v", "q"], ["a", "b"], seqs, times, "t")
    rows = prep.splits["train"]
    repeats = sum(int(prep.seqs[u][p] in set(prep.seqs[u][:p].tolist())) for u, p in rows)
    assert repeat_rate(prep) == repeats / len(rows) > 0
    assert decide_exclusion(0.0) and not decide_exclusion(REPEAT_RATE_THRESHOLD)
    assert repeat_rate(synthetic(n_users=30, n_items=120, seed=2)) == 0.0  # the generator consumes items once
    assert first_occurrence(np.array([4, 3, 4]), 3).tolist()[:2] == [1, 0]


def test_training_exclusion_masks_every_earlier_item_but_the_target():
    prep = synthetic(n_users=20, n_items=120, seed=4)
    chunks = np.array([[0, 0, 10], [1, 12, 22], [2, 3, 8]])
    _, _, tgt = chunk_batch(prep, chunks)
    ex = chunk_exclusion(prep, chunks, tgt)
    t = tgt.shape[1]
    for i, (u, a, e) in enumerate(chunks):
        s = prep.seqs[u] - N_SPECIAL
        for j in range(e - a):
            q = a + j + 1  # target position of token slot t-(e-a)+j
            got = set(np.nonzero(ex[i, t - (e - a) + j].numpy())[0].tolist())
            assert got == set(s[:q].tolist()) - {int(s[q])}
        assert not ex[i, : t - (e - a)].any()  # padding slots exclude nothing
