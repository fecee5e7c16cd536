"""Seeded synthetic interactions with long-range structure, so that long-term memory matters.

The catalog is split into clusters of items, and each cluster into styles. Each user holds latent interests (a
cluster and the user's style within it) and consumes items in bursts ("sessions") of one interest, cycling through
the interests; an exploratory burst follows every interest burst. An interest therefore leaves the 10-item window
for a long stretch and then returns: at the start of a returning burst the next item's cluster, and the user's
style in it, are absent from the last 10 items but present in the older history.

Like ratings, every item is consumed at most once per user (repeat rate 0): what was consumed is never the next
item, so consumed-item exclusion applies here as on MovieLens. A burst draws from the user's unconsumed style items
with probability p_style, otherwise from the cluster's unconsumed items by within-cluster popularity; an exhausted
pool falls back to the cluster, then to the whole catalog.

Two settings:
- DEFAULT_SYNTHETIC (the CI pipeline test, `--synthetic`, the committed bundle): two interests per user, and the
  exploratory bursts (3 items) browse dedicated "browse" clusters that are nobody's interest. The window then tells
  when an interest returns (after 3 browse items) and that it is the other one, but not which cluster or style that
  is: only the memory does. This is the returning-interest set on which retrieval must pay. (With exploration in
  other users' interest clusters and 3-6 items long, the window could not tell an exploration from a returning
  interest, and even the oracle element lifted a returning burst's first item by < 0.01 NDCG@10.)
- SYNTHETIC_ML_LATEST (`--write-synthetic-movielens`, the second dataset of docs/EVALUATION.md): 3-4 interests,
  exploration of 3-6 items in the user's non-interest clusters; kept as it was when that dataset was evaluated.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from .data import N_SPECIAL, Prepared, finalize

DAY = 86_400
EPOCH = 1_600_000_000

# The CI pipeline test, `--synthetic`, and the committed default bundle all use this one (see the module doc).
DEFAULT_SYNTHETIC = {
    "n_users": 600, "n_items": 300, "seed": 0,
    "min_interests": 2, "max_interests": 2, "browse_clusters": 2, "min_explore": 3, "max_explore": 3,
}
# `--write-synthetic-movielens`: the generator's earlier setting (no browse clusters, 3-4 interests).
SYNTHETIC_ML_LATEST = {"n_users": 600, "n_items": 300, "seed": 0}


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
    min_interests: int = 3,
    max_interests: int = 4,
    min_explore: int = 3,
    max_explore: int = 6,
    browse_clusters: int = 0,
) -> Prepared:
    """browse_clusters > 0: the last that many clusters are nobody's interest and every exploratory burst browses one
    of them; 0: exploration goes to a random cluster outside the user's interests."""
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
        n_int = int(rng.integers(min_interests, max_interests + 1))
        interests = rng.choice(n_clusters - browse_clusters, size=n_int, replace=False)
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
                if browse_clusters:
                    e = int(rng.integers(n_clusters - browse_clusters, n_clusters))
                else:
                    e = int(rng.choice(np.setdiff1d(np.arange(n_clusters), interests)))
                for _ in range(int(rng.integers(min_explore, max_explore + 1))):
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
    meta = {"cluster_of": cluster_of, "style_of": style_of, "seed": seed, "n_clusters": n_clusters,
            "browse_clusters": browse_clusters}
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
