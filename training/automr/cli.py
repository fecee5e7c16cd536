"""Command line: prepare, train, evaluate against popularity, export a bundle.

    /usr/bin/python3 -m automr.cli train --dataset /work/shared/data/ml-100k --out ../out/ml100k
    /usr/bin/python3 -m automr.cli train --dataset synthetic --out ../out/synthetic
    /usr/bin/python3 -m automr.cli bundle        # regenerates ../triton-models and ../bundle (committed default)

`train` is the quick path (reference model + popularity, identity retriever, memory_k 1 unless told otherwise);
`bundle` runs the evaluated pipeline (automr.pipeline, CI scale) on the default synthetic data, so the committed
bundle carries a trained retriever and a policy decided on validation, like the bundle `npm run eval` writes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

from .data import Prepared, load_dataset
from .exclusion import REPEAT_RATE_THRESHOLD, decide_exclusion, repeat_rate
from .export import export_bundle
from .model import ModelConfig, save_model
from .popularity import evaluate_popularity, format_table
from .synthetic import DEFAULT_SYNTHETIC, synthetic
from .train import TrainConfig, evaluate, train_model

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))



def _prepare(dataset: str, args: argparse.Namespace) -> Prepared:
    if dataset == "synthetic":
        return synthetic(**{**DEFAULT_SYNTHETIC, "seed": args.data_seed})
    return load_dataset(dataset)


def run(prep: Prepared, out_dir: str, mcfg: ModelConfig, tcfg: TrainConfig) -> dict:
    print(
        f"dataset {prep.name}: {len(prep.users)} users, {prep.n_items} items, {prep.n_interactions} interactions; "
        f"samples train {len(prep.splits['train'])} valid {len(prep.splits['valid'])} test {len(prep.splits['test'])}",
        flush=True,
    )
    rate = repeat_rate(prep)
    exclude = decide_exclusion(rate)
    tcfg.select_exclude = exclude
    model, info = train_model(prep, mcfg, tcfg)
    results = {}
    for split in ("valid", "test"):
        results[split] = {"reference": evaluate(model, prep, split), "popularity": evaluate_popularity(prep, split)}
        if exclude:
            results[split]["reference+exclude"] = evaluate(model, prep, split, exclude=True)
        print(format_table(results[split], title=f"\n{prep.name} {split} (full ranking over {prep.n_items} items)"))
    print(
        f"\ntraining time {info['train_seconds']:.1f} s ({info['best_epoch']} best epoch of {len(info['history'])}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs)",
        flush=True,
    )
    os.makedirs(out_dir, exist_ok=True)
    save_model(model, os.path.join(out_dir, "model.pt"), extra={"fingerprint": prep.fingerprint})
    policy = {
        "exclude_consumed": exclude,
        "repeat_rate": round(rate, 6),
        "memory_k": 1,
        "trained_with_exclusion": bool(tcfg.exclude),
        "reason": f"repeat rate {rate:.4f} vs threshold {REPEAT_RATE_THRESHOLD}; memory_k 1 not evaluated "
        "(automr.cli train, identity retriever): npm run eval decides it on validation",
    }
    manifest = export_bundle(model, prep, out_dir, policy=policy)
    report = {
        "dataset": prep.name,
        "fingerprint": prep.fingerprint,
        "model_version": manifest["model_version"],
        "policy": policy,
        "results": results,
        "train": {k: v for k, v in info.items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"bundle written: {os.path.join(out_dir, 'triton-models')} + {os.path.join(out_dir, 'bundle')}")
    return report


def bundle(root: str, progress: bool) -> dict:
    """The committed default: exactly the CI pipeline test's run (fast_config on DEFAULT_SYNTHETIC, so the test
    asserts what is committed and a rerun after it hits the cache), exported into <root>/triton-models and
    <root>/bundle. SASRec is skipped (not part of what is served); the exclusion-loss variant is not tried at this
    scale (fast_config), so the policy says trained_with_exclusion false."""
    from .pipeline import fast_config
    from .pipeline import run as run_pipeline

    cfg = fast_config()
    cfg.run_sasrec = False
    cfg.progress = progress
    out = os.path.join(root, "out", "default")
    return run_pipeline(
        synthetic(**DEFAULT_SYNTHETIC), os.path.join(out, "result.json"), cfg, os.path.join(root, "out", "cache"),
        repo_dir=os.path.join(root, "triton-models"), bundle_dir=os.path.join(root, "bundle"),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="automr.cli")
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="prepare a dataset, train, evaluate vs popularity, export a bundle")
    tr.add_argument("--dataset", required=True, help="directory (ml-100k, ml-latest(-small), plain CSV) or 'synthetic'")
    tr.add_argument("--out", required=True, help="output folder: model.pt, metrics.json, triton-models/, bundle/")
    tr.add_argument("--d-model", type=int, default=64)
    tr.add_argument("--layers", type=int, default=4)
    tr.add_argument("--heads", type=int, default=4)
    tr.add_argument("--split-layer", type=int, default=None, help="L (default: layers // 2)")
    tr.add_argument("--dropout", type=float, default=0.1)
    tr.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="cap; the epoch is chosen on validation")
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--mem-frac", type=float, default=TrainConfig.mem_frac, help="share of chunks trained with memory")
    tr.add_argument("--max-mem", type=int, default=TrainConfig.max_mem, help="memory slots drawn per chunk, at most")
    tr.add_argument("--mem-informed", type=float, default=TrainConfig.mem_informed, help="share with one target-near draw")
    tr.add_argument("--patience", type=int, default=TrainConfig.patience)
    tr.add_argument("--exclusion-loss", action="store_true", help="loss over unconsumed items only (automr.train)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--data-seed", type=int, default=DEFAULT_SYNTHETIC["seed"])
    tr.add_argument("--no-progress", action="store_true")
    bd = sub.add_parser("bundle", help="regenerate the committed default bundle (synthetic data, fixed seeds)")
    bd.add_argument("--root", default=PROJECT_ROOT, help="project root holding triton-models/ and bundle/")
    bd.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    if args.cmd == "train":
        prep = _prepare(args.dataset, args)
        mcfg = ModelConfig(
            n_items=prep.n_items, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
            split_layer=args.split_layer, dropout=args.dropout,
        )
        tcfg = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, mem_frac=args.mem_frac,
            max_mem=args.max_mem, mem_informed=args.mem_informed,
            patience=args.patience, progress=not args.no_progress, exclude=args.exclusion_loss,
        )
        run(prep, os.path.abspath(args.out), mcfg, tcfg)
        return 0
    if args.cmd == "bundle":
        bundle(os.path.abspath(args.root), progress=not args.no_progress)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
