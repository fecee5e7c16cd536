"""Helpers on synthetic data shared by the tests."""

import numpy as np

from automr.data import N_SPECIAL, WINDOW, memory_indices


def returning_rows(prep, n=400, split="test"):
    """Samples whose target's cluster is absent from the last 10 items but present in memory, with
    the prompt row (u, m+1) of the newest same-cluster memory element m (its z is lower's query there)."""
    cl = prep.meta["cluster_of"]
    rows, mem_rows = [], []
    for u, p in prep.splits[split]:
        s = prep.seqs[u] - N_SPECIAL
        if cl[s[p]] in set(cl[s[max(0, p - WINDOW) : p]]):
            continue
        ms = [m for m in memory_indices(int(p)) if cl[s[m]] == cl[s[p]]]
        if ms:
            rows.append((int(u), int(p)))
            mem_rows.append((int(u), ms[-1] + 1))
        if len(rows) == n:
            break
    return np.array(rows, dtype=np.int64), np.array(mem_rows, dtype=np.int64)
