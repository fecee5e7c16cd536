"""Runs ONNX graphs through onnxruntime-node (tests/ort_run.mjs); onnxruntime for Python is not available here."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
_TYPES = {np.dtype(np.int64): "int64", np.dtype(np.float32): "float32", np.dtype(np.uint8): "uint8"}
_NP = {"int64": np.int64, "float32": np.float32, "uint8": np.uint8}


def ort_run(model_path: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    req = {"model": os.path.abspath(model_path), "inputs": {}}
    for name, a in inputs.items():
        a = np.ascontiguousarray(a)
        req["inputs"][name] = {"type": _TYPES[a.dtype], "dims": list(a.shape), "b64": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode()}
    proc = subprocess.run(
        ["node", os.path.join(HERE, "ort_run.mjs")], input=json.dumps(req).encode(), capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode())
    out = json.loads(proc.stdout)["outputs"]
    return {
        k: np.frombuffer(base64.b64decode(v["b64"]), dtype=_NP[v["type"]]).reshape(v["dims"]) for k, v in out.items()
    }
