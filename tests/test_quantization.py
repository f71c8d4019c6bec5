"""The quantized variants: conversion, manifest, determinism, selection by model id through the WASI-NN guest,
the calibration photos and the accuracy harness on a small set. (The full table is bench/quantization.py.)"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import edgewasm
from conftest import require
from edgewasm._errors import QuantizeError
from edgewasm.models import (
    ModelStoreError,
    _accuracy,
    _adaround,
    _biascorr,
    _calibration,
    _ewt,
    _pairbound,
    _quantize,
    _store,
    _tflite,
    _variant_store,
    list_models,
    verify,
)
from edgewasm.models._cli import models as models_cli
from edgewasm.models._quantize import GEMM_LAYERS
from edgewasm.models._variants import RECIPES

pytest_plugins = ["_model_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
CAT = ROOT / "examples" / "cat.jpg"
CAT_CLASSES = {281, 282, 285}
BASE = "efficientnet-lite0"
FP16, INT8 = f"{BASE}-fp16", f"{BASE}-int8"
VERSIONS = {BASE: "1", FP16: "1-fp16", INT8: "1-int8"}


def _tools() -> None:
    """Skip (naming the extra) unless the quantize extra's tools and photo packages import."""
    from _model_fixtures import QUANTIZE_MODULES  # (imported late: pytest loads it as a plugin of this module)

    require(*QUANTIZE_MODULES)


@pytest.fixture(scope="session")
def vstore(model_store: Path) -> Path:
    """A store with the base model and both variants installed through the public install()."""
    from _model_fixtures import variants_store

    return variants_store()


# --- conversion and manifest ------------------------------------------------------------------------------


def test_variant_entries_and_manifest(vstore: Path) -> None:
    assert {r["id"]: r["version"] for r in list_models(vstore)} == VERSIONS
    base = verify(BASE, vstore)
    for mid, precision in ((FP16, "fp16"), (INT8, "int8")):
        m = verify(mid, vstore)
        assert m["id"] == mid and m["version"] == VERSIONS[mid]
        pure = {"pure-int8.ewp"} if precision == "int8" else set()  # the pure guest's packed INT8 image (issue 13)
        assert set(m["files"]) == {"labels.txt", "model.onnx", "weights.ewt", "openvino/model.xml",
                                   "openvino/model.bin", "model.tflite", *pure}  # fmt: skip
        assert (m["onnx"], m["openvino"], m["tflite"]) == ("model.onnx", "openvino/model.xml", "model.tflite")
        assert m["input"] == base["input"] and m["output"] == base["output"]
        v = m["variant"]
        assert v["of"] == BASE and v["precision"] == precision
        assert v["of_onnx_sha256"] == base["files"]["model.onnx"]["sha256"]
        assert v["onnx"]["versions"]["onnxruntime"] and v["openvino"]["versions"]["openvino"]
        assert v["tflite"]["versions"]["ai-edge-litert"]
        assert (vstore / mid / "labels.txt").read_bytes() == (vstore / BASE / "labels.txt").read_bytes()
        assert _ewt.read(vstore / mid / "weights.ewt").meta["version"] == VERSIONS[mid]
    fp16, int8 = (json.loads((vstore / i / "manifest.json").read_text())["variant"] for i in (FP16, INT8))
    assert fp16["onnx"]["weights"] == "float16" and "calibration" not in fp16
    assert int8["onnx"]["format"] == "QDQ" and int8["onnx"]["per_channel"] is True
    assert int8["onnx"]["activations"].startswith("uint8") and int8["onnx"]["weights"].startswith("int8")
    assert int8["openvino"]["from"].startswith("model.onnx") and "per output channel" in int8["openvino"]["weights"]
    assert int8["onnx"]["bias_correction"]["layers"] == 50 and int8["pure"]["bias_correction"].startswith("sequential")
    assert int8["tflite"]["weights"] == "int8, symmetric, per output channel" and fp16["tflite"]["weights"].startswith(
        "float16"
    )
    cal = int8["calibration"]
    photos = _calibration.calibration_photos()
    assert cal["sets"] == ["samples"] and cal["count"] == len(photos) == 20
    assert cal["sha256"] == _calibration.digest(photos) and cal["files"] == [p.name for p in photos]
    size = {mid: (vstore / mid / "model.onnx").stat().st_size for mid in VERSIONS}
    assert 0.45 < size[FP16] / size[BASE] < 0.55
    assert size[INT8] / size[BASE] < 0.3


