"""Datasets and the paper's preparation protocol.

Formats (detected from the files in a directory):
  * MovieLens-100k: ``u.data`` (tab separated: user, item, rating, unix time) and ``u.item``
    (pipe separated, latin-1: item id | title | ...).
  * ml-latest / ml-latest-small: ``ratings.csv`` (userId,movieId,rating,timestamp) and ``movies.csv``
    (movieId,title,genres), UTF-8.
  * plain: ``interactions.csv`` (user,item,timestamp) and optionally ``items.csv`` (item,title).

Protocol (paper §5.1.1): each user's interactions are sorted by time with a stable tie-break (file
order), items with < 5 and users with < 20 interactions are dropped (repeated until stable), a sample
is (user, pos) with target ``seqs[u][pos]`` and history ``seqs[u][:pos]`` capped at the most recent
100; the prompt holds the last ``WINDOW`` items and the memory the older ones (up to ``MAX_MEMORY``).
Global time split: samples whose target lies in the last 10% of all interactions by time are test,
the 10% before that validation, the rest train.

MovieLens data may not be redistributed: nothing here writes it anywhere but into memory.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
import torch

PAD, BOS, UNK = 0, 1, 2
N_SPECIAL = 3
WINDOW = 10
MAX_HISTORY = 100
MAX_MEMORY = MAX_HISTORY - WINDOW  # 90
MIN_ITEM_COUNT = 5
MIN_USER_COUNT = 20
VALID_FRACTION = 0.1
TEST_FRACTION = 0.1


@dataclass
class Prepared:
    catalog_ids: list[str]  # external item ids; token = 3 + row
    titles: list[str]
    users: list[str]
    seqs: list[np.ndarray]  # per user: int64 item tokens, time-sorted, after filtering
    times: list[np.ndarray]  # per user: int64 unix seconds, same length as seqs[u]
    splits: dict[str, np.ndarray]  # 'train'|'valid'|'test' -> int64 [n, 2] rows (user_index, pos)
    fingerprint: str
    name: str
    meta: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.catalog_ids)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.seqs))


# ---------------------------------------------------------------------------------------------
# Reading raw files into (user, item, time) columns, in file order.


def _read_ml100k(path: str) -> tuple[list[str], list[str], np.ndarray, dict[str, str]]:
    users, items, times = [], [], []
    with open(os.path.join(path, "u.data"), encoding="latin-1") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            users.append(parts[0])
            items.append(parts[1])
            times.append(int(parts[3]))
    titles: dict[str, str] = {}
    item_file = os.path.join(path, "u.item")
    if os.path.exists(item_file):
        with open(item_file, encoding="latin-1") as f:
            for line in f:
                parts = line.rstrip("\n").split("|")
                if len(parts) >= 2:
                    titles[parts[0]] = parts[1]
    return users, items, np.asarray(times, dtype=np.int64), titles


def _read_csv_pairs(
    inter_file: str, user_col: str, item_col: str, time_col: str, titles_file: str | None, title_item_col: str
) -> tuple[list[str], list[str], np.ndarray, dict[str, str]]:
    users, items, times = [], [], []
    with open(inter_file, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            users.append(row[user_col])
            items.append(row[item_col])
            times.append(int(float(row[time_col])))
    titles: dict[str, str] = {}
    if titles_file and os.path.exists(titles_file):
        with open(titles_file, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                titles[row[title_item_col]] = row.get("title", "") or ""
    return users, items, np.asarray(times, dtype=np.int64), titles


def detect_format(path: str) -> str:
    if os.path.exists(os.path.join(path, "u.data")):
        return "ml-100k"
    if os.path.exists(os.path.join(path, "ratings.csv")) and os.path.exists(os.path.join(path, "movies.csv")):
        return "ml-latest"
    if os.path.exists(os.path.join(path, "interactions.csv")):
        return "plain"
    raise FileNotFoundError(
        f"{path}: no u.data (ml-100k), ratings.csv+movies.csv (ml-latest) or interactions.csv (plain) found"
    )


def load_dataset(path: str, name: str | None = None) -> Prepared:
    """Reads a dataset directory (format detected from its files) and applies the protocol."""
    fmt = detect_format(path)
    if fmt == "ml-100k":
        users, items, times, titles = _read_ml100k(path)
    elif fmt == "ml-latest":
        users, items, times, titles = _read_csv_pairs(
            os.path.join(path, "ratings.csv"), "userId", "movieId", "timestamp",
            os.path.join(path, "movies.csv"), "movieId",
        )
    else:
        users, items, times, titles = _read_csv_pairs(
            os.path.join(path, "interactions.csv"), "user", "item", "timestamp",
            os.path.join(path, "items.csv"), "item",
        )
    return prepare(users, items, times, titles, name=name or os.path.basename(os.path.normpath(path)) or fmt)


# ---------------------------------------------------------------------------------------------
# Protocol.


def _id_sort_key(ids: list[str]):
    # Numeric ids sort numerically (MovieLens), anything else as strings; either way deterministic.
    if all(s.isdigit() for s in ids):
        return lambda s: (int(s), s)
    return lambda s: s


def prepare(
    users: list[str],
    items: list[str],
    times: np.ndarray,
    titles: dict[str, str] | None = None,
    name: str = "dataset",
    min_item: int = MIN_ITEM_COUNT,
    min_user: int = MIN_USER_COUNT,
) -> Prepared:
    titles = titles or {}
    n = len(users)
    assert len(items) == n and len(times) == n
    u_names, u_idx = np.unique(np.asarray(users, dtype=object).astype(str), return_inverse=True)
    i_names, i_idx = np.unique(np.asarray(items, dtype=object).astype(str), return_inverse=True)
    times = np.asarray(times, dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    # Iterate the two filters until neither removes anything (a k-core style filter).
    while True:
        ic = np.bincount(i_idx[keep], minlength=len(i_names))
        uc = np.bincount(u_idx[keep], minlength=len(u_names))
        new_keep = keep & (ic[i_idx] >= min_item) & (uc[u_idx] >= min_user)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    rows = np.nonzero(keep)[0]
    kept_items = sorted({str(i_names[i]) for i in np.unique(i_idx[rows])}, key=_id_sort_key(list(i_names)))
    kept_users = sorted({str(u_names[u]) for u in np.unique(u_idx[rows])}, key=_id_sort_key(list(u_names)))
    item_row = {iid: r for r, iid in enumerate(kept_items)}
    user_row = {uid: r for r, uid in enumerate(kept_users)}
    tok_of_old = np.full(len(i_names), -1, dtype=np.int64)
    for old, iid in enumerate(i_names):
        if str(iid) in item_row:
            tok_of_old[old] = N_SPECIAL + item_row[str(iid)]
    urow_of_old = np.full(len(u_names), -1, dtype=np.int64)
    for old, uid in enumerate(u_names):
        if str(uid) in user_row:
            urow_of_old[old] = user_row[str(uid)]

    r_user = urow_of_old[u_idx[rows]]
    r_tok = tok_of_old[i_idx[rows]]
    r_time = times[rows]
    # Stable sort by (user, time); ties keep file order (lexsort is stable, rows is in file order).
    order = np.lexsort((r_time, r_user))
    r_user, r_tok, r_time = r_user[order], r_tok[order], r_time[order]
    bounds = np.searchsorted(r_user, np.arange(len(kept_users) + 1))
    seqs = [r_tok[bounds[k] : bounds[k + 1]].copy() for k in range(len(kept_users))]
    tseq = [r_time[bounds[k] : bounds[k + 1]].copy() for k in range(len(kept_users))]
    cat_titles = [titles.get(iid, f"item {iid}") for iid in kept_items]
    return finalize(kept_items, cat_titles, kept_users, seqs, tseq, name)


def time_split(seqs: list[np.ndarray], times: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Global time split over all interactions, ties broken by (user, position) for determinism."""
    if not seqs:
        return {k: np.zeros((0, 2), dtype=np.int64) for k in ("train", "valid", "test")}
    us = np.concatenate([np.full(len(s), u, dtype=np.int64) for u, s in enumerate(seqs)])
    ps = np.concatenate([np.arange(len(s), dtype=np.int64) for s in seqs])
    ts = np.concatenate(times).astype(np.int64)
    order = np.lexsort((ps, us, ts))
    n = len(order)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    n_test = int(round(n * TEST_FRACTION))
    n_valid = int(round(n * VALID_FRACTION))
    train_end = n - n_test - n_valid
    valid_end = n - n_test
    sample = ps >= 1
    rows = np.stack([us, ps], axis=1)
    return {
        "train": rows[sample & (rank < train_end)],
        "valid": rows[sample & (rank >= train_end) & (rank < valid_end)],
        "test": rows[sample & (rank >= valid_end)],
    }


