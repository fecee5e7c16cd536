import numpy as np
import pytest

from automr.data import (
    BOS,
    MAX_HISTORY,
    N_SPECIAL,
    PAD,
    WINDOW,
    detect_format,
    load_dataset,
    make_prompt_batch,
    memory_indices,
    prepare,
)


def _write_ml100k(path, rows, titles):
    with open(path / "u.data", "w", encoding="latin-1") as f:
        for u, i, t in rows:
            f.write(f"{u}\t{i}\t4\t{t}\n")
    with open(path / "u.item", "w", encoding="latin-1") as f:
        for i, title in titles.items():
            f.write(f"{i}|{title}|01-Jan-1995||http://x|0|1\n")


def _toy_rows(rng, n_users=30, n_items=40, per_user=25):
    rows = []
    for u in range(1, n_users + 1):
        t = 1000 + u
        for _ in range(per_user):
            t += int(rng.integers(0, 3))  # many equal timestamps
            rows.append((u, int(rng.integers(1, n_items + 1)), t))
    return rows


def test_ml100k_format_protocol_and_stable_ties(tmp_path):
    rng = np.random.default_rng(0)
    rows = _toy_rows(rng)
    rows.append((999, 1, 5))  # user with 1 interaction: dropped
    rows += [(u, 777, 2000) for u in (1, 2)]  # item with 2 interactions: dropped
    titles = {i: f"Caf\u00e9 {i}" for i in range(1, 41)} | {777: "rare"}
    _write_ml100k(tmp_path, rows, titles)
    assert detect_format(str(tmp_path)) == "ml-100k"
    prep = load_dataset(str(tmp_path))
    assert "999" not in prep.users and "777" not in prep.catalog_ids
    assert prep.titles[prep.catalog_ids.index("3")] == "Caf\u00e9 3"  # latin-1 decoded
    # Every user's sequence is time-sorted, ties in file order.
    for u, (s, t) in enumerate(zip(prep.seqs, prep.times)):
        assert np.all(np.diff(t) >= 0)
        raw = [(i, tt) for uu, i, tt in rows if str(uu) == prep.users[u] and str(i) in prep.catalog_ids]
        expect = [N_SPECIAL + prep.catalog_ids.index(str(i)) for i, _ in sorted(raw, key=lambda r: r[1])]
        assert list(s) == expect
    counts = np.bincount(np.concatenate(prep.seqs), minlength=N_SPECIAL + prep.n_items)[N_SPECIAL:]
    assert counts.min() >= 5 and min(len(s) for s in prep.seqs) >= 20
    # Deterministic.
    assert load_dataset(str(tmp_path)).fingerprint == prep.fingerprint


def test_filters_iterate_until_stable():
    # Round 1 drops item q and user D; that leaves item w with 1 interaction, so round 2 drops w and
    # then user C (2 left). A single pass would keep C.
    data = {"A": "xyz", "B": "xyz", "C": "xyw", "D": "wq"}
    users = [u for u, its in data.items() for _ in its]
    items = [i for its in data.values() for i in its]
    prep = prepare(users, items, np.arange(len(users)), min_item=2, min_user=3)
    assert prep.users == ["A", "B"] and prep.catalog_ids == ["x", "y", "z"]
    empty = prepare(users, items, np.arange(len(users)), min_item=9, min_user=3)
    assert empty.users == [] and all(len(v) == 0 for v in empty.splits.values())


def test_time_split_is_global_and_sized(tiny_synth):
    prep = tiny_synth
    n = prep.n_interactions
    sizes = {k: len(v) for k, v in prep.splits.items()}
    assert abs(sizes["test"] - 0.1 * n) <= 0.01 * n
    assert abs(sizes["valid"] - 0.1 * n) <= 0.01 * n
    tt = lambda rows: np.array([prep.times[u][p] for u, p in rows])  # noqa: E731
    assert tt(prep.splits["train"]).max() <= tt(prep.splits["valid"]).min()
    assert tt(prep.splits["valid"]).max() <= tt(prep.splits["test"]).min()
    for rows in prep.splits.values():
        assert rows.dtype == np.int64 and rows.shape[1] == 2 and rows[:, 1].min() >= 1


def test_ml_latest_and_plain_formats(tmp_path, tiny_synth):
    from automr.synthetic import write_plain_csv

    plain = tmp_path / "plain"
    write_plain_csv(tiny_synth, str(plain))
    assert detect_format(str(plain)) == "plain"
    back = load_dataset(str(plain), name="synthetic")
    assert back.catalog_ids == tiny_synth.catalog_ids
    assert all(np.array_equal(a, b) for a, b in zip(back.seqs, tiny_synth.seqs))

    latest = tmp_path / "latest"
    latest.mkdir()
    rng = np.random.default_rng(1)
    with open(latest / "ratings.csv", "w", encoding="utf-8") as f:
        f.write("userId,movieId,rating,timestamp\n")
        for u, i, t in _toy_rows(rng):
            f.write(f"{u},{i},4.0,{t}\n")
    with open(latest / "movies.csv", "w", encoding="utf-8") as f:
        f.write("movieId,title,genres\n")
        for i in range(1, 41):
            f.write(f'{i},"Film, {i} (2001)",Drama\n')
    assert detect_format(str(latest)) == "ml-latest"
    prep = load_dataset(str(latest))
    assert prep.n_items > 0 and prep.titles[0].startswith("Film, ")


def test_unknown_directory_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path))


def test_prompts_are_left_padded_and_memory_indices(tiny_synth):
    prep = tiny_synth
    rows = np.array([[0, 1], [0, 5], [1, 40]], dtype=np.int64)
    ids, mask = make_prompt_batch(prep, rows)
    assert ids.shape == (3, WINDOW + 1) and ids.dtype.is_floating_point is False
    assert ids[0].tolist() == [PAD] * 9 + [BOS, int(prep.seqs[0][0])]
    assert mask[0].tolist() == [0] * 9 + [1, 1]
    assert ids[2].tolist() == [BOS] + prep.seqs[1][30:40].tolist()
    assert list(memory_indices(5)) == []
    assert list(memory_indices(40)) == list(range(0, 30))
    assert list(memory_indices(250)) == list(range(250 - MAX_HISTORY, 240))
    assert len(memory_indices(250)) == 90
