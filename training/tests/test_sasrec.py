import numpy as np
import torch

from automr.synthetic import synthetic
from automr.evaluate import popularity_ranks
from automr.metrics import summarize
from automr.sasrec import SASRec, SASRecConfig, _training_segments, rank_rows, train_sasrec


def test_self_attention_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    m = SASRec(30, SASRecConfig(d=16, maxlen=8, dropout=0.0)).eval()
    a = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, -1] = 20  # change only the newest item
    ha, hb = m.encode(a), m.encode(b)
    assert torch.allclose(ha[:, :-1], hb[:, :-1], atol=1e-6)
    assert not torch.allclose(ha[:, -1], hb[:, -1])


def test_segments_cover_every_training_target_once():
    prep = synthetic(n_users=20, n_items=40, seed=2, min_len=30, max_len=160)
    cfg = SASRecConfig(maxlen=50)
    ins, pos, msk, users = _training_segments(prep, cfg)
    assert msk.sum() == len(prep.splits["train"])
    # every positive is the item right after its input position
    i = int(np.argmax(msk.sum(1)))
    u = users[i]
    items = prep.seqs[u] - 2
    row = pos[i][pos[i] > 0]
    assert np.isin(row, items).all()


def test_sasrec_learns_the_synthetic_sequences_better_than_popularity():
    """On the served ranking (items are consumed once, so consumed items are excluded for both)."""
    prep = synthetic(n_users=100, n_items=300, seed=4)
    cfg = SASRecConfig(d=32, maxlen=30, lr=3e-3, max_epochs=12, eval_every=3, patience=6, select_exclude=True)
    model, _ = train_sasrec(prep, cfg, log=lambda *_: None)
    test = prep.splits["test"]
    got = summarize(rank_rows(model, prep, test, exclude=True))
    pop = summarize(popularity_ranks(prep, test, exclude=True))
    assert got["recall@10"] > pop["recall@10"] + 0.05, (got, pop)