def fingerprint_of(catalog_ids: list[str], users: list[str], seqs: list[np.ndarray], times: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update("\x1f".join(catalog_ids).encode())
    h.update(b"\x1e")
    for uid, s, t in zip(users, seqs, times):
        h.update(uid.encode() + b"\x1f")
        h.update(np.ascontiguousarray(s, dtype="<i8").tobytes())
        h.update(np.ascontiguousarray(t, dtype="<i8").tobytes())
    return h.hexdigest()


def finalize(
    catalog_ids: list[str],
    titles: list[str],
    users: list[str],
    seqs: list[np.ndarray],
    times: list[np.ndarray],
    name: str,
    meta: dict | None = None,
) -> Prepared:
    seqs = [np.asarray(s, dtype=np.int64) for s in seqs]
    times = [np.asarray(t, dtype=np.int64) for t in times]
    return Prepared(
        catalog_ids=list(catalog_ids),
        titles=list(titles),
        users=list(users),
        seqs=seqs,
        times=times,
        splits=time_split(seqs, times),
        fingerprint=fingerprint_of(list(catalog_ids), list(users), seqs, times),
        name=name,
        meta=meta or {},
    )


# ---------------------------------------------------------------------------------------------
# Prompts and memory.


def memory_indices(pos: int) -> range:
    """Indices m of seqs[u] forming the memory of sample (u, pos): max(0, pos-100) <= m < pos-10.

    Memory element z[u][m] = llm_lower(bos + seqs[u][max(0, m-9) : m+1]).query, i.e. the prompt of the
    sample (u, m+1); the sample's own query z_t is z[u][pos-1].
    """
    return range(max(0, pos - MAX_HISTORY), max(0, pos - WINDOW))


def make_prompt_batch(
    prep: Prepared, rows: np.ndarray, window: int = WINDOW
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """input_ids, attention_mask (left padded) for rows[i] = (u, pos): bos + seqs[u][max(0,pos-window):pos]."""
    return prompts_from_windows([prep.seqs[int(u)][max(0, int(p) - window) : int(p)] for u, p in rows])


def prompts_from_windows(windows: list[np.ndarray]) -> tuple[torch.LongTensor, torch.LongTensor]:
    t = 1 + max((len(w) for w in windows), default=0)
    ids = np.zeros((len(windows), t), dtype=np.int64)
    mask = np.zeros((len(windows), t), dtype=np.int64)
    for i, w in enumerate(windows):
        n = len(w) + 1
        ids[i, t - n] = BOS
        ids[i, t - n + 1 :] = w
        mask[i, t - n :] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def targets_of(prep: Prepared, rows: np.ndarray) -> np.ndarray:
    """Catalog row (token - 3) of each sample's target."""
    return np.asarray([prep.seqs[int(u)][int(p)] - N_SPECIAL for u, p in rows], dtype=np.int64)


def train_item_counts(prep: Prepared) -> np.ndarray:
    """Interactions per catalog row that happen before the validation period (for popularity)."""
    counts = np.zeros(prep.n_items, dtype=np.int64)
    train = prep.splits["train"]
    # Position 0 of each user is never a target but is still a training-period interaction when the
    # user's first target is.
    firsts = {int(u) for u, p in train if p == 1}
    for u, p in train:
        counts[prep.seqs[int(u)][int(p)] - N_SPECIAL] += 1
    for u in firsts:
        counts[prep.seqs[u][0] - N_SPECIAL] += 1
    return counts
