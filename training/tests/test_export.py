import json
import os
import re

import numpy as np
import pytest
import torch

from automr.data import make_prompt_batch
from automr.export import export_bundle, mask_bytes, pack_exclusion
from automr.retriever import Retriever, export_retriever, identity_retriever
from ort import ort_run

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def parse_config(path):
    """Minimal reader for the config.pbtxt files we write: name, platform, max_batch_size, tensors, steps."""
    text = open(path).read()
    cfg = {
        "name": re.search(r'^name: "([^"]+)"', text, re.M).group(1),
        "platform": re.search(r'^platform: "([^"]+)"', text, re.M).group(1),
        "max_batch_size": int(re.search(r"^max_batch_size: (\d+)", text, re.M).group(1)),
        "dynamic_batching": "dynamic_batching" in text,
    }
    for kind in ("input", "output"):
        block = re.search(rf"^{kind} \[\n(.*?)\n\]", text, re.M | re.S).group(1)
        cfg[kind] = {
            m.group(1): (m.group(2), [int(d) for d in m.group(3).split(",")])
            for m in re.finditer(r'name: "([^"]+)"\s+data_type: (\w+)\s+dims: \[ ([^\]]+) \]', block)
        }
    cfg["steps"] = [
        {
            "model": m.group(1),
            "input_map": dict(re.findall(r'input_map \{ key: "([^"]+)" value: "([^"]+)" \}', m.group(2))),
            "output_map": dict(re.findall(r'output_map \{ key: "([^"]+)" value: "([^"]+)" \}', m.group(2))),
        }
        for m in re.finditer(r'model_name: "([^"]+)"(.*?)\n    \}', text, re.S)
    ]
    return cfg


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_synth, tiny_trained):
    model, _ = tiny_trained
    out = tmp_path_factory.mktemp("bundle")
    manifest = export_bundle(model, tiny_synth, str(out))
    return model, str(out), manifest


