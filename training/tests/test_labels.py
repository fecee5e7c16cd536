import numpy as np
import torch

from automr.data import make_prompt_batch, targets_of
from automr.synthetic import synthetic
from automr.labels import deltas, make_labels, score_memory
from automr.memory import build_memory, sample_view
from automr.metrics import target_rank
from automr.model import ModelConfig, RecModel


def _setup():
    torch.manual_seed(1)
    prep = synthetic(n_users=10, n_items=40, seed=5, min_len=30, max_len=60)
    model = RecModel(ModelConfig(n_items=prep.n_items, d_model=16, n_layers=2, n_heads=2, split_layer=1)).eval()
    mem = build_memory(model, prep, progress=False)
    rows = prep.splits["train"][::7]
    return prep, model, mem, rows


def test_score_table_equals_running_upper_with_that_single_slot():
    prep, model, mem, rows = _setup()
    view = sample_view(mem, rows)
    sc = score_memory(model, prep, mem, view, pair_batch=50, progress=False)
    tg = torch.from_numpy(targets_of(prep, rows))
    ids, mask = make_prompt_batch(prep, rows)
    with torch.no_grad():
        hidden, _ = model.lower(ids, mask)
        base = model.upper(hidden, mask, torch.zeros(len(rows), 1, 16), torch.zeros(len(rows), 1, dtype=torch.long))
        assert np.allclose(sc.base_logp, base.gather(1, tg.view(-1, 1)).squeeze(1).numpy(), atol=1e-5)
        assert np.array_equal(sc.base_rank, target_rank(base, tg).numpy())
        checked = 0
        for i in range(len(rows)):
            for j in range(int(view.n_mem[i])):
                if (i + j) % 5:
                    continue
                z = mem.Z[view.mem_idx[i, j]].view(1, 1, -1)
                lp = model.upper(hidden[i : i + 1], mask[i : i + 1], z, torch.ones(1, 1, dtype=torch.long))
                assert abs(float(lp[0, tg[i]]) - sc.logp[i, j]) < 1e-4
                assert int(target_rank(lp, tg[i : i + 1])[0]) == sc.rank[i, j]
                checked += 1
    assert checked > 20
    assert np.isnan(sc.logp[view.mem_idx < 0]).all() and (sc.rank[view.mem_idx < 0] == -1).all()


def test_labels_are_a_softmax_of_deltas_over_the_valid_memory():
    prep, model, mem, rows = _setup()
    view = sample_view(mem, rows)
    sc = score_memory(model, prep, mem, view, progress=False)
    has = view.n_mem > 0
    for kind in ("prob", "logp"):
        lab = make_labels(sc, kind, 0.1)
        assert np.allclose(lab[has].sum(1), 1.0, atol=1e-5)
        assert (lab[~view.mem_mask] == 0).all() and (lab[~has] == 0).all()
        d = deltas(sc, kind)
        i = int(np.nonzero(has)[0][0])
        n = int(view.n_mem[i])
        e = np.exp((d[i, :n] - d[i, :n].max()) / 0.1)
        assert np.allclose(lab[i, :n], e / e.sum(), atol=1e-5)
    # the printed Eq. 5 (raw probability deltas, tau = 1) is close to uniform: that is why tau is searched
    lab = make_labels(sc, "prob", 1.0)
    i = int(np.argmax(view.n_mem))
    assert lab[i, : view.n_mem[i]].max() < 1.5 / view.n_mem[i]
