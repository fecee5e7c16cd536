"""Export a trained RecModel as a Triton model repository plus the bundle folder (docs/BUNDLE.md).

Repository layout (nothing else at its root, real Triton refuses a directory without a model):
    <repo>/llm_lower/config.pbtxt, <repo>/llm_lower/1/model.onnx
    <repo>/llm_upper/config.pbtxt, <repo>/llm_upper/1/model.onnx
    <repo>/automr_recommend/config.pbtxt, <repo>/automr_recommend/1/.gitkeep   (ensemble)
Bundle folder: <bundle>/manifest.json, <bundle>/retriever.onnx.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import torch
from torch import Tensor, nn

from .data import BOS, MAX_HISTORY, MAX_MEMORY, N_SPECIAL, PAD, UNK, WINDOW, Prepared
from .model import RecModel
from .retriever import Retriever, export_retriever, identity_retriever

OPSET = 17
MAX_BATCH = 64
LOWER, UPPER, ENSEMBLE, VERSION = "llm_lower", "llm_upper", "automr_recommend", "1"


def top_k_of(n_items: int) -> int:
    return min(100, n_items)


class LowerGraph(nn.Module):
    def __init__(self, model: RecModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.lower(input_ids, attention_mask)


def mask_bytes(n_items: int) -> int:
    """Bytes of the packed exclusion mask: one bit per catalog item."""
    return (n_items + 7) // 8


def pack_exclusion(excluded: "list[list[int]] | list[set[int]]", n_items: int) -> Tensor:
    """Item indices per row -> the `exclude_mask` tensor [B, ceil(N/8)] uint8, LSB first (docs/BUNDLE.md)."""
    out = torch.zeros(len(excluded), mask_bytes(n_items), dtype=torch.uint8)
    for row, items in enumerate(excluded):
        for i in items:
            out[row, i >> 3] |= 1 << (i & 7)
    return out


class UpperGraph(nn.Module):
    """llm_upper as served: log_probs (the unmasked model distribution) and the top-k of the scores with the
    excluded items at -inf, so top_ids never holds an excluded item when enough allowed ones exist."""

    def __init__(self, model: RecModel, kmax: int) -> None:
        super().__init__()
        self.model = model
        self.kmax = kmax
        self.n_items = model.cfg.n_items
        # Byte value -> its 8 bits, LSB first. A table lookup (Gather) unpacks the mask with the ops of opset 17
        # (ONNX has no bitwise AND before opset 18).
        values = torch.arange(256).unsqueeze(1)
        self.register_buffer("bit_table", (values // (2 ** torch.arange(8))) % 2 == 1, persistent=False)

    def excluded(self, exclude_mask: Tensor) -> Tensor:
        """[B, ceil(N/8)] uint8 -> [B, N] bool."""
        bits = self.bit_table[exclude_mask.long()]
        return bits.flatten(1)[:, : self.n_items]

    def forward(self, hidden: Tensor, attention_mask: Tensor, memory: Tensor, memory_mask: Tensor, exclude_mask: Tensor):
        log_probs = self.model.upper(hidden, attention_mask, memory, memory_mask)
        scores = log_probs.masked_fill(self.excluded(exclude_mask), float("-inf"))
        top_scores, top_idx = torch.topk(scores, self.kmax, dim=-1)
        return log_probs, top_idx + N_SPECIAL, top_scores


def weights_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().astype("<f4").tobytes())
    return h.hexdigest()


def _example_inputs(model: RecModel) -> tuple[Tensor, Tensor]:
    ids = torch.tensor([[PAD, PAD, BOS, 3, 4, 5], [BOS, 3, 4, 5, 6, 7]], dtype=torch.long)
    mask = (ids != PAD).long()
    return ids, mask


def export_lower(model: RecModel, path: str) -> None:
    import onnx

    ids, mask = _example_inputs(model)
    torch.onnx.export(
        LowerGraph(model).eval(),
        (ids, mask),
        path,
        input_names=["input_ids", "attention_mask"],
        output_names=["hidden", "query"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "T"},
            "attention_mask": {0: "batch", 1: "T"},
            "hidden": {0: "batch", 1: "T"},
            "query": {0: "batch"},
        },
        opset_version=OPSET,
        do_constant_folding=True,
    )
    onnx.checker.check_model(onnx.load(path))


def export_upper(model: RecModel, path: str, kmax: int) -> None:
    import onnx

    ids, mask = _example_inputs(model)
    with torch.no_grad():
        hidden, _ = model.lower(ids, mask)
    memory = torch.randn(2, 3, model.cfg.d_model)
    memory_mask = torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.long)
    exclude_mask = pack_exclusion([[0, 2], []], model.cfg.n_items)
    torch.onnx.export(
        UpperGraph(model, kmax).eval(),
        (hidden, mask, memory, memory_mask, exclude_mask),
        path,
        input_names=["hidden", "attention_mask", "memory", "memory_mask", "exclude_mask"],
        output_names=["log_probs", "top_ids", "top_scores"],
        dynamic_axes={
            "hidden": {0: "batch", 1: "T"},
            "attention_mask": {0: "batch", 1: "T"},
            "memory": {0: "batch", 1: "k"},
            "memory_mask": {0: "batch", 1: "k"},
            "exclude_mask": {0: "batch"},
            "log_probs": {0: "batch"},
            "top_ids": {0: "batch"},
            "top_scores": {0: "batch"},
        },
        opset_version=OPSET,
        do_constant_folding=True,
    )
    onnx.checker.check_model(onnx.load(path))


# ---------------------------------------------------------------------------------------------
# config.pbtxt (protobuf text format of Triton's ModelConfig)


def _tensor(name: str, dtype: str, dims: list[int]) -> str:
    return f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: [ {", ".join(str(d) for d in dims)} ]\n  }}'


def _io(kind: str, tensors: list[tuple[str, str, list[int]]]) -> str:
    return f"{kind} [\n" + ",\n".join(_tensor(*t) for t in tensors) + "\n]\n"


def lower_io(d: int) -> tuple[list, list]:
    return (
        [("input_ids", "TYPE_INT64", [-1]), ("attention_mask", "TYPE_INT64", [-1])],
        [("hidden", "TYPE_FP32", [-1, d]), ("query", "TYPE_FP32", [d])],
    )


def upper_io(d: int, n_items: int, kmax: int) -> tuple[list, list]:
    return (
        [
            ("hidden", "TYPE_FP32", [-1, d]),
            ("attention_mask", "TYPE_INT64", [-1]),
            ("memory", "TYPE_FP32", [-1, d]),
            ("memory_mask", "TYPE_INT64", [-1]),
            ("exclude_mask", "TYPE_UINT8", [mask_bytes(n_items)]),
        ],
        [("log_probs", "TYPE_FP32", [n_items]), ("top_ids", "TYPE_INT64", [kmax]), ("top_scores", "TYPE_FP32", [kmax])],
    )


def onnx_model_config(name: str, inputs: list, outputs: list) -> str:
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {MAX_BATCH}\n'
        + _io("input", inputs)
        + _io("output", outputs)
        + "dynamic_batching { }\n"
    )


def ensemble_config(d: int, n_items: int, kmax: int) -> str:
    l_in, _ = lower_io(d)
    u_in, u_out = upper_io(d, n_items, kmax)
    inputs = l_in + [t for t in u_in if t[0] in ("memory", "memory_mask", "exclude_mask")]

    def maps(kind: str, pairs: list[tuple[str, str]]) -> str:
        return "".join(f'      {kind} {{ key: "{k}" value: "{v}" }}\n' for k, v in pairs)

    steps = (
        "    {\n"
        f'      model_name: "{LOWER}"\n      model_version: {VERSION}\n'
        + maps("input_map", [("input_ids", "input_ids"), ("attention_mask", "attention_mask")])
        + maps("output_map", [("hidden", "lower_hidden")])
        + "    },\n    {\n"
        f'      model_name: "{UPPER}"\n      model_version: {VERSION}\n'
        + maps(
            "input_map",
            [
                ("hidden", "lower_hidden"),
                ("attention_mask", "attention_mask"),
                ("memory", "memory"),
                ("memory_mask", "memory_mask"),
                ("exclude_mask", "exclude_mask"),
            ],
        )
        + maps("output_map", [(t[0], t[0]) for t in u_out])
        + "    }\n"
    )
    # An ensemble has no dynamic_batching of its own (scheduling is a oneof in ModelConfig); its
    # members batch dynamically.
    return (
        f'name: "{ENSEMBLE}"\nplatform: "ensemble"\nmax_batch_size: {MAX_BATCH}\n'
        + _io("input", inputs)
        + _io("output", u_out)
        + "ensemble_scheduling {\n  step [\n"
        + steps
        + "  ]\n}\n"
    )


def model_version_parameter(model_version: str) -> str:
    """The bundle's model_version in a config's `parameters`: the gateway reads it through ModelConfig and stays
    NOT_SERVING when it differs from its own bundle's (a repository updated ahead of, or behind, the gateways)."""
    return f'parameters {{\n  key: "model_version"\n  value {{ string_value: "{model_version}" }}\n}}\n'


