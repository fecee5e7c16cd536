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
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from .data import WINDOW, Prepared, load_dataset
from .exclusion import REPEAT_RATE_THRESHOLD, decide_exclusion, repeat_rate
from .labels import MemoryScores, make_labels, score_memory
from .memory import Memory, build_memory, sample_view
from .model import ModelConfig, RecModel, load_model, save_model
from .retriever import Retriever
from .metrics import summarize
from .retriever_train import RetrieverConfig, ranks_of_choice, retriever_scores, selection_key, top_k_slots, train_retriever
from .synthetic import DEFAULT_SYNTHETIC, SYNTHETIC_ML_LATEST, synthetic
from .sasrec import SASRec, SASRecConfig, rank_rows, train_sasrec
from .train import TrainConfig, train_model

LONG_WINDOW = 100  # the long_context baseline's prompt: the whole 100-item history the memory is drawn from
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
    train: dict = field(default_factory=dict)  # TrainConfig overrides (epochs are chosen on validation)
    try_exclusion_training: bool = True  # with the exclusion policy on, also train with the exclusion loss
    run_long_context: bool = True
    sasrec: dict = field(default_factory=dict)
    # SASRec's validation search (epochs are chosen inside each run): dropout is what its paper tunes per dataset;
    # the context length is searched over the two prompts the transformer rows use (WINDOW, as no_memory is trained
    # on chunks of 10, and LONG_WINDOW): on timestamp-ordered rating logs the long context can hurt (long_context).
    sasrec_grid: tuple = tuple(
        {"dropout": p, "maxlen": t} for t in (LONG_WINDOW, WINDOW) for p in (0.2, 0.5)
    )
    retriever: dict = field(default_factory=dict)
    # Eq. 5 labels on a seeded subsample of the training samples. More labels help: 6,000 -> 20,000 raised the
    # retriever's mean test log-probability gain from 0.061 to 0.074 on synthetic data.
    label_train_samples: int | None = 12000
    label_valid_samples: int | None = 4000  # seeded subsample of validation (label search + early stopping)
    test_samples: int | None = None  # None = the whole test split
    label_grid: tuple = LABEL_GRID
    extra_k: tuple = (3,)
    decision_samples: int | None = 4000  # held-out validation samples for the memory_k decision
    run_foreign_oracle: bool = True
    n_boot: int = 1000
    run_sasrec: bool = True
    progress: bool = True
    # Independent model trainings (reference variants, long_context, SASRec grid points) run in this many worker
    # processes of one torch thread each before the pipeline goes on; on 2 cores two 1-thread runs finish about
    # twice as fast as one after the other with 2 threads (small models do not scale across threads).
    jobs: int = 1


