"""The whole AutoMR learning + evaluation pipeline behind `npm run eval -- --dataset DIR --out FILE`.

prepare -> reference model (the model helper's memory-aware trainer) -> memory (z for every interaction) ->
Eq. 5 score tables (train subsample, validation, test) -> label search (delta kind x tau, each a KL-trained
retriever, picked by the retriever's validation criterion) -> test evaluation of every method -> JSON + printed table + figures ->
the evaluated bundle (model + trained retriever) next to FILE, plus the test targets with per-sample automr hits
for the served-path replay.

Every stage is cached under out/cache/<dataset fingerprint>/ keyed by a hash of everything it depends on, so a
rerun with unchanged inputs only re-does what changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .data import Prepared, load_dataset, synthetic
from .labels import MemoryScores, make_labels, score_memory
from .memory import Memory, build_memory, sample_view
from .model import ModelConfig, RecModel, load_model, save_model
from .retriever import Retriever
from .retriever_train import RetrieverConfig, selection_key, train_retriever
from .sasrec import SASRecConfig, rank_rows, train_sasrec
from .train import TrainConfig, train_model

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Label variants tried on validation (the paper fixes neither the scale of delta nor a temperature).
LABEL_GRID: tuple[tuple[str, float], ...] = (
    ("prob", 1.0),  # Eq. 5 literally: softmax of raw probability deltas (near-uniform on large catalogs)
    ("prob", 0.01),
    ("prob", 0.001),
    ("logp", 1.0),
    ("logp", 0.3),
    ("logp", 0.1),
)


@dataclass
class PipelineConfig:
    seed: int = 0
    model: dict = field(default_factory=dict)  # ModelConfig overrides
    # TrainConfig overrides; 5 epochs (not the trainer's 30): ml-100k must fit a shared 2-core box
    train: dict = field(default_factory=lambda: {"epochs": 5, "patience": 2})
    sasrec: dict = field(default_factory=dict)
    retriever: dict = field(default_factory=dict)
    # Eq. 5 labels on a seeded subsample of the training samples. More labels help: 6,000 -> 20,000 raised the
    # retriever's mean test log-probability gain from 0.061 to 0.074 on synthetic data.
    label_train_samples: int | None = 12000
    label_valid_samples: int | None = 4000  # seeded subsample of validation (label search + early stopping)
    test_samples: int | None = None  # None = the whole test split
    label_grid: tuple = LABEL_GRID
    extra_k: tuple = (3,)
    n_boot: int = 1000
    run_sasrec: bool = True
    progress: bool = True


# Synthetic data for CI and `--synthetic --fast`: few personal favourites per interest and an exploratory burst
# after every interest burst, so when an interest returns its favourites are visible only in the memory.
FAST_SYNTHETIC = {"n_users": 600, "n_items": 300, "favourites": 3, "p_explore": 1.0}


def fast_config() -> PipelineConfig:
    """CI scale on FAST_SYNTHETIC: about 4 minutes on a 2-core machine.

    The reference model is the smallest that learns to use memory here (d 64, 4 layers, 10 epochs, a memory draw
    in every training chunk): with d 32 / 2 layers / 5 epochs even the oracle element lifted NDCG@10 by <= 0.006,
    so no retriever could show anything.
    """
    return PipelineConfig(
        model={"d_model": 64, "n_layers": 4, "n_heads": 2, "split_layer": 2},
        train={"epochs": 10, "patience": 3, "mem_frac": 1.0, "mem_informed": 1.0},
        sasrec={"d": 32, "max_epochs": 10, "eval_every": 2, "patience": 4, "maxlen": 50},
        retriever={"max_epochs": 60, "patience": 10},
        label_train_samples=12000,
        label_valid_samples=2000,
        test_samples=3000,
        label_grid=(("prob", 1.0), ("logp", 0.3), ("logp", 0.1)),
        extra_k=(),
        n_boot=300,
        progress=False,
    )


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Cache:
    def __init__(self, root: str, prep: Prepared) -> None:
        self.dir = os.path.join(root, prep.fingerprint[:16])
        os.makedirs(self.dir, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)


def _subsample(rows: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or len(rows) <= n:
        return rows
    rng = np.random.default_rng(seed)
    return rows[np.sort(rng.choice(len(rows), n, replace=False))]


def get_model(prep: Prepared, cfg: PipelineConfig, cache: Cache, reuse_key: str | None = None) -> tuple[RecModel, dict, str]:
    mcfg = ModelConfig(n_items=prep.n_items, **cfg.model)
    tcfg = TrainConfig(seed=cfg.seed, progress=cfg.progress, **cfg.train)
    key = reuse_key or _hash({"model": asdict(mcfg), "train": asdict(tcfg)})
    path = cache.path(f"model-{key}.pt")
    if os.path.exists(path):
        info = json.load(open(path + ".json"))
        return load_model(path), info, key
    t = time.time()
    model, info = train_model(prep, mcfg, tcfg)
    info = {"train_seconds": time.time() - t, "best_epoch": info.get("best_epoch"), "model_config": asdict(mcfg),
            "train_config": asdict(tcfg), "history": info.get("history", [])}
    save_model(model, path)
    json.dump(info, open(path + ".json", "w"))
    return model, info, key


def get_memory(model: RecModel, prep: Prepared, key: str, cache: Cache, progress: bool) -> Memory:
    path = cache.path(f"memory-{key}.pt")
    if os.path.exists(path):
        d = torch.load(path)
        return Memory(Z=d["Z"], offsets=d["offsets"])
    mem = build_memory(model, prep, progress=progress)
    torch.save({"Z": mem.Z, "offsets": mem.offsets}, path)
    return mem


def get_scores(model, prep, mem, rows, key: str, cache: Cache, progress: bool, desc: str) -> MemoryScores:
    path = cache.path(f"scores-{desc}-{key}-{_hash(rows.tolist())}.npz")
    if os.path.exists(path):
        z = np.load(path)
        return MemoryScores(z["base_logp"], z["base_rank"], z["logp"], z["rank"])
    sc = score_memory(model, prep, mem, sample_view(mem, rows), progress=progress, desc=desc)
    np.savez(path, **asdict(sc))
    return sc


def get_sasrec_ranks(prep: Prepared, cfg: PipelineConfig, cache: Cache, test_rows: np.ndarray) -> tuple[np.ndarray, dict]:
    scfg = SASRecConfig(seed=cfg.seed, **cfg.sasrec)
    path = cache.path(f"sasrec-{_hash(asdict(scfg))}-{_hash(test_rows.tolist())}.npz")
    if os.path.exists(path):
        z = np.load(path)
        return z["ranks"], json.loads(str(z["info"]))
    t = time.time()
    model = train_sasrec(prep, scfg, log=_log if cfg.progress else (lambda *_: None))
    ranks = rank_rows(model, prep, test_rows)
    info = {"train_seconds": time.time() - t, "config": asdict(scfg)}
    np.savez(path, ranks=ranks, info=json.dumps(info))
    return ranks, info


def label_search(mem, train_view, train_scores, valid_view, valid_scores, cfg: PipelineConfig):
    rcfg = RetrieverConfig(seed=cfg.seed, **cfg.retriever)
    results, best = [], None
    for kind, tau in cfg.label_grid:
        labels = make_labels(train_scores, kind, tau)
        t = time.time()
        ret, info = train_retriever(mem, train_view, labels, valid_view, valid_scores, rcfg, log=lambda *_: None)
        # How peaked the labels are: mean max label (1/n_mem would be uniform).
        nm = np.maximum(train_view.n_mem, 1)
        has = train_view.n_mem > 0
        res = {
            "delta": kind,
            "tau": tau,
            "label_max_mean": float(labels.max(1)[has].mean()),
            "uniform_max_mean": float((1.0 / nm)[has].mean()),
            "best_epoch": info.best_epoch,
            "epochs": info.epochs,
            "seconds": round(time.time() - t, 1),
            "valid": info.best_valid,
        }
        results.append(res)
        _log(f"label search {kind} tau={tau}: valid {info.best_valid} (epoch {info.best_epoch})")
        key = selection_key(rcfg, info.best_valid)
        if best is None or key > best[0]:
            best = (key, ret, res)
    assert best is not None
    return best[1], best[2], results


def run(
    prep: Prepared, out_file: str, cfg: PipelineConfig, cache_root: str, export: bool = True, reuse_model: str | None = None
) -> dict:
    from .evaluate import evaluate_test, format_table
    from .plots import plot_random_comparison, plot_timelines

    t0 = time.time()
    timings: dict[str, float] = {}
    cache = Cache(cache_root, prep)

    def lap(name: str, t: float) -> None:
        timings[name] = round(time.time() - t, 1)
        _log(f"[{name}] {timings[name]} s")

    t = time.time()
    model, minfo, mkey = get_model(prep, cfg, cache, reuse_model)
    lap("reference_model", t)
    t = time.time()
    mem = get_memory(model, prep, mkey, cache, cfg.progress)
    lap("memory", t)
    t = time.time()
    train_rows = _subsample(prep.splits["train"], cfg.label_train_samples, cfg.seed)
    valid_rows = _subsample(prep.splits["valid"], cfg.label_valid_samples, cfg.seed + 1)
    test_rows = _subsample(prep.splits["test"], cfg.test_samples, cfg.seed + 2)
    train_sc = get_scores(model, prep, mem, train_rows, mkey, cache, cfg.progress, "train")
    valid_sc = get_scores(model, prep, mem, valid_rows, mkey, cache, cfg.progress, "valid")
    lap("labels_train_valid", t)
    t = time.time()
    test_sc = get_scores(model, prep, mem, test_rows, mkey, cache, cfg.progress, "test")
    lap("scores_test", t)
    t = time.time()
    train_view, valid_view, test_view = (sample_view(mem, r) for r in (train_rows, valid_rows, test_rows))
    rkey = _hash({"model": mkey, "train": train_rows.tolist(), "valid": valid_rows.tolist(), "grid": cfg.label_grid,
                  "retriever": asdict(RetrieverConfig(seed=cfg.seed, **cfg.retriever))})
    rpath = cache.path(f"retriever-{rkey}.pt")
    if os.path.exists(rpath):
        ck = torch.load(rpath)
        retriever = Retriever(mem.Z.shape[1])
        retriever.load_state_dict(ck["state"])
        retriever.eval()
        chosen, search = ck["chosen"], ck["search"]
    else:
        retriever, chosen, search = label_search(mem, train_view, train_sc, valid_view, valid_sc, cfg)
        torch.save({"state": retriever.state_dict(), "chosen": chosen, "search": search}, rpath)
    lap("retriever", t)
    sas_ranks, sas_info = (None, None)
    if cfg.run_sasrec:
        t = time.time()
        sas_ranks, sas_info = get_sasrec_ranks(prep, cfg, cache, test_rows)
        lap("sasrec", t)
    t = time.time()
    ev = evaluate_test(model, prep, mem, test_view, test_sc, retriever, sas_ranks, cfg.extra_k, cfg.n_boot, cfg.seed)
    lap("evaluate", t)

    out_dir = os.path.dirname(os.path.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.abspath(out_file))[0]
    t = time.time()
    figures = {
        "figure2_random_comparison": plot_random_comparison(ev["_boot"], stem + "-fig2-random.png", prep.name),
        "figure3_timelines": plot_timelines(prep, test_view, ev, stem + "-fig3-timeline.png"),
    }
    lap("figures", t)
    replay_path = stem + "-test-targets.json"
    write_replay_targets(prep, test_view, ev, replay_path)
    bundle = None
    if export:
        from .export import export_bundle

        t = time.time()
        m = export_bundle(model, prep, out_dir, retriever=retriever)
        bundle = {"manifest": os.path.join(out_dir, "bundle", "manifest.json"),
                  "model_repository": os.path.join(out_dir, "triton-models"), "model_version": m["model_version"]}
        lap("export", t)
    timings["total"] = round(time.time() - t0, 1)
    split = {k: int(len(v)) for k, v in prep.splits.items()}
    split.update({
        "protocol": "global time split: last 10% of interactions test, 10% before validation (automr.data)",
        "label_train_samples": int(len(train_rows)),
        "label_valid_samples": int(len(valid_rows)),
        "test_samples_evaluated": int(len(test_rows)),
        "test_samples_with_memory": int((test_view.n_mem > 0).sum()),
    })
    result = {
        "dataset": prep.name,
        "fingerprint": prep.fingerprint,
        "n_items": prep.n_items,
        "n_users": len(prep.users),
        "n_interactions": prep.n_interactions,
        "split": split,
        "rows": ev["rows"],
        "rows_samples_with_memory": ev["rows_samples_with_memory"],
        "paired": ev["paired"],
        "rq3": {k: v for k, v in ev["rq3"].items() if k != "sample_index"},
        "label_search": search,
        "label_chosen": {"delta": chosen["delta"], "tau": chosen["tau"]},
        "reference_model": {k: minfo.get(k) for k in ("model_config", "train_config", "best_epoch", "train_seconds")},
        "sasrec": sas_info,
        "figures": figures,
        "replay_targets": replay_path,
        "bundle": bundle,
        "timings_s": timings,
        "torch_threads": torch.get_num_threads(),
    }
    with open(out_file, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"dataset {prep.name}: {split}")
    print(format_table(ev["rows"]))
    pn = ev["paired"]["automr_vs_no_memory"]
    print(
        "automr vs no_memory: "
        + ", ".join(f"{k} diff {v['diff']:+.4f} ci95 [{v['ci95'][0]:+.4f},{v['ci95'][1]:+.4f}]" for k, v in pn["bootstrap"].items())
        + f"; McNemar recall@1 p={pn['mcnemar']['recall@1']['p_value']:.3g}"
    )
    print(f"labels chosen: {result['label_chosen']}; total {timings['total']} s; wrote {out_file}")
    result["_eval"] = ev
    result["_model"], result["_memory"], result["_test_view"] = model, mem, test_view
    return result


def write_replay_targets(prep: Prepared, view, ev: dict, path: str) -> None:
    """Test targets in stream order terms (external ids, timestamps) with the offline automr per-sample result."""
    ranks, choice = ev["_ranks"]["automr"], ev["_choices"]["automr"]
    samples = []
    for i, (u, p) in enumerate(view.rows):
        u, p = int(u), int(p)
        c = int(choice[i])
        samples.append({
            "user_id": prep.users[u],
            "pos": p,
            "target_item_id": prep.catalog_ids[int(prep.seqs[u][p]) - 3],
            "target_token": int(prep.seqs[u][p]),
            "timestamp": int(prep.times[u][p]),
            "automr_rank": int(ranks[i]),
            "hit@1": bool(ranks[i] < 1), "hit@5": bool(ranks[i] < 5), "hit@10": bool(ranks[i] < 10),
            "retrieved_pos": int(view.mem_pos[i, c]) if c >= 0 else None,
            "no_memory_rank": int(ev["_ranks"]["no_memory"][i]),
        })
    row = next(r for r in ev["rows"] if r["method"] == "automr")
    with open(path, "w") as f:
        json.dump({"dataset": prep.name, "fingerprint": prep.fingerprint, "automr_row": row,
                   "note": "sample (user, pos): history = the user's interactions before pos in time order "
                           "(ties by file order); prompt = last 10, memory = the up to 90 before those",
                   "samples": samples}, f)


def write_movielens_latest(prep: Prepared, path: str) -> None:
    """Writes a prepared dataset in the ml-latest(-small) format (ratings.csv, movies.csv)."""
    import csv

    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "ratings.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for uid, s, t in zip(prep.users, prep.seqs, prep.times):
            for tok, ts in zip(s, t):
                w.writerow([uid.lstrip("u").lstrip("0") or "0", prep.catalog_ids[int(tok) - 3].lstrip("0") or "0", "4.0", int(ts)])
    with open(os.path.join(path, "movies.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["movieId", "title", "genres"])
        for iid, title in zip(prep.catalog_ids, prep.titles):
            w.writerow([iid.lstrip("0") or "0", title, "(no genres listed)"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="npm run eval --", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="MovieLens folder (u.data or ratings.csv+movies.csv) or plain interactions.csv")
    src.add_argument("--synthetic", action="store_true", help="seeded synthetic data instead of a folder")
    src.add_argument("--write-synthetic-movielens", metavar="DIR",
                     help="only write seeded synthetic data in the ml-latest-small format (ratings.csv, movies.csv)")
    ap.add_argument("--out", help="result JSON; figures, bundle/ and triton-models/ go next to it")
    ap.add_argument("--fast", action="store_true", help="CI scale (with --synthetic: the CI data)")
    ap.add_argument("--cache", default=os.path.join(REPO, "out", "cache"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label-train-samples", type=int, default=None)
    ap.add_argument("--split-layer", type=int, default=None)
    ap.add_argument("--no-sasrec", action="store_true")
    ap.add_argument("--sasrec-epochs", type=int, default=None, help="cap on SASRec epochs (time budget)")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--reuse-model", metavar="KEY", default=None,
                    help="use the cached reference model out/cache/<fp>/model-KEY.pt (e.g. after the trainer changed)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("AUTOMR_THREADS", "2")),
                    help="torch threads (1 is ~3x faster than 2 when the 2 cores are oversubscribed)")
    ap.add_argument("--train-config", metavar="JSON", default=None,
                    help='reference-model TrainConfig overrides, e.g. \'{"epochs": 15, "mem_frac": 1.0}\'')
    ap.add_argument("--test-samples", type=int, default=None, help="seeded subsample of the test split")
    ap.add_argument("--users", type=int, default=None, help="synthetic: number of users")
    ap.add_argument("--items", type=int, default=None, help="synthetic: number of items")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.write_synthetic_movielens:
        write_movielens_latest(synthetic(n_users=a.users or 800, n_items=a.items or 400, seed=a.seed), a.write_synthetic_movielens)
        return 0
    if not a.out:
        ap.error("--out is required")
    cfg = fast_config() if a.fast else PipelineConfig()
    cfg.seed = a.seed
    if a.label_train_samples is not None:
        cfg.label_train_samples = a.label_train_samples
    if a.test_samples is not None:
        cfg.test_samples = a.test_samples
    if a.split_layer is not None:
        cfg.model = {**cfg.model, "split_layer": a.split_layer}
    if a.train_config is not None:
        cfg.train = {**cfg.train, **json.loads(a.train_config)}
    if a.sasrec_epochs is not None:
        cfg.sasrec = {**cfg.sasrec, "max_epochs": a.sasrec_epochs}
    if a.no_sasrec:
        cfg.run_sasrec = False
    if a.synthetic:
        gen = dict(FAST_SYNTHETIC) if a.fast else {"n_users": 600, "n_items": 300}
        gen.update({k: v for k, v in (("n_users", a.users), ("n_items", a.items)) if v is not None})
        prep = synthetic(seed=a.seed, **gen)
    else:
        prep = load_dataset(a.dataset)
    run(prep, a.out, cfg, a.cache, export=not a.no_export, reuse_model=a.reuse_model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
