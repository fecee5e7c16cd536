import os

import numpy as np
import torch

from automr.labels import MemoryScores
from automr.memory import Memory, sample_view
from automr.retriever import export_retriever
import pytest

from automr.retriever_train import (
    RetrieverConfig,
    pick_gain,
    ranks_of_choice,
    retriever_scores,
    top_k_slots,
    train_retriever,
)
from ort import ort_run


def _planted(n_users=60, length=60, d=16, seed=0):
    """Memory where the useful element is the one whose vector aligns with a fixed direction of the query."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n_users * length, d, generator=g)
    offsets = np.arange(0, n_users * length + 1, length)
    mem = Memory(Z=z, offsets=offsets)
    rows = np.array([[u, p] for u in range(n_users) for p in range(20, length, 3)])
    view = sample_view(mem, rows)
    w = torch.randn(d, d, generator=g)
    q = mem.Z[torch.from_numpy(view.query_idx)] @ w
    m = mem.Z[torch.from_numpy(np.maximum(view.mem_idx, 0))]
    util = torch.einsum("bd,bmd->bm", q, m).numpy()
    util = np.where(view.mem_mask, util, -np.inf)
    best = util.argmax(1)
    # rank 0 with the best element, a poor rank otherwise; logp follows util
    rank = np.where(view.mem_mask, 50, -1)
    rank[np.arange(len(best)), best] = 0
    table = MemoryScores(np.full(len(rows), -5.0, np.float32), np.full(len(rows), 50), np.where(view.mem_mask, util, np.nan).astype(np.float32), rank)
    return mem, view, table, best


@pytest.mark.parametrize("select", ["gain", "recall@1"])
def test_kl_training_learns_to_retrieve_the_labelled_element_and_early_stops(select):
    mem, view, table, best = _planted()
    n = len(view.rows)
    tr, va = np.arange(n) % 4 != 0, np.arange(n) % 4 == 0
    labels = np.zeros(view.mem_idx.shape, np.float32)
    labels[np.arange(n), best] = 1.0
    sub = lambda v, i: type(v)(v.rows[i], v.query_idx[i], v.mem_idx[i], v.mem_pos[i])  # noqa: E731
    ret, info = train_retriever(mem, sub(view, tr), labels[tr], sub(view, va), table.subset(np.nonzero(va)[0]),
                                RetrieverConfig(max_epochs=60, patience=10, lr=3e-3, select=select), log=lambda *_: None)
    vs = retriever_scores(ret, mem, sub(view, va))
    hit = (ranks_of_choice(table.subset(np.nonzero(va)[0]), top_k_slots(vs, view.mem_mask[va], 1)[:, 0]) == 0).mean()
    assert hit > 0.6 > 1.0 / 40  # random pick over ~40 elements would hit ~2.5%
    assert info.best_valid["recall@1"] == hit
    assert info.epochs < 60 or info.best_epoch > 40  # stopped by patience unless still improving


def test_exported_retriever_onnx_matches_torch(tmp_path):
    mem, view, table, best = _planted(n_users=4)
    from automr.retriever import Retriever

    torch.manual_seed(0)
    ret = Retriever(16).eval()
    path = os.path.join(tmp_path, "retriever.onnx")
    export_retriever(ret, path)
    q = mem.Z[torch.from_numpy(view.query_idx[:6])]
    idx = view.mem_idx[:6]
    m = mem.Z[torch.from_numpy(np.maximum(idx, 0))]
    mask = (idx >= 0).astype(np.int64)
    mask[2] = 0  # a row with no valid slot scores all 0
    m[0, 3] = float("nan")
    mask[0, 3] = 0  # a masked NaN slot must not leak
    want = ret(q, m, torch.from_numpy(mask)).detach().numpy()
    got = ort_run(path, {"query": q.numpy(), "memory": m.numpy(), "memory_mask": mask})["scores"]
    assert got.shape == want.shape and np.isfinite(got).all()
    assert np.allclose(got, want, atol=1e-6)
    assert (got[2] == 0).all() and got[0, 3] == 0


def test_top_k_slots_orders_valid_slots_and_pads_with_minus_one():
    s = np.array([[0.1, 0.7, 0.2, 0.9], [0.5, 0.4, 0.0, 0.0]])
    mask = np.array([[True, True, True, False], [True, False, False, False]])
    assert top_k_slots(s, mask, 2).tolist() == [[1, 2], [0, -1]]


def test_pick_gain_is_the_mean_log_probability_gain_of_the_chosen_element():
    table = MemoryScores(
        base_logp=np.array([-3.0, -2.0, -4.0], np.float32),
        base_rank=np.array([9, 3, 20]),
        logp=np.array([[-2.0, -5.0], [-1.5, np.nan], [np.nan, np.nan]], np.float32),
        rank=np.array([[4, 30], [1, -1], [-1, -1]]),
    )
    # Sample 2 has no element: it counts with gain 0.
    assert pick_gain(table, np.array([0, 0, -1])) == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert pick_gain(table, np.array([1, 0, -1])) == pytest.approx((-2.0 + 0.5) / 3)
