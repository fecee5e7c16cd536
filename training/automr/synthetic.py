"""Seeded synthetic interactions with long-range structure, so that long-term memory matters.

The catalog is split into clusters of items, and each cluster into styles. Each user holds 3-4 latent interests
(a cluster and the user's style within it) and consumes items in bursts ("sessions") of one interest, cycling
through the interests; an exploratory burst in a random other cluster follows every interest burst. An interest
therefore leaves the 10-item window for a long stretch and then returns: at the start of a returning burst the next
item's cluster, and the user's style in it, are absent from the last 10 items but present in the older history.

Like ratings, every item is consumed at most once per user (repeat rate 0): what was consumed is never the next
item, so consumed-item exclusion applies here as on MovieLens. A burst draws from the user's unconsumed style items
with probability p_style, otherwise from the cluster's unconsumed items by within-cluster popularity; an exhausted
pool falls back to the cluster, then to the whole catalog.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from .data import N_SPECIAL, Prepared, finalize

DAY = 86_400
EPOCH = 1_600_000_000

# The one synthetic setting: the CI pipeline test, `--synthetic`, and the committed default bundle all use it.
DEFAULT_SYNTHETIC = {"n_users": 600, "n_items": 300, "seed": 0}


def synthetic(
    n_users: int = DEFAULT_SYNTHETIC["n_users"],
    n_items: int = DEFAULT_SYNTHETIC["n_items"],
    seed: int = DEFAULT_SYNTHETIC["seed"],
    n_clusters: int = 10,
    styles: int = 3,
    min_len: int = 40,
    max_len: int = 120,
    p_style: float = 0.85,
    p_explore: float = 1.0,
) -> Prepared:
    rng = np.random.default_rng(seed)
    cluster_of = np.arange(n_items) * n_clusters // n_items  # contiguous blocks
    members = [np.nonzero(cluster_of == c)[0] for c in range(n_clusters)]
    style_of = np.zeros(n_items, dtype=np.int64)
    for m in members:
        style_of[m] = np.arange(len(m)) * styles // max(1, len(m))
    # Within-cluster popularity (Zipf-like), fixed per catalog.
    pop = np.zeros(n_items)
    for m in members:
        p = 1.0 / np.arange(1, len(m) + 1) ** 0.8
        pop[m] = p[rng.permutation(len(p))]

    def draw(pool: np.ndarray, used: np.ndarray) -> int | None:
        pool = pool[~used[pool]]
        if not len(pool):
            return None
        w = pop[pool] / pop[pool].sum()
        return int(rng.choice(pool, p=w))

    seqs, times, users = [], [], []
    horizon = 200 * DAY
    everything = np.arange(n_items)
    for u in range(n_users):
        n_int = int(rng.integers(3, 5))
        interests = rng.choice(n_clusters, size=n_int, replace=False)
        style = {int(c): int(rng.integers(styles)) for c in interests}
        # Items are consumed once, so a user can consume at most the whole catalog.
        length = min(int(rng.integers(min_len, max_len + 1)), n_items)
        used = np.zeros(n_items, dtype=bool)
        seq: list[int] = []

        def take(*pools: np.ndarray) -> None:
            for pool in pools:
                j = draw(pool, used)
                if j is not None:
                    used[j] = True
                    seq.append(j)
                    return

        k = int(rng.integers(n_int))
        while len(seq) < length:
            c = int(interests[k % n_int])
            k += 1
            mine = members[c][style_of[members[c]] == style[c]]
            for _ in range(int(rng.integers(4, 11))):
                if rng.random() < p_style:
                    take(mine, members[c], everything)
                else:
                    take(members[c], everything)
            if rng.random() < p_explore:
                e = int(rng.choice(np.setdiff1d(np.arange(n_clusters), interests)))
                for _ in range(int(rng.integers(3, 7))):
                    take(members[e], everything)
        seq = seq[:length]
        start = EPOCH + int(rng.integers(0, horizon))
        gaps = DAY // 2 + rng.integers(0, DAY, size=len(seq))
        t = start + np.cumsum(gaps)
        seqs.append(np.asarray(seq, dtype=np.int64) + N_SPECIAL)
        times.append(t.astype(np.int64))
        users.append(f"u{u:05d}")
    catalog = [f"{j:03d}" for j in range(n_items)]
    titles = [f"Item {j:03d} (cluster {int(cluster_of[j])}, style {int(style_of[j])})" for j in range(n_items)]
    meta = {"cluster_of": cluster_of, "style_of": style_of, "seed": seed, "n_clusters": n_clusters}
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