def test_int8_file_holds_the_qdq_weights(vstore: Path) -> None:
    """w_scale * q is one of the two steps around the FP32 weight (adaptive rounding picks the one below or
    above), in the EWT layouts, but where a pair bound lowered a weight (towards zero, further than a step);
    8 bits everywhere."""
    q8 = _ewt.read(vstore / INT8 / "weights.ewt")
    fp32 = _ewt.read(vstore / BASE / "weights.ewt").tensors
    assert q8.meta["precision"] == "int8" and q8.blocks == _ewt.read(vstore / BASE / "weights.ewt").blocks
    layers = [n[: -len(".w")] for n in fp32 if n.endswith(".w")]
    assert len(layers) == 50  # 49 convolutions and the classifier
    beyond_half = 0
    for layer in layers:
        q, scale = q8.tensors[f"{layer}.w"], q8.tensors[f"{layer}.w_scale"]
        assert q.dtype == np.int8 and q.shape == fp32[f"{layer}.w"].shape
        assert scale.dtype == np.float32 and scale.shape == (q.shape[-1],)  # per output channel (the last axis)
        deq, w = q.astype(np.float64) * scale, fp32[f"{layer}.w"].astype(np.float64)
        lowered = (np.abs(deq) < np.abs(w) - scale * (1 + 1e-6)) & (np.sign(deq) * np.sign(w) >= 0)
        err = np.abs(deq - w)
        assert np.all((err < scale * (1 + 1e-6)) | lowered), layer
        beyond_half += int(np.count_nonzero((err > scale * (0.5 + 1e-6)) & ~lowered))
        if layer in GEMM_LAYERS:
            assert lowered.mean() < 0.01, layer  # the bound costs few weights
            assert 100 <= int(np.abs(q).max()) <= 127, layer  # 8 bits, not 7
        else:
            assert not lowered.any() and int(np.abs(q).max()) >= 126, layer
        np.testing.assert_array_equal(q8.tensors[f"{layer}.b"], fp32[f"{layer}.b"])
        lo, hi = q8.tensors[f"{layer}.x_range"]
        assert lo <= 0.0 < hi
    assert sum(1 for n in q8.tensors if n.endswith(".add_range")) == 9
    rounding = json.loads((vstore / INT8 / "manifest.json").read_text())["variant"]["onnx"]["rounding"]
    assert beyond_half > 0.9 * rounding["weights_changed"] > 0  # (nearly) the ones adaptive rounding moved


def test_pair_bound_holds_for_every_weight(vstore: Path) -> None:
    """No uint8 x int8 pair product sum of a matrix-product layer can saturate int16 (pmaddubsw), in the ONNX
    order of the reduction and, for the stem, the [kh, kw, cin] order NHWC kernels read; the depthwise
    convolutions keep plain 8-bit weights."""
    qdq = _quantize.read_qdq(vstore / INT8 / "model.onnx")
    for layer, q in qdq.weights.items():
        values = q.values.astype(np.int64)
        if layer in GEMM_LAYERS:
            orders = _biascorr.STEM_ORDERS if layer == "stem" else ((),)
            assert _pairbound.bounded(values, orders), layer
            flat = values.reshape(len(values), -1)
            worst = (np.abs(flat[:, 1:]) + np.abs(flat[:, :-1])).max()
            assert worst * 255 <= 32767 and worst > 64, layer
        else:
            assert np.abs(values).max() == 127, layer


def test_pair_bounded_quantizer() -> None:
    """The bound holds for every adjacent pair in every order asked, weights stay within half a step but where
    lowered, and the error is well below 7-bit weights'."""
    rng = np.random.default_rng(3)
    w = rng.laplace(0, 0.05, (64, 3, 3, 3)).astype(np.float32)
    w[:, 0, 1, 1] = 0.6  # neighbours of big weights: the bound must bite
    w[:, 0, 1, 2] = -0.55
    q, scale = _pairbound.quantize_channels(w, _biascorr.STEM_ORDERS)
    assert q.dtype == np.int8 and scale.shape == (64,)
    assert _pairbound.bounded(q, _biascorr.STEM_ORDERS)
    assert not _pairbound.bounded(np.clip(np.rint(w / (np.abs(w).reshape(64, -1).max(1) / 127)[:, None, None, None]),
                                          -127, 127), ((),))  # fmt: skip
    w = rng.laplace(0, 0.05, (64, 96)).astype(np.float32)  # a 1x1 conv's weights: few pairs near the bound
    q, scale = _pairbound.quantize_channels(w)
    assert _pairbound.bounded(q)
    err = ((q * scale[:, None] - w) ** 2).sum()
    s7 = np.abs(w).max(1) / 63
    err7 = ((np.rint(w / s7[:, None]) * s7[:, None] - w) ** 2).sum()
    assert err < 0.5 * err7, (err, err7)


