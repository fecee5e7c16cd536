import numpy as np
import torch

from automr.data import MAX_MEMORY, make_prompt_batch, memory_indices
from automr.synthetic import synthetic
from automr.memory import build_memory, gather_memory, sample_view
from automr.model import ModelConfig, RecModel


def _setup():
    torch.manual_seed(0)
    prep = synthetic(n_users=12, n_items=160, seed=3, min_len=30, max_len=130)
    model = RecModel(ModelConfig(n_items=prep.n_items, d_model=16, n_layers=2, n_heads=2, split_layer=1)).eval()
    return prep, model


def test_memory_element_is_the_lower_query_of_the_window_ending_at_that_interaction():
    prep, model = _setup()
    mem = build_memory(model, prep, batch_size=37, progress=False)
    assert mem.Z.shape == (prep.n_interactions, 16)
    for u, m in [(0, 0), (0, 5), (3, 20), (7, len(prep.seqs[7]) - 1)]:
        ids, mask = make_prompt_batch(prep, np.array([[u, m + 1]]))
        _, q = model.lower(ids, mask)
        assert torch.allclose(mem.z(u, m), q[0], atol=1e-5)


def test_sample_view_follows_memory_indices_and_caps_at_90():
    prep, model = _setup()
    mem = build_memory(model, prep, progress=False)
    u = int(np.argmax([len(s) for s in prep.seqs]))
    assert len(prep.seqs[u]) > 101
    rows = np.array([[u, 1], [u, 11], [u, 12], [u, 60], [u, len(prep.seqs[u]) - 1]])
    v = sample_view(mem, rows)
    for i, (_, p) in enumerate(rows):
        r = memory_indices(int(p))
        assert v.n_mem[i] == len(r) <= MAX_MEMORY
        assert v.mem_pos[i, : len(r)].tolist() == list(r)
        assert v.query_idx[i] == mem.offsets[u] + p - 1
    assert v.n_mem.tolist()[:4] == [0, 1, 2, 50] and v.n_mem[-1] == 90
    m, mk = gather_memory(mem, v.mem_idx)
    assert torch.equal(m[3, 0], mem.z(u, 0)) and mk[3].sum() == 50 and m[3, 50:].abs().sum() == 0
