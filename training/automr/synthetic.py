"""Seeded synthetic interactions with long-range structure, so that long-term memory matters.

The catalog is split into clusters of items. Each user holds 2-4 latent interests (clusters) and a
personal set of favourite items inside each. The user consumes items in bursts ("sessions") of one
interest, cycling through the interests; exploratory bursts in random other clusters sit between
them. An interest therefore leaves the 10-item window for a long stretch and then returns: at the
start of a returning burst the next item's cluster is absent from the last 10 items but present in
the older history, and which of the cluster's items the user favours is only visible there too.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from .data import N_SPECIAL, Prepared, finalize

DAY = 86_400
EPOCH = 1_600_000_000


def synthetic(
    n_users: int = 600,
    n_items: int = 300,
    seed: int = 0,
    n_clusters: int = 10,
    min_len: int = 40,
    max_len: int = 160,
    favourites: int = 6,
    p_favourite: float = 0.85,
    p_explore: float = 0.6,
) -> Prepared:
    rng = np.random.default_rng(seed)
    cluster_of = np.arange(n_items) * n_clusters // n_items  # contiguous blocks
    members = [np.nonzero(cluster_of == c)[0] for c in range(n_clusters)]
    # Within-cluster popularity (Zipf-like), fixed per catalog.
    pop = [1.0 / np.arange(1, len(m) + 1) ** 0.8 for m in members]
    pop = [p[rng.permutation(len(p))] / p.sum() for p in pop]

    seqs, times, users = [], [], []
    horizon = 200 * DAY
    for u in range(n_users):
        n_int = int(rng.integers(2, 5))
        interests = rng.choice(n_clusters, size=n_int, replace=False)
        fav = {
            int(c): rng.choice(members[c], size=min(favourites, len(members[c])), replace=False) for c in interests
        }
        length = int(rng.integers(min_len, max_len + 1))
        seq: list[int] = []
        k = int(rng.integers(n_int))
        while len(seq) < length:
            c = int(interests[k % n_int])
            k += 1
            burst = int(rng.integers(4, 11))
            for _ in range(burst):
                if rng.random() < p_favourite:
                    seq.append(int(rng.choice(fav[c])))
                else:
                    seq.append(int(rng.choice(members[c], p=pop[c])))
            if rng.random() < p_explore:
                others = np.setdiff1d(np.arange(n_clusters), interests)
                e = int(rng.choice(others))
                for _ in range(int(rng.integers(3, 7))):
                    seq.append(int(rng.choice(members[e], p=pop[e])))
        seq = seq[:length]
        start = EPOCH + int(rng.integers(0, horizon))
        gaps = DAY // 2 + rng.integers(0, DAY, size=length)
        t = start + np.cumsum(gaps)
        seqs.append(np.asarray(seq, dtype=np.int64) + N_SPECIAL)
        times.append(t.astype(np.int64))
        users.append(f"u{u:05d}")
    catalog = [f"{j:03d}" for j in range(n_items)]
    titles = [f"Item {j:03d} (cluster {int(cluster_of[j])})" for j in range(n_items)]
    meta = {"cluster_of": cluster_of, "seed": seed, "n_clusters": n_clusters}
    return finalize(catalog, titles, users, seqs, times, name="synthetic", meta=meta)


def write_plain_csv(prep: Prepared, path: str) -> None:
    """Writes a prepared dataset as the plain format (interactions.csv + items.csv)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "interactions.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "timestamp"])
        for uid, s, t in zip(prep.users, prep.seqs, prep.times):
            for tok, ts in zip(s, t):
                w.writerow([uid, prep.catalog_ids[int(tok) - N_SPECIAL], int(ts)])
    with open(os.path.join(path, "items.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["item", "title"])
        for iid, title in zip(prep.catalog_ids, prep.titles):
            w.writerow([iid, title])