def test_adaptive_rounding_descends() -> None:
    """On a layer whose inputs are correlated, rounding down or up by coordinate descent has a smaller output error
    than the nearest step, every value stays at the step below or above, and the pair bound holds (in both orders
    for a stem-shaped weight)."""
    rng = np.random.default_rng(5)
    shape = (24, 3, 3, 3)
    w = rng.laplace(0, 0.05, shape)
    w[:, 0, 1, 1], w[:, 0, 1, 2] = 0.6, -0.55  # the pair bound bites here
    q0, scale = _pairbound.quantize_channels(w, _biascorr.STEM_ORDERS)
    mix = rng.normal(size=(27, 27)) + 3 * np.eye(27)
    xf = rng.normal(size=(2000, 27)) @ mix  # correlated inputs
    xq = xf + rng.normal(0, 0.05, xf.shape)  # the quantized model's, a little off
    h, c = (xq.T @ xq)[None], (xq.T @ xf)[None]
    s = scale.astype(np.float64)
    x = w.reshape(24, -1) / s[:, None]
    near = _adaround.neighbours(shape, _biascorr.STEM_ORDERS)
    q = _adaround.descend(q0.reshape(24, -1).astype(np.int64), x, s, h, c, near)

    def error(values: np.ndarray) -> float:  # || X_fp w - X_q (q * scale) ||^2
        return float(((xf @ w.reshape(24, -1).T - xq @ (values * s[:, None]).T) ** 2).sum())

    assert error(q) < 0.9 * error(q0.reshape(24, -1))
    assert (q != q0.reshape(24, -1)).mean() > 0.05
    start = q0.reshape(24, -1).astype(np.float64)
    assert np.all((np.abs(q - x) < 1) | (np.abs(q - x) <= np.abs(start - x)))
    assert _pairbound.bounded(q.reshape(shape), _biascorr.STEM_ORDERS) and np.abs(q).max() <= 127
    dw = rng.normal(size=(8, 9, 9))  # depthwise: one statistic per channel, no bound
    hd = np.einsum("cpk,cpl->ckl", dw, dw)
    xd = rng.normal(0, 20, (8, 9))
    qd = _adaround.descend(np.rint(xd).astype(np.int64), xd, np.ones(8), hd, hd, None)
    assert np.all(np.abs(qd - xd) < 1)

    def dw_error(values: np.ndarray) -> float:
        return float(np.einsum("ck,ckl,cl->", xd - values, hd, xd - values))

    assert dw_error(qd) < dw_error(np.rint(xd))


def test_adaptive_rounding_follows_fp32_closer(model_entry: Path, tmp_path: Path) -> None:
    """On the photos it was calibrated on, the adaptively rounded model's logits are closer to FP32's than the
    nearest-rounded one's (both without bias correction, so only the rounding differs), with the pair bound kept."""
    _tools()
    photos = [p for p in _calibration.calibration_photos() if p.name.endswith(("chelsea.png", "coffee.png",
                                                                               "rocket.jpg", "astronaut.png"))]
    batch = _calibration.calibration_tensors(photos)
    src = model_entry / "model.onnx"
    ref = _accuracy.onnx_runner(src)(batch)
    err = {}
    for rounding in _quantize.ROUNDINGS:
        path = tmp_path / f"{rounding}.onnx"
        record = _quantize.onnx_int8(src, path, batch, rounding=rounding, bias_correction=False)
        err[rounding] = float(np.abs(_accuracy.onnx_runner(path)(batch) - ref).mean())
        for layer, q in _quantize.read_qdq(path).weights.items():
            if layer in GEMM_LAYERS:
                assert _pairbound.bounded(q.values, _biascorr.STEM_ORDERS if layer == "stem" else ((),)), layer
    assert record["rounding"] == "nearest"
    assert err["adaptive"] < 0.8 * err["nearest"], err
    with pytest.raises(ValueError, match="rounding"):
        _quantize.onnx_int8(src, tmp_path / "x.onnx", batch, weights="7-bit", rounding="adaptive")


