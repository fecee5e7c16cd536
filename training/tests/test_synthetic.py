import numpy as np

from automr.data import N_SPECIAL, WINDOW, memory_indices
from automr.synthetic import synthetic


def test_seeded_and_deterministic():
    a = synthetic(n_users=50, n_items=240, seed=11)
    b = synthetic(n_users=50, n_items=240, seed=11)
    c = synthetic(n_users=50, n_items=240, seed=12)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    m = a.meta
    assert a.n_items == 240 and a.titles[42] == f"Item 042 (cluster {m['cluster_of'][42]}, style {m['style_of'][42]})"
    assert all(np.all(np.diff(t) > 0) for t in a.times)


def _cluster_hits(prep):
    """For test samples: is the target's cluster in the last 10 items, and in the older memory?"""
    cl = prep.meta["cluster_of"]
    in_recent, in_memory = [], []
    for u, p in prep.splits["test"]:
        s = prep.seqs[u] - N_SPECIAL
        target = cl[s[p]]
        in_recent.append(target in set(cl[s[max(0, p - WINDOW) : p]]))
        in_memory.append(target in set(cl[s[list(memory_indices(int(p)))]]))
    return np.array(in_recent), np.array(in_memory)


def test_interests_leave_the_window_and_return(tiny_synth):
    recent, memory = _cluster_hits(tiny_synth)
    returning = ~recent & memory
    # A sizeable share of targets belongs to an interest absent from the last 10 items but in memory.
    assert returning.mean() > 0.08
    assert memory[~recent].mean() > 0.5


def test_long_term_oracle_beats_last_10(tiny_synth):
    """Recall@10 of a predictor that sees the whole history vs one that sees only the last 10 items: both rank the
    unconsumed items by how often their cluster occurs (items are consumed once), the long one also counting the
    older history."""
    prep = tiny_synth
    cl = prep.meta["cluster_of"]
    hits_short = hits_long = 0
    rows = prep.splits["test"]
    for u, p in rows:
        s = prep.seqs[u] - N_SPECIAL
        recent = np.bincount(cl[s[max(0, p - WINDOW) : p]], minlength=cl.max() + 1)[cl].astype(float)
        older = np.bincount(cl[s[max(0, p - 100) : p]], minlength=cl.max() + 1)[cl].astype(float)
        consumed = np.zeros(prep.n_items, dtype=bool)
        consumed[s[:p]] = True
        tiebreak = -np.arange(prep.n_items) * 1e-9
        top_short = np.argsort(-np.where(consumed, -np.inf, recent + tiebreak), kind="stable")[:10]
        # The long-term predictor keeps the short-term ranking and fills the rest from older interests.
        top_long = np.argsort(-np.where(consumed, -np.inf, recent + 1e-3 * older + tiebreak), kind="stable")[:10]
        hits_short += s[p] in top_short
        hits_long += s[p] in top_long
    assert hits_long > 1.05 * hits_short


def test_default_setting_returning_interest_is_known_only_from_memory():
    """DEFAULT_SYNTHETIC: two interests, exploration only in the browse clusters (nobody's interest), 3 items long.
    After 3 browse items an interest returns; its cluster is then absent from the last 10 items, present in memory."""
    from automr.synthetic import DEFAULT_SYNTHETIC

    prep = synthetic(**{**DEFAULT_SYNTHETIC, "n_users": 120})
    cl, n_cl, n_browse = prep.meta["cluster_of"], prep.meta["n_clusters"], prep.meta["browse_clusters"]
    assert n_browse == 2
    browse = cl >= n_cl - n_browse
    returns = in_window = in_memory = 0
    for s in prep.seqs:
        s = s - N_SPECIAL
        for p in range(13, len(s)):
            if browse[s[p]] or not browse[s[p - 3 : p]].all() or browse[s[p - 4]]:
                continue  # not the first item after a 3-item browse burst
            returns += 1
            in_window += cl[s[p]] in set(cl[s[max(0, p - WINDOW) : p]].tolist())
            in_memory += cl[s[p]] in set(cl[s[list(memory_indices(p))]].tolist())
    assert returns > 500
    assert in_window / returns < 0.05 and in_memory / returns > 0.9