# ---------------------------------------------------------------------------------------------


def export_bundle(
    model: RecModel,
    prep: Prepared,
    out_dir: str,
    retriever: Retriever | None = None,
    repo_dir: str | None = None,
    bundle_dir: str | None = None,
    policy: dict | None = None,
) -> dict:
    """Writes <out_dir>/triton-models (or repo_dir) and <out_dir>/bundle (or bundle_dir); returns the manifest.

    policy: the serving policy decided with the training data (Contract A: exclude_consumed, repeat_rate, memory_k,
    trained_with_exclusion, reason); written as the manifest's "policy" block."""
    model = model.eval()
    cfg = model.cfg
    d, n_items = cfg.d_model, cfg.n_items
    assert n_items == prep.n_items, "model and dataset catalogs differ"
    kmax = top_k_of(n_items)
    repo_dir = os.path.abspath(repo_dir or os.path.join(out_dir, "triton-models"))
    bundle_dir = os.path.abspath(bundle_dir or os.path.join(out_dir, "bundle"))
    os.makedirs(repo_dir, exist_ok=True)
    os.makedirs(bundle_dir, exist_ok=True)

    for name in (LOWER, UPPER, ENSEMBLE):
        shutil.rmtree(os.path.join(repo_dir, name), ignore_errors=True)
        os.makedirs(os.path.join(repo_dir, name, VERSION))
    model_version = weights_hash(model)[:16]
    stamp = model_version_parameter(model_version)
    export_lower(model, os.path.join(repo_dir, LOWER, VERSION, "model.onnx"))
    export_upper(model, os.path.join(repo_dir, UPPER, VERSION, "model.onnx"), kmax)
    with open(os.path.join(repo_dir, LOWER, "config.pbtxt"), "w") as f:
        f.write(onnx_model_config(LOWER, *lower_io(d)) + stamp)
    with open(os.path.join(repo_dir, UPPER, "config.pbtxt"), "w") as f:
        f.write(onnx_model_config(UPPER, *upper_io(d, n_items, kmax)) + stamp)
    with open(os.path.join(repo_dir, ENSEMBLE, "config.pbtxt"), "w") as f:
        f.write(ensemble_config(d, n_items, kmax) + stamp)
    open(os.path.join(repo_dir, ENSEMBLE, VERSION, ".gitkeep"), "w").close()

    kind = "trained"
    if retriever is None:
        retriever, kind = identity_retriever(d), "identity"
    export_retriever(retriever, os.path.join(bundle_dir, "retriever.onnx"))

    manifest = {
        "format": 1,
        "model_version": model_version,
        "model_repository": os.path.relpath(repo_dir, bundle_dir),
        "models": {"lower": LOWER, "upper": UPPER, "ensemble": ENSEMBLE, "version": VERSION},
        "d_model": d,
        "n_layers": cfg.n_layers,
        "split_layer": cfg.split_layer,
        "n_heads": cfg.n_heads,
        "window": WINDOW,
        "max_memory": MAX_MEMORY,
        "max_history": MAX_HISTORY,
        "top_k": kmax,
        "opset": OPSET,
        "padding_side": "left",
        "special_tokens": {"pad": PAD, "bos": BOS, "unk": UNK},
        "retriever": {"file": "retriever.onnx", "hidden": retriever.hidden, "kind": kind},
        "training_data": {"name": prep.name, "fingerprint": prep.fingerprint},
        **({"policy": manifest_policy(policy)} if policy is not None else {}),
        "catalog": [
            {"item_id": iid, "token": N_SPECIAL + j, "title": t}
            for j, (iid, t) in enumerate(zip(prep.catalog_ids, prep.titles))
        ],
    }
    write_manifest(manifest, bundle_dir)
    return manifest


POLICY_KEYS = ("exclude_consumed", "repeat_rate", "memory_k", "trained_with_exclusion", "reason")


def manifest_policy(policy: dict) -> dict:
    """The manifest's policy block, exactly Contract A's keys and types."""
    missing = [k for k in POLICY_KEYS if k not in policy]
    if missing:
        raise ValueError(f"policy lacks {missing}")
    return {
        "exclude_consumed": bool(policy["exclude_consumed"]),
        "repeat_rate": float(policy["repeat_rate"]),
        "memory_k": int(policy["memory_k"]),
        "trained_with_exclusion": bool(policy["trained_with_exclusion"]),
        "reason": str(policy["reason"]),
    }


def write_manifest(manifest: dict, bundle_dir: str) -> None:
    with open(os.path.join(bundle_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