def test_bias_correction_removes_layer_shifts(model_entry: Path, tmp_path: Path) -> None:
    """On a small set, sequential bias correction brings every layer's mean output shift against FP32 down
    (the logits' and a late projection's by most of it)."""
    _tools()
    photos = [p for p in _calibration.calibration_photos() if p.name.endswith(("chelsea.png", "coffee.png",
                                                                               "rocket.jpg", "astronaut.png"))]
    batch = _calibration.calibration_tensors(photos)
    src, path = model_entry / "model.onnx", tmp_path / "q.onnx"
    _quantize.onnx_int8(src, path, batch, bias_correction=False)
    before = _biascorr.output_shifts(path, src, batch)
    record = _biascorr.correct_biases(path, src, batch)
    after = _biascorr.output_shifts(path, src, batch)
    assert record["layers"] == len(before) == 50
    for layer in ("blocks.14.project", "fc"):
        assert np.abs(after[layer]).mean() < 0.5 * np.abs(before[layer]).mean(), layer
    assert sum(np.abs(a).mean() for a in after.values()) < 0.5 * sum(np.abs(b).mean() for b in before.values())


def test_fp16_file_holds_float16_weights(vstore: Path) -> None:
    f16 = _ewt.read(vstore / FP16 / "weights.ewt").tensors
    fp32 = _ewt.read(vstore / BASE / "weights.ewt").tensors
    assert set(f16) == set(fp32)
    for name, w in fp32.items():
        assert f16[name].dtype == np.float16 and f16[name].shape == w.shape
        np.testing.assert_allclose(f16[name].astype(np.float32), w, rtol=1e-3, atol=1e-7)


def test_variants_are_deterministic(tmp_path: Path, model_entry: Path) -> None:
    """Twice in one process (OpenVINO's node-name counter has moved on) gives the same bytes; other
    calibration photos give other bytes."""
    _tools()
    photos = _calibration.calibration_photos()
    calib = _calibration.calibration_tensors(photos[:3])
    other = _calibration.calibration_tensors(photos[3:6])
    src = model_entry / "model.onnx"
    fp32 = _ewt.read(model_entry / "weights.ewt").tensors

    def build(out: Path, batch: np.ndarray, fp16: bool = True) -> dict[str, bytes]:
        _quantize.onnx_int8(src, out / "int8.onnx", batch)
        _quantize.openvino_from_qdq(out / "int8.onnx", out / "int8/model.xml")
        (out / "int8.tflite").write_bytes(_tflite.quantize_int8(_tflite.build_float(fp32), batch)[0])
        if fp16:
            (out / "fp16.tflite").write_bytes(_tflite.build_float(fp32, fp16=True))
            _quantize.onnx_fp16(src, out / "fp16.onnx")
            _quantize.openvino_fp16(src, out / "fp16/model.xml")
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    a, b, c = build(tmp_path / "a", calib), build(tmp_path / "b", calib), build(tmp_path / "c", other, fp16=False)
    assert len(a) == 8
    for name in a:
        assert a[name] == b[name], f"{name} differs between two identical builds"
    for name in ("int8.onnx", "int8/model.bin", "int8.tflite"):
        assert a[name] != c[name], name


# --- selection by model id --------------------------------------------------------------------------------


# the FP32 entry has no model.tflite (its converter predates LiteRT here); the variants have one each
GUEST_CASES = [(m, f) for m in (BASE, FP16, INT8) for f in ("onnx", "openvino", "tflite") if (m, f) != (BASE, "tflite")]