def fast_config() -> PipelineConfig:
    """CI scale on the default synthetic data (automr.synthetic.DEFAULT_SYNTHETIC).

    The reference model is the smallest that learns to use memory here (d 64, 4 layers, a memory draw in every
    training chunk): with d 32 / 2 layers even the oracle element lifted NDCG@10 by <= 0.006, so no retriever could
    show anything. The baselines that need their own training (long_context) or a second score table (the foreign
    oracle), and the second reference model with the exclusion loss, are left to the full run.
    """
    return PipelineConfig(
        model={"d_model": 64, "n_layers": 4, "n_heads": 2, "split_layer": 2},
        train={"epochs": 10, "patience": 3, "mem_frac": 1.0, "mem_informed": 1.0, "valid_samples": 2000},
        sasrec={"d": 32, "max_epochs": 12, "eval_every": 3, "patience": 6, "maxlen": 50},
        sasrec_grid=({"dropout": 0.2},),
        retriever={"max_epochs": 60, "patience": 10},
        label_train_samples=12000,
        label_valid_samples=2000,
        decision_samples=2000,
        test_samples=3000,
        label_grid=(("prob", 1.0), ("logp", 0.3), ("logp", 0.1)),
        extra_k=(),
        n_boot=300,
        progress=False,
        try_exclusion_training=False,
        run_long_context=False,
        run_foreign_oracle=False,
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


def get_model(
    prep: Prepared, mcfg: ModelConfig, tcfg: TrainConfig, cache: Cache, reuse_key: str | None = None, desc: str = "model"
) -> tuple[RecModel, dict, str]:
    # progress and the wall-clock budget do not change what a finished run means: not part of the key
    key = reuse_key or _hash({"model": asdict(mcfg), "train": {**asdict(tcfg), "progress": None, "time_budget_s": None}})
    path = cache.path(f"model-{key}.pt")
    if os.path.exists(path):
        info = json.load(open(path + ".json"))
        _log(f"{desc}: cached {path}")
        return load_model(path), info, key
    _log(f"{desc}: training (at most {tcfg.epochs} epochs, patience {tcfg.patience}, budget {tcfg.time_budget_s} s)")
    t = time.time()
    model, info = train_model(prep, mcfg, tcfg)
    info = {"train_seconds": time.time() - t, "best_epoch": info.get("best_epoch"), "best_valid": info.get("best_valid"),
            "stopped_by": info.get("stopped_by"), "model_config": asdict(mcfg), "train_config": asdict(tcfg),
            "history": info.get("history", [])}
    save_model(model, path)
    json.dump(info, open(path + ".json", "w"))
    return model, info, key


def reference_configs(prep: Prepared, cfg: PipelineConfig, exclude: bool) -> list[tuple[ModelConfig, TrainConfig, str]]:
    """The reference variants to train: the plain loss, and with the exclusion policy on also the exclusion loss."""
    mcfg = ModelConfig(n_items=prep.n_items, **cfg.model)
    return [
        (mcfg, TrainConfig(**{"seed": cfg.seed, "progress": cfg.progress, **cfg.train, "exclude": train_ex,
                              "select_exclude": exclude}),
         f"reference model (exclusion loss {'on' if train_ex else 'off'})")
        for train_ex in ([False, True] if exclude and cfg.try_exclusion_training else [False])
    ]


def get_reference(
    prep: Prepared, cfg: PipelineConfig, cache: Cache, exclude: bool, reuse_key: str | None = None
) -> tuple[RecModel, dict, str, list[dict]]:
    """The reference model; with the exclusion policy on, trained with and without the exclusion loss and the one
    with the better validation metric on the served (excluded) ranking kept."""
    tried, best = [], None
    for mcfg, tcfg, desc in reference_configs(prep, cfg, exclude):
        train_ex = tcfg.exclude
        model, info, key = get_model(prep, mcfg, tcfg, cache, reuse_key if not train_ex else None, desc=desc)
        tried.append({"trained_with_exclusion": train_ex, "best_epoch": info.get("best_epoch"),
                      "valid_selection_metric": info.get("best_valid"), "train_seconds": round(info["train_seconds"], 1),
                      "stopped_by": info.get("stopped_by"), "key": key})
        if best is None or (info.get("best_valid") or -1) > (best[1].get("best_valid") or -1):
            best = (model, info, key)
    assert best is not None
    return best[0], best[1], best[2], tried


def long_context_configs(prep: Prepared, cfg: PipelineConfig, exclude: bool, trained_ex: bool):
    mcfg = ModelConfig(n_items=prep.n_items, **{**cfg.model, "max_len": LONG_WINDOW + 1})
    # Same targets per step as the reference (LONG_WINDOW/WINDOW times fewer prompts per batch).
    bs = max(8, TrainConfig(**cfg.train).batch_size * WINDOW // LONG_WINDOW)
    tcfg = TrainConfig(**{"seed": cfg.seed, "progress": cfg.progress, **cfg.train, "window": LONG_WINDOW,
                          "batch_size": bs, "mem_frac": 0.0, "exclude": trained_ex, "select_exclude": exclude})
    return mcfg, tcfg


def get_long_context(prep: Prepared, cfg: PipelineConfig, cache: Cache, exclude: bool, trained_ex: bool):
    """The long_context baseline: the reference architecture with a LONG_WINDOW-item prompt and no memory."""
    mcfg, tcfg = long_context_configs(prep, cfg, exclude, trained_ex)
    return get_model(prep, mcfg, tcfg, cache, desc="long_context model")


def _training_tasks(prep: Prepared, cfg: PipelineConfig, exclude: bool) -> list[tuple]:
    """Every model training the pipeline will ask for, as picklable (kind, configs) tasks; each caches its result."""
    tasks: list[tuple] = [("model", m, replace(t, progress=False), d) for m, t, d in reference_configs(prep, cfg, exclude)]
    if cfg.run_long_context:
        lm, lt = long_context_configs(prep, cfg, exclude, exclude and cfg.try_exclusion_training)
        tasks.append(("model", lm, replace(lt, progress=False), "long_context model"))
    if cfg.run_sasrec:
        tasks.extend(("sasrec", g, None, "sasrec") for g in sasrec_configs(cfg, exclude))
    return tasks


def _train_task(prep: Prepared, cache: Cache, task: tuple) -> str:
    torch.set_num_threads(1)
    kind, a, b, desc = task
    t = time.time()
    if kind == "model":
        get_model(prep, a, b, cache, desc=desc)
    else:
        get_sasrec_model(prep, a, cache, progress=False)
    return f"{desc}: {time.time() - t:.0f} s"


def pretrain_parallel(prep: Prepared, cfg: PipelineConfig, cache: Cache, exclude: bool) -> None:
    """Trains (and caches) every model in cfg.jobs worker processes, longest first; the pipeline then finds them."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    tasks = _training_tasks(prep, cfg, exclude)
    # SASRec and long_context take longest: start them first so the pool ends together.
    tasks.sort(key=lambda t: 0 if t[0] == "sasrec" else 1 if t[3] == "long_context model" else 2)
    _log(f"training {len(tasks)} models in {cfg.jobs} processes (1 torch thread each)")
    with ProcessPoolExecutor(cfg.jobs, mp_context=get_context("spawn")) as pool:
        for f in as_completed([pool.submit(_train_task, prep, cache, t) for t in tasks]):
            _log(f"trained {f.result()}")


def get_memory(model: RecModel, prep: Prepared, key: str, cache: Cache, progress: bool) -> Memory:
    path = cache.path(f"memory-{key}.pt")
    if os.path.exists(path):
        d = torch.load(path)
        return Memory(Z=d["Z"], offsets=d["offsets"])
    mem = build_memory(model, prep, progress=progress)
    torch.save({"Z": mem.Z, "offsets": mem.offsets}, path)
    return mem


def get_scores(model, prep, mem: Memory, view, key: str, cache: Cache, progress: bool, desc: str) -> MemoryScores:
    h = hashlib.sha256(np.ascontiguousarray(view.rows).tobytes() + np.ascontiguousarray(view.mem_idx).tobytes())
    path = cache.path(f"scores2-{desc}-{key}-{h.hexdigest()[:16]}.npz")
    if os.path.exists(path):
        z = np.load(path)
        return MemoryScores(**{k: z[k] for k in z.files})
    sc = score_memory(model, prep, mem, view, progress=progress, desc=desc)
    np.savez(path, **asdict(sc))
    return sc


def _rows_minus(rows: np.ndarray, drop: np.ndarray) -> np.ndarray:
    gone = {(int(u), int(p)) for u, p in drop}
    keep = [i for i, (u, p) in enumerate(rows) if (int(u), int(p)) not in gone]
    return rows[np.asarray(keep, dtype=np.int64)] if keep else rows[:0]


def decide_memory_k(model, prep, mem: Memory, retriever, view, table: MemoryScores, exclude: bool, cfg) -> tuple[int, dict]:
    """memory_k on held-out validation, on the served distribution: the k in {1, extra_k} whose paired 95% interval
    of NDCG@10 (automr@k - no_memory) lies wholly above 0, the best such by mean difference; 0 (serve without
    memory) when none does. Memory costs a retriever pass and a longer upper pass: it must show that it pays."""
    from .evaluate import rank_with_slots
    from .metrics import bootstrap_indices, paired_test

    t = table.served(exclude)
    if not len(view.rows):
        return 0, {"reason": "no held-out validation samples"}
    idx = bootstrap_indices(len(view.rows), cfg.n_boot, cfg.seed + 5)
    scores = retriever_scores(retriever, mem, view)
    evidence: dict = {"n": int(len(view.rows)), "no_memory": summarize(t.base_rank)}
    best = (0, 0.0)
    for k in sorted({1, *cfg.extra_k}):
        slots = top_k_slots(scores, view.mem_mask, k)
        r = ranks_of_choice(t, slots[:, 0]) if k == 1 else rank_with_slots(model, prep, mem, view, slots, exclude=exclude)
        b = paired_test(r, t.base_rank, idx)["bootstrap"]["ndcg@10"]
        evidence[f"automr@k={k}"] = {**summarize(r), "ndcg@10_diff": b["diff"], "ndcg@10_diff_ci95": b["ci95"]}
        if b["ci95"][0] > 0 and b["diff"] > best[1]:
            best = (k, b["diff"])
    return best[0], evidence


def policy_reason(rate: float, exclude: bool, variants: list[dict], trained_ex: bool, memory_k: int, ev: dict) -> str:
    parts = [
        f"repeat rate {rate:.4f} {'<' if exclude else '>='} {REPEAT_RATE_THRESHOLD}: "
        + ("consumed items excluded" if exclude else "repeats are common, consumed items stay rankable")
    ]
    if len(variants) > 1:
        v = {bool(x["trained_with_exclusion"]): x["valid_selection_metric"] for x in variants}
        parts.append(f"exclusion loss {'kept' if trained_ex else 'not kept'} (valid NDCG@10 {v[True]:.4f} with, "
                     f"{v[False]:.4f} without)")
    if "n" in ev:
        d = {k: v for k, v in ev.items() if k.startswith("automr@k=")}
        diffs = ", ".join(f"{k} {v['ndcg@10_diff']:+.4f} [{v['ndcg@10_diff_ci95'][0]:+.4f}, {v['ndcg@10_diff_ci95'][1]:+.4f}]"
                          for k, v in d.items())
        verdict = f"memory_k {memory_k}: pays" if memory_k else "memory_k 0: memory does not pay"
        parts.append(f"{verdict} (held-out validation n={ev['n']}, NDCG@10 vs no memory: {diffs})")
    else:
        parts.append(f"memory_k {memory_k}: {ev.get('reason', '')}")
    return "; ".join(parts)


def sasrec_configs(cfg: PipelineConfig, exclude: bool) -> list[SASRecConfig]:
    return [SASRecConfig(**{"seed": cfg.seed, **cfg.sasrec, **g, "select_exclude": exclude}) for g in cfg.sasrec_grid]


def get_sasrec_model(prep: Prepared, scfg: SASRecConfig, cache: Cache, progress: bool):
    """One point of SASRec's validation search, cached on its own (points can be trained in parallel)."""
    path = cache.path(f"sasrec-{_hash(asdict(scfg) | {'time_budget_s': None})}.pt")
    model = SASRec(prep.n_items, scfg)
    if os.path.exists(path):
        ck = torch.load(path)
        model.load_state_dict(ck["state"])
        return model.eval(), ck["info"]
    _log(f"sasrec: lr {scfg.lr} dropout {scfg.dropout} d {scfg.d} maxlen {scfg.maxlen}")
    model, info = train_sasrec(prep, scfg, log=_log if progress else (lambda *_: None))
    torch.save({"state": model.state_dict(), "info": info}, path)
    return model, info


def get_sasrec_ranks(
    prep: Prepared, cfg: PipelineConfig, cache: Cache, test_rows: np.ndarray, exclude: bool
) -> tuple[dict[bool, np.ndarray], dict]:
    """SASRec tuned on validation: one run per grid point (epochs chosen inside each), the best validation NDCG@10
    (on the served ranking) kept; test ranks without and with exclusion."""
    t = time.time()
    best, tried = None, []
    for g in sasrec_configs(cfg, exclude):
        model, info = get_sasrec_model(prep, g, cache, cfg.progress)
        tried.append({"lr": g.lr, "dropout": g.dropout, "d": g.d, "maxlen": g.maxlen, **info})
        if best is None or info["best_valid_ndcg@10"] > best[1]["best_valid_ndcg@10"]:
            best = (model, info, g)
    assert best is not None
    model = best[0]
    ranks = {ex: rank_rows(model, prep, test_rows, exclude=ex) for ex in (False, True)}
    info = {"seconds": round(time.time() - t, 1), "config": asdict(best[2]), "grid": tried,
            "loss": "full-softmax cross-entropy"}
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
    prep: Prepared,
    out_file: str,
    cfg: PipelineConfig,
    cache_root: str,
    export: bool = True,
    reuse_model: str | None = None,
    stop_after: str | None = None,
    repo_dir: str | None = None,
    bundle_dir: str | None = None,
) -> dict:
    from .evaluate import evaluate_test, format_table
    from .plots import plot_random_comparison, plot_timelines

    t0 = time.time()
    timings: dict[str, float] = {}
    cache = Cache(cache_root, prep)

    def lap(name: str, t: float) -> None:
        timings[name] = round(time.time() - t, 1)
        _log(f"[{name}] {timings[name]} s")

    rate = repeat_rate(prep)
    exclude = decide_exclusion(rate)
    _log(f"policy: training repeat-consumption rate {rate:.4f} -> exclude_consumed {exclude} "
         f"(threshold {REPEAT_RATE_THRESHOLD})")
    if cfg.jobs > 1 and reuse_model is None:
        t = time.time()
        pretrain_parallel(prep, cfg, cache, exclude)
        lap("parallel_training", t)
    t = time.time()
    model, minfo, mkey, variants = get_reference(prep, cfg, cache, exclude, reuse_model)
    trained_ex = bool(minfo["train_config"]["exclude"])
    lap("reference_model", t)
    long_model = long_info = None
    if cfg.run_long_context:
        t = time.time()
        # The exclusion loss for long_context follows the policy (not the reference's validation choice), so the
        # baseline's training does not wait for, or depend on, the reference model's.
        long_model, long_info, _ = get_long_context(prep, cfg, cache, exclude, exclude and cfg.try_exclusion_training)
        lap("long_context_model", t)
    if stop_after == "models":
        return {"timings_s": timings, "variants": variants}
    t = time.time()
    mem = get_memory(model, prep, mkey, cache, cfg.progress)
    lap("memory", t)
    t = time.time()
    train_rows = _subsample(prep.splits["train"], cfg.label_train_samples, cfg.seed)
    # At most half of validation for early stopping and label choice: the rest decides memory_k (decide_memory_k).
    n_stop = len(prep.splits["valid"]) // 2
    if cfg.label_valid_samples is not None:
        n_stop = min(n_stop, cfg.label_valid_samples)
    valid_rows = _subsample(prep.splits["valid"], n_stop, cfg.seed + 1)
    test_rows = _subsample(prep.splits["test"], cfg.test_samples, cfg.seed + 2)
    train_view, valid_view, test_view = (sample_view(mem, r) for r in (train_rows, valid_rows, test_rows))
    train_sc = get_scores(model, prep, mem, train_view, mkey, cache, cfg.progress, "train")
    valid_sc = get_scores(model, prep, mem, valid_view, mkey, cache, cfg.progress, "valid")
    lap("labels_train_valid", t)
    t = time.time()
    test_sc = get_scores(model, prep, mem, test_view, mkey, cache, cfg.progress, "test")
    lap("scores_test", t)
    t = time.time()
    rkey = _hash({"model": mkey, "train": train_rows.tolist(), "valid": valid_rows.tolist(), "grid": cfg.label_grid,
                  "retriever": asdict(RetrieverConfig(seed=cfg.seed, **cfg.retriever)), "exclude": exclude})
    rpath = cache.path(f"retriever-{rkey}.pt")
    if os.path.exists(rpath):
        ck = torch.load(rpath)
        retriever = Retriever(mem.Z.shape[1])
        retriever.load_state_dict(ck["state"])
        retriever.eval()
        chosen, search = ck["chosen"], ck["search"]
    else:
        # Eq. 5 labels and early stopping on the distribution that is served (renormalised after exclusion).
        retriever, chosen, search = label_search(
            mem, train_view, train_sc.served(exclude), valid_view, valid_sc.served(exclude), cfg
        )
        torch.save({"state": retriever.state_dict(), "chosen": chosen, "search": search}, rpath)
    lap("retriever", t)
    t = time.time()
    # The memory decision on validation samples the retriever never saw (not its early-stopping subsample).
    decision_rows = _subsample(_rows_minus(prep.splits["valid"], valid_rows), cfg.decision_samples, cfg.seed + 3)
    decision_view = sample_view(mem, decision_rows)
    decision_sc = get_scores(model, prep, mem, decision_view, mkey, cache, cfg.progress, "decision")
    memory_k, memory_evidence = decide_memory_k(model, prep, mem, retriever, decision_view, decision_sc, exclude, cfg)
    lap("memory_decision", t)
    foreign_sc = None
    if cfg.run_foreign_oracle:
        t = time.time()
        from .evaluate import foreign_view

        foreign_sc = get_scores(model, prep, mem, foreign_view(test_view, cfg.seed + 4), mkey, cache, cfg.progress,
                                "foreign")
        lap("scores_foreign", t)
    baselines: dict[str, dict[bool, np.ndarray]] = {}
    sas_info = None
    if cfg.run_sasrec:
        t = time.time()
        baselines["sasrec"], sas_info = get_sasrec_ranks(prep, cfg, cache, test_rows, exclude)
        lap("sasrec", t)
    from .train import no_memory_ranks

    for v in variants:
        if v["key"] != mkey:  # the reference variant not kept: its no-memory rows, so the choice can be checked
            other = load_model(cache.path(f"model-{v['key']}.pt"))
            name = "no_memory[" + ("exclusion loss" if v["trained_with_exclusion"] else "plain loss") + "]"
            baselines[name] = {ex: no_memory_ranks(other, prep, test_rows, ex) for ex in (False, True)}
    if long_model is not None:

        baselines["long_context"] = {
            ex: no_memory_ranks(long_model, prep, test_rows, ex, window=LONG_WINDOW) for ex in (False, True)
        }
    policy = {
        "exclude_consumed": exclude,
        "repeat_rate": round(rate, 6),
        "memory_k": memory_k,
        "trained_with_exclusion": trained_ex,
        "reason": policy_reason(rate, exclude, variants, trained_ex, memory_k, memory_evidence),
    }
    t = time.time()
    ev = evaluate_test(model, prep, mem, test_view, test_sc, retriever, baselines, foreign_sc, policy, cfg.extra_k,
                       cfg.n_boot, cfg.seed)
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
    write_replay_targets(prep, test_view, ev, policy, replay_path)
    bundle = None
    if export:
        from .export import export_bundle

        t = time.time()
        m = export_bundle(model, prep, out_dir, retriever=retriever, policy=policy, repo_dir=repo_dir,
                          bundle_dir=bundle_dir)
        bundle = {"manifest": os.path.join(bundle_dir or os.path.join(out_dir, "bundle"), "manifest.json"),
                  "model_repository": repo_dir or os.path.join(out_dir, "triton-models"),
                  "model_version": m["model_version"]}
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
        "policy": policy,
        "served": ev["served"],
        "rows": ev["rows"],
        "rows_samples_with_memory": ev["rows_samples_with_memory"],
        "memory_decision": memory_evidence,
        "paired": ev["paired"],
        "rq3": {k: v for k, v in ev["rq3"].items() if k != "sample_index"},
        "label_search": search,
        "label_chosen": {"delta": chosen["delta"], "tau": chosen["tau"]},
        "reference_model": {k: minfo.get(k) for k in ("model_config", "train_config", "best_epoch", "train_seconds",
                                                        "stopped_by", "best_valid")},
        "reference_model_variants": variants,
        "long_context": None if long_info is None else {
            k: long_info.get(k) for k in ("model_config", "train_config", "best_epoch", "train_seconds", "stopped_by")},
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
    print(f"policy: {policy}")
    print("served: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in ev["served"].items()))
    for name, pn in ev["paired"].items():
        if not name.startswith("served_vs_") and not name.startswith("automr"):
            continue
        print(
            f"{name}: "
            + ", ".join(f"{k} {v['diff']:+.4f} [{v['ci95'][0]:+.4f},{v['ci95'][1]:+.4f}]" for k, v in pn["bootstrap"].items())
            + f"; McNemar recall@1 p={pn['mcnemar']['recall@1']['p_value']:.3g}"
        )
    print(f"labels chosen: {result['label_chosen']}; total {timings['total']} s; wrote {out_file}")
    result["_eval"] = ev
    result["_model"], result["_memory"], result["_test_view"] = model, mem, test_view
    return result


def write_replay_targets(prep: Prepared, view, ev: dict, policy: dict, path: str) -> None:
    """Test targets in stream order terms (external ids, timestamps) with the offline per-sample results: automr_*
    is automr (k = 1) under the policy's exclusion setting, served_* what the bundle serves by default."""
    ex = bool(policy["exclude_consumed"])
    automr = "automr+exclude" if ex else "automr"
    ranks, choice = ev["_ranks"][automr], ev["_choices"]["automr"]
    served = ev["_ranks"][ev["_served"]]
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
            "no_memory_rank": int(ev["_ranks"]["no_memory+exclude" if ex else "no_memory"][i]),
            "served_rank": int(served[i]),
        })
    row = next(r for r in ev["rows"] if r["method"] == automr)
    with open(path, "w") as f:
        json.dump({"dataset": prep.name, "fingerprint": prep.fingerprint, "policy": policy, "automr_method": automr,
                   "automr_row": row, "served_row": ev["served"],
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
    ap.add_argument("--fast", action="store_true", help="CI scale (the CI test runs it on the default --synthetic data)")
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
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("AUTOMR_JOBS", "1")),
                    help="train the independent models in this many 1-thread processes first (2 on a 2-core machine)")
    ap.add_argument("--train-config", metavar="JSON", default=None,
                    help='reference-model TrainConfig overrides, e.g. \'{"epochs": 15, "mem_frac": 1.0}\'')
    ap.add_argument("--test-samples", type=int, default=None, help="seeded subsample of the test split")
    ap.add_argument("--users", type=int, default=None, help="synthetic: number of users")
    ap.add_argument("--items", type=int, default=None, help="synthetic: number of items")
    ap.add_argument("--label-grid", choices=["full", "small"], default="full",
                    help="label search: the 6-point grid or the 3 points of --fast (time budget)")
    ap.add_argument("--decision-samples", type=int, default=None, help="held-out validation samples for memory_k")
    ap.add_argument("--no-foreign-oracle", action="store_true", help="skip the oracle_foreign_memory control")
    ap.add_argument("--stop-after", choices=["models"], default=None,
                    help="only train (and cache) the reference and long_context models")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    gen = {k: v for k, v in (("n_users", a.users), ("n_items", a.items)) if v is not None}
    if a.write_synthetic_movielens:
        write_movielens_latest(synthetic(**{**SYNTHETIC_ML_LATEST, **gen, "seed": a.seed}), a.write_synthetic_movielens)
        return 0
    if not a.out:
        ap.error("--out is required")
    cfg = fast_config() if a.fast else PipelineConfig()
    cfg.seed = a.seed
    cfg.jobs = a.jobs
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
    if a.label_grid == "small":
        cfg.label_grid = fast_config().label_grid
    if a.decision_samples is not None:
        cfg.decision_samples = a.decision_samples
    if a.no_foreign_oracle:
        cfg.run_foreign_oracle = False
    if a.synthetic:
        prep = synthetic(**{**DEFAULT_SYNTHETIC, **gen, "seed": a.seed})
    else:
        prep = load_dataset(a.dataset)
    run(prep, a.out, cfg, a.cache, export=not a.no_export, reuse_model=a.reuse_model, stop_after=a.stop_after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
