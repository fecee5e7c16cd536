"""Command line: prepare, train, evaluate against popularity, export a bundle.

    /usr/bin/python3 -m automr.cli train --dataset /work/shared/data/ml-100k --out ../out/ml100k
    /usr/bin/python3 -m automr.cli train --dataset synthetic --out ../out/synthetic
    /usr/bin/python3 -m automr.cli bundle        # regenerates ../triton-models and ../bundle (committed default)
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
from .export import export_bundle
from .model import ModelConfig, save_model
from .popularity import evaluate_popularity, format_table
from .synthetic import synthetic
from .train import TrainConfig, evaluate, train_model

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

# The committed default bundle: synthetic data and training settings, all seeded.
DEFAULT_SYNTHETIC = {"n_users": 1000, "n_items": 300, "seed": 7}
DEFAULT_MODEL = {"d_model": 64, "n_layers": 4, "n_heads": 4, "split_layer": 2}
DEFAULT_TRAIN = {"epochs": 12, "seed": 7}


def _prepare(dataset: str, args: argparse.Namespace) -> Prepared:
    if dataset == "synthetic":
        return synthetic(n_users=args.synthetic_users, n_items=args.synthetic_items, seed=args.data_seed)
    return load_dataset(dataset)


def run(
    prep: Prepared,
    out_dir: str,
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    repo_dir: str | None = None,
    bundle_dir: str | None = None,
    checkpoint: str | None = None,
    train_retriever: bool = False,
) -> dict:
    print(
        f"dataset {prep.name}: {len(prep.users)} users, {prep.n_items} items, {prep.n_interactions} interactions; "
        f"samples train {len(prep.splits['train'])} valid {len(prep.splits['valid'])} test {len(prep.splits['test'])}",
        flush=True,
    )
    model, info = train_model(prep, mcfg, tcfg)
    results = {}
    for split in ("valid", "test"):
        results[split] = {"reference": evaluate(model, prep, split), "popularity": evaluate_popularity(prep, split)}
        print(format_table(results[split], title=f"\n{prep.name} {split} (full ranking over {prep.n_items} items)"))
    print(
        f"\ntraining time {info['train_seconds']:.1f} s ({info['best_epoch']} best epoch of {len(info['history'])}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs)",
        flush=True,
    )
    os.makedirs(out_dir, exist_ok=True)
    save_model(model, checkpoint or os.path.join(out_dir, "model.pt"), extra={"fingerprint": prep.fingerprint})
    retriever = None
    if train_retriever:
        # Eq. 5 labels + KL training (automr.retriever_train); without it the bundle gets the identity retriever.
        from .retriever_train import train_default_retriever

        retriever = train_default_retriever(model, prep, progress=tcfg.progress)
    manifest = export_bundle(model, prep, out_dir, retriever=retriever, repo_dir=repo_dir, bundle_dir=bundle_dir)
    report = {
        "dataset": prep.name,
        "fingerprint": prep.fingerprint,
        "model_version": manifest["model_version"],
        "results": results,
        "train": {k: v for k, v in info.items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"bundle written: {repo_dir or os.path.join(out_dir, 'triton-models')} + {bundle_dir or os.path.join(out_dir, 'bundle')}")
    return report


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
    tr.add_argument("--epochs", type=int, default=30)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--mem-frac", type=float, default=TrainConfig.mem_frac, help="share of chunks trained with memory")
    tr.add_argument("--max-mem", type=int, default=TrainConfig.max_mem, help="memory slots drawn per chunk, at most")
    tr.add_argument("--mem-informed", type=float, default=TrainConfig.mem_informed, help="share with one target-near draw")
    tr.add_argument("--patience", type=int, default=4)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--data-seed", type=int, default=0)
    tr.add_argument("--synthetic-users", type=int, default=1000)
    tr.add_argument("--synthetic-items", type=int, default=300)
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
            patience=args.patience, progress=not args.no_progress,
        )
        run(prep, os.path.abspath(args.out), mcfg, tcfg)
        return 0
    if args.cmd == "bundle":
        prep = synthetic(**DEFAULT_SYNTHETIC)
        mcfg = ModelConfig(n_items=prep.n_items, **DEFAULT_MODEL)
        tcfg = TrainConfig(progress=not args.no_progress, **DEFAULT_TRAIN)
        root = os.path.abspath(args.root)
        out = os.path.join(root, "out", "default")
        run(
            prep, out, mcfg, tcfg, repo_dir=os.path.join(root, "triton-models"), bundle_dir=os.path.join(root, "bundle"),
            train_retriever=True,
        )
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