@pytest.mark.parametrize(("mid", "fmt"), GUEST_CASES)
def test_wasinn_guest_serves_every_variant(vstore: Path, mid: str, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEWASM_MODELS", str(vstore))  # the store the preload's model id resolves in
    preload = mid if fmt == "onnx" else f"{mid}:store:{mid}:{fmt}"
    with edgewasm.load(ROOT / "wasm" / "wasinn_classifier.wasm", models=str(vstore), nn_preload=[preload]) as g:
        reply = g.infer({"model_id": mid, "image": CAT.read_bytes(), "return_logits": True})
    assert reply["class_id"] in CAT_CLASSES and reply["label"] in ("tiger cat", "tabby", "Egyptian cat")
    assert reply["model_version"] == VERSIONS[mid]


def test_cli_preload_by_variant_id(vstore: Path) -> None:
    """The documented command, in a real process: --nn-preload names the variant like any model."""
    env = dict(os.environ, EDGEWASM_MODELS=str(vstore))
    cmd = [sys.executable, "-m", "edgewasm", "run", str(ROOT / "wasm" / "wasinn_classifier.wasm"),
           "--nn-preload", INT8, "--image", str(CAT), "--model-id", INT8]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    reply = json.loads(run.stdout)
    assert reply["class_id"] == 282 and reply["model_version"] == "1-int8"


def test_int8_logits_follow_fp32(vstore: Path) -> None:
    photos = [p for p in _calibration.calibration_photos() if p.name.endswith(("chelsea.png", "coffee.png"))]
    _, batch = _accuracy.tensors([(p.name, p.read()) for p in photos], with_views=False)
    ref = _accuracy.onnx_runner(vstore / BASE / "model.onnx")(batch)
    for runner in (_accuracy.onnx_runner(vstore / INT8 / "model.onnx"),
                   _accuracy.openvino_runner(vstore / INT8 / "openvino/model.xml"),
                   _accuracy.litert_runner(vstore / INT8 / "model.tflite")):  # fmt: skip
        out = runner(batch)
        a = _accuracy.agreement(ref, out)
        assert a.count == 2 and a.mean_abs < 0.5, a
        for want, got in zip(ref, out, strict=True):
            # chelsea is a near tie in FP32 (tiger cat 9.19, Egyptian cat 9.07): an INT8 kernel may pick the runner-up
            # (OpenVINO's does on an AVX-512 VNNI host); any other disagreement is an error
            if got.argmax() != want.argmax():
                assert got.argmax() == np.argsort(want)[-2] and want.max() - want[got.argmax()] < 0.25, a


def test_litert_float_model_matches_onnx(vstore: Path, tmp_path: Path) -> None:
    """The TFLite writer (LiteRT's schema, TensorFlow's SAME padding, NCHW input) is the same network."""
    photos = [p for p in _calibration.calibration_photos() if p.name.endswith(("chelsea.png", "rocket.jpg"))]
    _, batch = _accuracy.tensors([(p.name, p.read()) for p in photos], with_views=False)
    ref = _accuracy.onnx_runner(vstore / BASE / "model.onnx")(batch)
    path = tmp_path / "fp32.tflite"
    path.write_bytes(_tflite.build_float(_ewt.read(vstore / BASE / "weights.ewt").tensors))
    fp32 = _accuracy.litert_runner(path)(batch)
    assert np.abs(fp32 - ref).max() < 1e-3
    fp16 = _accuracy.litert_runner(vstore / FP16 / "model.tflite")(batch)
    assert np.argmax(fp16, 1).tolist() == np.argmax(ref, 1).tolist() and np.abs(fp16 - ref).max() < 0.2


# --- the store: repair, errors, the missing extra ---------------------------------------------------------


def _store_with_rebuild_spy(vstore: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """A copy of the base and INT8 entries, and the ids of the variants a rebuild starts for (each one stops at
    once with "rebuild started")."""
    store = tmp_path / "store"
    for mid in (BASE, INT8):
        shutil.copytree(vstore / mid, store / mid)
    built: list[str] = []

    def fake_build(v: Any, *args: Any) -> dict[str, Any]:
        built.append(v.id)
        raise RuntimeError("rebuild started")

    monkeypatch.setattr(_variant_store, "_build", fake_build)
    return store, built


def test_damaged_variant_is_rebuilt(vstore: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, built = _store_with_rebuild_spy(vstore, tmp_path, monkeypatch)
    assert _store.install(INT8, store=store) == store / INT8 and not built  # healthy: kept
    with pytest.raises(RuntimeError, match="rebuild started"):  # asked for another calibration
        _variant_store.install_variant(INT8, store, calibration=["samples", "opencv"])
    built.clear()
    with (store / INT8 / "model.onnx").open("r+b") as f:
        f.seek(1000)
        f.write(b"\0\0\0\0")
    with pytest.raises(RuntimeError, match="rebuild started"):
        _store.install(INT8, store=store)
    assert built == [INT8]
    assert not [p for p in store.iterdir() if p.name.startswith(".")]  # the failed attempt left nothing


def test_older_recipe_is_rebuilt(vstore: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest records the recipe; an entry made by an older one (recipe 2: the weights rounded to the
    nearest step) is rebuilt by a plain install."""
    for mid, precision in ((INT8, "int8"), (FP16, "fp16")):
        manifest = json.loads((vstore / mid / "manifest.json").read_text())
        assert manifest["variant"]["recipe"] == RECIPES[precision]
    int8 = json.loads((vstore / INT8 / "manifest.json").read_text())["variant"]
    assert RECIPES["int8"] == 3 and int8["onnx"]["rounding"]["method"].startswith("sequential adaptive")
    store, built = _store_with_rebuild_spy(vstore, tmp_path, monkeypatch)
    assert _store.install(INT8, store=store) == store / INT8 and not built  # current recipe: kept
    path = store / INT8 / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["variant"]["recipe"] = 2  # recipe 2: the same with the weights rounded to the nearest step
    path.write_text(json.dumps(manifest))
    _store.verify(INT8, store)  # still a sound entry: only the recipe is old
    with pytest.raises(RuntimeError, match="rebuild started"):
        _store.install(INT8, store=store)
    assert built == [INT8]


_NO_TELEMETRY_CHILD = r"""
import unittest.mock
from edgewasm.models import _quantize
_quantize.need("openvino", "openvino")
_quantize.need("nncf", "nncf")
import nncf.telemetry.wrapper as wrapper
assert isinstance(wrapper.telemetry, unittest.mock.MagicMock), type(wrapper.telemetry)  # NNCF's no-op stub
import openvino_telemetry  # a later import of the package itself still works
"""


def test_variant_tools_write_no_telemetry_into_home(tmp_path: Path) -> None:
    """Making a variant imports openvino and nncf; outside pytest a plain `import nncf` starts OpenVINO's telemetry
    (a client id and usage counts in ~/intel, events queued for Google Analytics). In a child process: NNCF turns
    its telemetry off by itself under pytest."""
    require("openvino", "nncf")
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    for key in ("CI", "NNCF_CI", "NNCF_DEV"):
        env.pop(key, None)
    bare = subprocess.run([sys.executable, "-c", "import nncf"], env=env, timeout=300, check=False)
    assert bare.returncode == 0 and (home / "intel").exists(), "the premise: plain nncf writes ~/intel"
    shutil.rmtree(home / "intel")
    proc = subprocess.run([sys.executable, "-c", _NO_TELEMETRY_CHILD], env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (home / "intel").exists()


_SIGNAL_STACK_CHILD = r"""
import gc, sys
from pathlib import Path
import numpy as np
import edgewasm
from edgewasm.models import _accuracy, _quantize
from edgewasm.nn import _sigstack

src, out = Path(sys.argv[1]), Path(sys.argv[2])
trap = edgewasm.load(sys.argv[3])
def trapped():
    try:
        trap.infer_bytes(b"x")
    except edgewasm.GuestTrap:
        return True
    return False
assert trapped()
wasmtime_stack = _sigstack.current()  # installed by wasmtime on this thread's first wasm call
batch = np.random.default_rng(0).uniform(-2, 2, (2, 3, 224, 224)).astype(np.float32)
for name in ("a", "b"):
    _quantize.openvino_int8(src, out / name / "model.xml", batch)
    assert _sigstack.current() == wasmtime_stack, ("nncf", _sigstack.current(), wasmtime_stack)
runners = [_accuracy.openvino_runner(out / name / "model.xml") for name in ("a", "b")]
for run in runners:
    run(batch[:1])
assert _sigstack.current() == wasmtime_stack, ("runner", _sigstack.current(), wasmtime_stack)
del runners, run  # released in the order they were made
gc.collect()
print(" ".join("trapped" for _ in range(3) if trapped()))
"""


def test_openvino_tools_leave_the_threads_signal_stack_to_wasmtime(tmp_path: Path, model_entry: Path) -> None:
    """NNCF's statistics and the accuracy harness's OpenVINO runner compile models on the CPU plugin, which replaces
    the thread's alternate signal stack; with Cores of their own, released in the order they were made, the next
    trap of a guest on that thread killed the process (SIGSEGV). In a child process, so that a failure cannot take
    the test run with it."""
    require("openvino", "nncf")
    cmd = [sys.executable, "-c", _SIGNAL_STACK_CHILD, str(model_entry / "model.onnx"), str(tmp_path),
           str(ROOT / "wasm" / "trap.wat")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split() == ["trapped"] * 3


def test_missing_extra_is_one_line(tmp_path: Path, model_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    shutil.copytree(model_store / BASE, store / BASE)
    real = _quantize.importlib.import_module

    def no_nncf(name: str, package: str | None = None) -> Any:
        if name.split(".")[0] in ("nncf", "onnxruntime"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(_quantize.importlib, "import_module", no_nncf)
    with pytest.raises(
        QuantizeError, match=r"install the quantize extra: pip install -c constraints.txt -e '\.\[quantize\]'"
    ):
        _quantize.need("nncf", "nncf")
    result = CliRunner().invoke(models_cli, ["install", BASE, "--variant", "fp16", "--store", str(store)])
    assert result.exit_code == 1
    err = result.output.strip().splitlines()
    assert err[-1].startswith("Error: onnxruntime is not installed; install the quantize extra"), result.output
    assert not (store / FP16).exists()


def test_cli_variant_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(models_cli, ["install", INT8, "--variant", "int8", "--store", str(tmp_path)])
    assert result.exit_code == 1 and "already a variant" in result.output
    result = CliRunner().invoke(models_cli, ["install", "--variant", "int4", "--store", str(tmp_path)])
    assert result.exit_code == 2 and "int4" in result.output
    with pytest.raises(ModelStoreError, match="not a quantized variant"):
        _variant_store.install_variant(BASE, tmp_path)


# --- calibration photos -----------------------------------------------------------------------------------


def test_calibration_photos(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _tools()
    photos = _calibration.calibration_photos()
    assert len(photos) == 20 and len({p.name for p in photos}) == 20
    assert photos[0].name == "scikit-image/astronaut.png" and photos[-1].name == "matplotlib/grace_hopper.jpg"
    assert _calibration.digest(photos) == _calibration.digest(list(photos))
    assert _calibration.digest(photos[::-1]) != _calibration.digest(photos)
    batch = _calibration.calibration_tensors(photos[:2])
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32
    assert float(batch.min()) >= -127 / 128 and float(batch.max()) <= 128 / 128
    # without opencv-doc the default set still works and the opencv set says what to install
    monkeypatch.setattr(_calibration, "OPENCV_DIR", tmp_path / "none")
    assert _calibration.available_sets() == ["samples"]
    assert [p.name for p in _calibration.calibration_photos()] == [p.name for p in photos]
    with pytest.raises(_calibration.CalibrationError, match="apt-get install opencv-doc"):
        _calibration.calibration_photos(["samples", "opencv"])
    with pytest.raises(_calibration.CalibrationError, match="unknown calibration set"):
        _calibration.photo_set("imagenet")


def test_calibration_package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_calibration, "_package_dir", lambda package: None)
    with pytest.raises(_calibration.CalibrationError, match=r"scikit-image are missing.*-e '\.\[quantize\]'"):
        _calibration.calibration_photos()


# --- the accuracy harness on a small set ------------------------------------------------------------------


@pytest.fixture(scope="session")
def labeled() -> list[_accuracy.LabeledPhoto]:
    try:
        return _accuracy.labeled_photos()
    except _accuracy.AccuracyError as exc:  # no PyPI here
        pytest.skip(str(exc))


def test_labeled_photos(labeled: list[_accuracy.LabeledPhoto]) -> None:
    assert len(labeled) == 20
    assert labeled[0].name == "foolbox/imagenet_00_243.jpg" and labeled[0].label == 243
    assert all(p.data[:2] == b"\xff\xd8" for p in labeled)  # JPEGs
    cache = _accuracy.cache_dir().resolve()
    assert cache != ROOT and ROOT not in cache.parents  # never inside the repository


def test_accuracy_harness_small_set(vstore: Path, labeled: list[_accuracy.LabeledPhoto]) -> None:
    """Top-1 on the labeled photos (INT8 within one photo of FP32) and agreement on a few views."""
    _, batch = _accuracy.tensors([(p.name, p.data) for p in labeled], with_views=False)
    labels = [p.label for p in labeled]
    fp32 = _accuracy.onnx_runner(vstore / BASE / "model.onnx")(batch)
    int8 = _accuracy.onnx_runner(vstore / INT8 / "model.onnx")(batch)
    top1 = _accuracy.top1_correct(fp32, labels)
    assert top1 >= 15 and abs(_accuracy.top1_correct(int8, labels) - top1) <= 1
    assert _accuracy.top1_correct(fp32, [(c + 1) % 1000 for c in labels]) <= 1  # the metric can fail
    names, views = _accuracy.tensors([(labeled[0].name, labeled[0].data)])
    assert names == [f"{labeled[0].name}#{v}" for v in _accuracy.VIEWS] and views.shape == (4, 3, 224, 224)
    assert not np.array_equal(views[0], views[1])  # the flip is a different image
    ref = _accuracy.onnx_runner(vstore / BASE / "model.onnx")(views)
    same = _accuracy.agreement(ref, ref)
    assert (same.top1_equal, same.max_abs, same.fraction) == (4, 0.0, 1.0)
    shuffled = _accuracy.agreement(ref, ref[::-1].copy())
    assert shuffled.max_abs > 0.1
    with pytest.raises(ValueError, match="do not match"):
        _accuracy.agreement(ref, ref[:2])


def test_views() -> None:
    px = np.arange(8 * 12 * 3, dtype=np.uint8).reshape(8, 12, 3)
    v = dict(_accuracy.views(px))
    assert list(v) == list(_accuracy.VIEWS)
    np.testing.assert_array_equal(v["flip"], px[:, ::-1])
    assert v["crop-tl"].shape == (6, 9, 3) and v["crop-br"][-1, -1, 0] == px[-1, -1, 0]


# --- the EWT container's dtypes ---------------------------------------------------------------------------


def test_ewt_typed_tensors() -> None:
    tensors = {"h": np.array([1.5, -2.0], np.float16), "q": np.array([[-128, 127]], np.int8),
               "i": np.array([70000], np.int32), "f": np.arange(3, dtype=np.float64)}  # fmt: skip
    back = _ewt.decode(_ewt.encode({"version": "x"}, [], tensors)).tensors
    for name, arr in tensors.items():
        assert back[name].dtype == (np.float32 if name == "f" else arr.dtype)
        np.testing.assert_array_equal(back[name], arr)
    raw = _ewt.encode({}, [], {"q": np.zeros(4, np.int8)})
    with pytest.raises(ModelStoreError, match="corrupt EWT header"):
        _ewt.decode(raw.replace(b" i8 ", b" u4 "))
    with pytest.raises(ValueError, match="cannot store dtype int64"):
        _ewt.encode({}, [], {"x": np.zeros(2, np.int64)})


def test_pure_guest_refuses_variant_ids(vstore: Path) -> None:
    """The pure guest has no FP16 kernels: that variant id is not_found, never FP32 under its name (INT8 it
    serves from the variant's pure-int8.ewp: tests/test_pure_int8.py)."""
    with edgewasm.load(ROOT / "wasm" / "classifier.wasm", models=str(vstore)) as g:
        with pytest.raises(edgewasm.GuestError) as err:
            g.infer({"model_id": FP16, "image": CAT.read_bytes()})
        assert err.value.kind == "not_found"
        assert g.infer({"model_id": INT8, "image": CAT.read_bytes()})["model_version"] == VERSIONS[INT8]


# --- the generated table ----------------------------------------------------------------------------------


@functools.cache
def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_quantization", ROOT / "bench" / "quantization.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_doc_table_is_the_committed_run() -> None:
    """docs/quantization.md's generated block is what bench/quantization.py renders from the committed JSON."""
    bench = _bench_module()
    result = json.loads((ROOT / "bench" / "results" / "quantization.json").read_text(encoding="utf-8"))
    doc = (ROOT / "docs" / "quantization.md").read_text(encoding="utf-8")
    block = bench.render(result, result["command"])
    assert block in doc, (
        "docs/quantization.md is stale: run python bench/quantization.py --render bench/results/quantization.json"
    )
    assert "| LiteRT | INT8 |" in block and "| pure-Wasm guest | INT8 (7-bit" in block and "placeholder" not in block


def test_doc_render_replaces_only_the_block(tmp_path: Path) -> None:
    bench = _bench_module()
    doc = tmp_path / "q.md"
    doc.write_text(f"intro\n{bench.BEGIN}\nold\n{bench.END}\noutro\n", encoding="utf-8")
    bench.write_doc(doc, f"{bench.BEGIN}\nnew\n{bench.END}")
    assert doc.read_text(encoding="utf-8") == f"intro\n{bench.BEGIN}\nnew\n{bench.END}\noutro\n"