def check_repository(repo, d, n_items, kmax):
    assert sorted(os.listdir(repo)) == ["automr_recommend", "llm_lower", "llm_upper"]
    lower = parse_config(os.path.join(repo, "llm_lower", "config.pbtxt"))
    upper = parse_config(os.path.join(repo, "llm_upper", "config.pbtxt"))
    ens = parse_config(os.path.join(repo, "automr_recommend", "config.pbtxt"))
    for cfg in (lower, upper):
        assert cfg["platform"] == "onnxruntime_onnx" and cfg["max_batch_size"] > 0 and cfg["dynamic_batching"]
    assert os.path.isfile(os.path.join(repo, "llm_lower", "1", "model.onnx"))
    assert os.path.isfile(os.path.join(repo, "llm_upper", "1", "model.onnx"))
    assert os.path.isdir(os.path.join(repo, "automr_recommend", "1"))
    assert lower["input"] == {"input_ids": ("TYPE_INT64", [-1]), "attention_mask": ("TYPE_INT64", [-1])}
    assert lower["output"] == {"hidden": ("TYPE_FP32", [-1, d]), "query": ("TYPE_FP32", [d])}
    assert upper["input"]["memory"] == ("TYPE_FP32", [-1, d]) and upper["input"]["memory_mask"] == ("TYPE_INT64", [-1])
    # Packed exclusion bits, one per catalog item; dims exclude the batch dimension (max_batch_size > 0).
    assert upper["input"]["exclude_mask"] == ("TYPE_UINT8", [(n_items + 7) // 8])
    assert "exclude_mask" in ens["input"]
    assert upper["output"] == {
        "log_probs": ("TYPE_FP32", [n_items]),
        "top_ids": ("TYPE_INT64", [kmax]),
        "top_scores": ("TYPE_FP32", [kmax]),
    }
    # Ensemble: its tensors and step maps agree with the member models' configs.
    assert ens["platform"] == "ensemble" and ens["max_batch_size"] > 0
    assert [s["model"] for s in ens["steps"]] == ["llm_lower", "llm_upper"]
    members = {"llm_lower": lower, "llm_upper": upper}
    produced = dict(ens["input"])
    for step in ens["steps"]:
        member = members[step["model"]]
        assert set(step["input_map"]) == set(member["input"])
        for key, value in step["input_map"].items():
            assert value in produced
            assert produced[value] == member["input"][key]
        for key, value in step["output_map"].items():
            produced[value] = member["output"][key]
    for name, spec in ens["output"].items():
        assert produced[name] == spec


def test_repository_layout_and_configs(exported, tiny_synth):
    model, out, manifest = exported
    check_repository(os.path.join(out, "triton-models"), model.cfg.d_model, tiny_synth.n_items, 100)
    assert sorted(os.listdir(os.path.join(out, "bundle"))) == ["manifest.json", "retriever.onnx"]
    on_disk = json.load(open(os.path.join(out, "bundle", "manifest.json")))
    assert on_disk == manifest
    assert manifest["model_repository"] == "../triton-models" and manifest["top_k"] == 100
    assert manifest["split_layer"] == model.cfg.split_layer and manifest["d_model"] == model.cfg.d_model
    assert manifest["training_data"]["fingerprint"] == tiny_synth.fingerprint
    assert [c["token"] for c in manifest["catalog"]] == list(range(3, 3 + tiny_synth.n_items))
    assert manifest["catalog"][5]["item_id"] == tiny_synth.catalog_ids[5]
    assert manifest["retriever"]["kind"] == "identity"


def test_onnx_parity_lower_upper(exported, tiny_synth):
    model, out, _ = exported
    repo = os.path.join(out, "triton-models")
    rows = np.array([[0, 1], [1, 7], [2, 30], [3, 12], [4, 3]], dtype=np.int64)
    ids, mask = make_prompt_batch(tiny_synth, rows)
    lo = ort_run(os.path.join(repo, "llm_lower", "1", "model.onnx"), {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        hidden, query = model.lower(ids, mask)
    assert np.abs(lo["hidden"] - hidden.numpy()).max() <= 1e-4
    assert np.abs(lo["query"] - query.numpy()).max() <= 1e-4
    d = model.cfg.d_model
    for k in (1, 5):
        rng = np.random.default_rng(k)
        mem = rng.standard_normal((5, k, d)).astype(np.float32)
        mm = (rng.random((5, k)) < 0.5).astype(np.int64)
        mm[0] = 0
        mem_poisoned = mem.copy()
        mem_poisoned[mm == 0] = np.nan
        up = ort_run(
            os.path.join(repo, "llm_upper", "1", "model.onnx"),
            {
                "hidden": lo["hidden"],
                "attention_mask": mask.numpy(),
                "memory": mem_poisoned,
                "memory_mask": mm,
                "exclude_mask": np.zeros((5, mask_bytes(tiny_synth.n_items)), np.uint8),
            },
        )
        with torch.no_grad():
            ref = model.upper(torch.from_numpy(lo["hidden"]), mask, torch.from_numpy(mem), torch.from_numpy(mm))
            full = model(ids, mask)
        assert not np.isnan(up["log_probs"]).any()
        assert np.abs(up["log_probs"] - ref.numpy()).max() <= 1e-4
        # Row 0 has all memory masked: equals the unsplit model.
        assert np.abs(up["log_probs"][0] - full[0].numpy()).max() <= 1e-4
        assert up["top_ids"].shape == (5, 100) and up["top_scores"].shape == (5, 100)
        assert np.array_equal(up["top_scores"], np.take_along_axis(up["log_probs"], up["top_ids"] - 3, axis=1))
        assert np.all(np.diff(up["top_scores"], axis=1) <= 0)
        assert np.array_equal(up["top_ids"][:, 0], up["log_probs"].argmax(1) + 3)


def test_pack_exclusion_bit_order():
    m = pack_exclusion([[0, 9, 15], [], [16, 17]], 20)
    assert m.shape == (3, 3) and m.dtype == torch.uint8
    assert m[0].tolist() == [0b00000001, 0b10000010, 0] and m[1].tolist() == [0, 0, 0] and m[2].tolist() == [0, 0, 0b11]


def test_exported_upper_masks_excluded_items_before_top_k(exported, tiny_synth):
    """Through onnxruntime: excluded items never reach top_ids, top_scores are the best allowed log_probs in order,
    log_probs stays the unmasked distribution, rows of one batch keep their own masks, and a mask that leaves
    fewer than top_k items ends in -inf scores (which the gateway drops)."""
    import onnx

    model, out, _ = exported
    n = tiny_synth.n_items
    path = os.path.join(out, "triton-models", "llm_upper", "1", "model.onnx")
    (spec,) = [i for i in onnx.load(path).graph.input if i.name == "exclude_mask"]
    assert spec.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_value or d.dim_param for d in spec.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1] == mask_bytes(n)

    rows = np.array([[0, 1], [1, 7], [2, 30], [3, 12]], dtype=np.int64)
    ids, mask = make_prompt_batch(tiny_synth, rows)
    with torch.no_grad():
        hidden, _ = model.lower(ids, mask)
    rng = np.random.default_rng(7)
    allowed_few = [5, 77, n - 1]
    excluded = [
        sorted(rng.choice(n, 40, replace=False).tolist()),
        [],
        sorted(set(range(n)) - set(allowed_few)),
        list(range(0, n, 2)),
    ]
    packed = pack_exclusion(excluded, n).numpy()
    pad_bits = mask_bytes(n) * 8 - n
    assert pad_bits > 0
    packed[1, -1] |= (0xFF << (8 - pad_bits)) & 0xFF  # padding bits past the last item change nothing
    feeds = {
        "hidden": hidden.numpy(),
        "attention_mask": mask.numpy(),
        "memory": np.zeros((4, 1, model.cfg.d_model), np.float32),
        "memory_mask": np.zeros((4, 1), np.int64),
    }
    plain = ort_run(path, {**feeds, "exclude_mask": np.zeros_like(packed)})
    got = ort_run(path, {**feeds, "exclude_mask": packed})
    assert np.array_equal(got["log_probs"], plain["log_probs"])
    assert np.array_equal(got["top_ids"][1], plain["top_ids"][1])
    for row, ex in enumerate(excluded):
        items = got["top_ids"][row] - 3
        scores = got["top_scores"][row]
        finite = np.isfinite(scores)
        allowed = np.setdiff1d(np.arange(n), ex)
        k = min(100, len(allowed))
        assert finite.sum() == k and finite[:k].all()
        assert not np.isin(items[:k], ex).any()
        expect = np.sort(got["log_probs"][row][allowed])[::-1][:k]
        assert np.array_equal(scores[:k], expect)
        assert np.array_equal(scores[:k], got["log_probs"][row][items[:k]])
    assert sorted((got["top_ids"][2][:3] - 3).tolist()) == allowed_few
    assert np.isneginf(got["top_scores"][2][3:]).all()


def test_retriever_identity_is_semantic_retrieval_and_exports(tmp_path):
    d = 16
    r = identity_retriever(d)
    q = torch.randn(3, d)
    assert torch.equal(r.mlp(q), q)
    mem = torch.randn(3, 6, d)
    mm = torch.tensor([[1, 1, 0, 1, 0, 0], [0] * 6, [1] * 6])
    with torch.no_grad():
        s = r(q, mem, mm)
    assert torch.equal(s[1], torch.zeros(6)) and torch.equal(s[0][mm[0] == 0], torch.zeros(3))
    assert torch.allclose(s[0].sum(), torch.tensor(1.0)) and torch.allclose(s[2].sum(), torch.tensor(1.0))
    expect = torch.softmax((mem[0, [0, 1, 3]] @ q[0]), 0)
    assert torch.allclose(s[0][[0, 1, 3]], expect, atol=1e-6)
    path = str(tmp_path / "retriever.onnx")
    export_retriever(r, path)
    poisoned = mem.clone()
    poisoned[mm == 0] = float("nan")
    out = ort_run(path, {"query": q.numpy(), "memory": poisoned.numpy(), "memory_mask": mm.numpy()})
    assert np.abs(out["scores"] - s.numpy()).max() <= 1e-5
    # A trained (non-identity) retriever exports with the same graph.
    torch.manual_seed(0)
    t = Retriever(d).eval()
    export_retriever(t, path)
    out = ort_run(path, {"query": q.numpy(), "memory": mem.numpy(), "memory_mask": mm.numpy()})
    with torch.no_grad():
        assert np.abs(out["scores"] - t(q, mem, mm).numpy()).max() <= 1e-5


def test_committed_default_bundle_is_consistent():
    manifest = json.load(open(os.path.join(ROOT, "bundle", "manifest.json")))
    repo = os.path.normpath(os.path.join(ROOT, "bundle", manifest["model_repository"]))
    n_items, d = len(manifest["catalog"]), manifest["d_model"]
    check_repository(repo, d, n_items, manifest["top_k"])
    assert manifest["training_data"]["name"] == "synthetic" and n_items >= 200 and manifest["top_k"] == 100
    ids = np.array([[0, 0, 1, 3, 4], [1, 5, 6, 7, 8]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    out = ort_run(os.path.join(repo, "llm_lower", "1", "model.onnx"), {"input_ids": ids, "attention_mask": mask})
    assert out["hidden"].shape == (2, 5, d) and out["query"].shape == (2, d)
    up = ort_run(
        os.path.join(repo, "llm_upper", "1", "model.onnx"),
        {
            "hidden": out["hidden"],
            "attention_mask": mask,
            "memory": out["query"][:, None],
            "memory_mask": np.ones((2, 1), np.int64),
            "exclude_mask": pack_exclusion([[0, 1], []], n_items).numpy(),
        },
    )
    assert not np.isin(up["top_ids"][0], [3, 4]).any()
    assert up["log_probs"].shape == (2, n_items) and np.allclose(np.exp(up["log_probs"]).sum(1), 1, atol=1e-4)
    r = ort_run(
        os.path.join(ROOT, "bundle", "retriever.onnx"),
        {"query": out["query"], "memory": np.stack([out["query"]] * 3, 1), "memory_mask": np.array([[1, 1, 0], [0, 0, 0]])},
    )
    assert np.allclose(r["scores"], [[0.5, 0.5, 0], [0, 0, 0]], atol=1e-6)


def test_committed_default_bundle_regenerates_from_the_synthetic_data_with_its_policy():
    """The committed model comes from the documented synthetic data; its manifest policy excludes consumed items
    (the data's repeat rate is 0) and serves memory_k as decided on validation; through ONNX Runtime with the
    users' consumed sets as exclude_mask, no consumed item is ever in the top-k and the top-k is always full;
    excluding them (the served distribution) raises the target's probability on returning-interest samples, and a
    memory element of the returning interest does not lower it."""
    from automr.data import N_SPECIAL
    from automr.exclusion import consumed_mask, repeat_rate
    from automr.export import POLICY_KEYS
    from automr.synthetic import DEFAULT_SYNTHETIC, synthetic
    from synth_helpers import returning_rows

    manifest = json.load(open(os.path.join(ROOT, "bundle", "manifest.json")))
    prep = synthetic(**DEFAULT_SYNTHETIC)
    assert manifest["training_data"]["fingerprint"] == prep.fingerprint
    policy = manifest["policy"]
    assert list(policy) == list(POLICY_KEYS)
    assert policy["repeat_rate"] == repeat_rate(prep) == 0.0 and policy["exclude_consumed"] is True
    assert policy["memory_k"] in (0, 1, 3) and policy["reason"]
    repo = os.path.normpath(os.path.join(ROOT, "bundle", manifest["model_repository"]))
    rows, mem_rows = returning_rows(prep, n=300)
    ids, mask = (t.numpy() for t in make_prompt_batch(prep, rows))
    mids, mmask = (t.numpy() for t in make_prompt_batch(prep, mem_rows))
    lower = os.path.join(repo, "llm_lower", "1", "model.onnx")
    upper = os.path.join(repo, "llm_upper", "1", "model.onnx")
    hidden = ort_run(lower, {"input_ids": ids, "attention_mask": mask})["hidden"]
    z = ort_run(lower, {"input_ids": mids, "attention_mask": mmask})["query"]
    b = len(rows)
    tgt = np.array([prep.seqs[u][p] - 3 for u, p in rows])
    excluded = consumed_mask(prep, rows).numpy()
    packed = pack_exclusion([np.nonzero(e)[0].tolist() for e in excluded], prep.n_items).numpy()
    nll = {}
    for name, mm in (("without", np.zeros((b, 1), np.int64)), ("with", np.ones((b, 1), np.int64))):
        feeds = {"hidden": hidden, "attention_mask": mask, "memory": z[:, None], "memory_mask": mm, "exclude_mask": packed}
        out = ort_run(upper, feeds)
        # The served top-k: never a consumed item, always full (histories hold at most 120 of the 300 items).
        top = out["top_ids"] - N_SPECIAL
        assert top.shape[1] == manifest["top_k"] and np.isfinite(out["top_scores"]).all()
        assert not np.take_along_axis(excluded, top, 1).any()
        lp = out["log_probs"]
        nll[name] = float(-lp[np.arange(b), tgt].mean())
        served = np.where(excluded, -np.inf, lp)
        served = served - np.logaddexp.reduce(served, axis=1, keepdims=True)
        nll[name + "+exclude"] = float(-served[np.arange(b), tgt].mean())
    assert nll["without+exclude"] < nll["without"] - 0.2, nll
    assert nll["with"] <= nll["without"] and nll["with+exclude"] <= nll["without+exclude"], nll


def test_configs_record_the_bundle_model_version_and_the_ensemble_pins_it(exported):
    _, out, manifest = exported
    repo = os.path.join(out, "triton-models")
    for name in ("llm_lower", "llm_upper", "automr_recommend"):
        text = open(os.path.join(repo, name, "config.pbtxt")).read()
        found = re.findall(r'parameters \{\s*key: "model_version"\s*value \{ string_value: "([^"]+)" \}\s*\}', text)
        assert found == [manifest["model_version"]], name
    ensemble = open(os.path.join(repo, "automr_recommend", "config.pbtxt")).read()
    pinned = re.findall(r"model_version: (-?\d+)", ensemble)
    assert pinned == [manifest["models"]["version"]] * 2, "both steps pin the bundle's version, never -1 (latest)"
