"""The real backends: EfficientNet-Lite0 through WASI-NN (ONNX Runtime and OpenVINO) gives ONNX Runtime's
answers on real photos; LiteRT runs real TFLite flatbuffers; missing packages and bad models are errnos."""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data

import edgewasm
from _model_fixtures import model_entry, model_store  # noqa: F401  (fixtures)
from _nn_support import WASM, RawGuest, tiny_onnx, tiny_tflite
from edgewasm.models._preprocess import preprocess_pixels
from edgewasm.nn import NnErrno, WasiNN
from edgewasm.nn._graphcache import GraphCache

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
MODEL_ID = "efficientnet-lite0"


@pytest.fixture(scope="module")
def reference(model_entry: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:  # noqa: F811
    """photo -> (uint8 pixels, preprocessed HWC tensor, ONNX Runtime logits), computed in Python."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_entry / "model.onnx"), providers=["CPUExecutionProvider"])
    out = {}
    for name in PHOTOS:
        pixels = getattr(skimage.data, name)()
        hwc = preprocess_pixels(pixels).astype(np.float32)
        nchw = np.ascontiguousarray(hwc.transpose(2, 0, 1)[None])
        out[name] = (pixels, hwc, sess.run(None, {"input": nchw})[0][0])
    return out


@pytest.fixture(scope="module")
def openvino_ir(model_entry: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:  # noqa: F811
    """The store's OpenVINO IR; converted here with openvino.convert_model if the store has none."""
    xml, bin_ = model_entry / "openvino" / "model.xml", model_entry / "openvino" / "model.bin"
    if xml.is_file() and bin_.is_file():
        return xml, bin_
    import openvino as ov

    out = tmp_path_factory.mktemp("ir") / "model.xml"
    ov.save_model(ov.convert_model(str(model_entry / "model.onnx")), str(out), compress_to_fp16=False)
    return out, out.with_suffix(".bin")


def _preloads(kind: str, entry: Path, ir: tuple[Path, Path]) -> list[str]:
    if kind == "onnx":
        return [f"{MODEL_ID}:ONNX:CPU:{entry / 'model.onnx'}"]
    return [f"{MODEL_ID}:OpenVINO:CPU:{ir[0]}:{ir[1]}"]


@pytest.fixture(scope="module", params=["onnx", "openvino"])
def classifier(
    request: pytest.FixtureRequest,
    model_store: Path,  # noqa: F811
    model_entry: Path,  # noqa: F811
    openvino_ir: tuple[Path, Path],
) -> Iterator[tuple[str, edgewasm.Guest]]:
    guest = edgewasm.load(
        WASM / "wasinn_classifier.wasm",
        timeout=60.0,
        models=str(model_store),
        nn_preload=_preloads(request.param, model_entry, openvino_ir),
    )
    yield request.param, guest
    guest.close()


@pytest.mark.parametrize("photo", PHOTOS)
def test_guest_top1_matches_onnxruntime(classifier: tuple[str, edgewasm.Guest], reference: Any, photo: str) -> None:
    backend, guest = classifier
    pixels, hwc, logits = reference[photo]
    want = int(np.argmax(logits))
    reply = guest.infer({"pixels": pixels, "top_k": 5, "return_logits": True})
    assert reply["class_id"] == want, f"{backend}/{photo}: {reply['label']} vs class {want}"
    assert [t["class_id"] for t in reply["top_k"]][:1] == [want]
    assert len(reply["top_k"]) == 5
    assert set(reply["stages_ms"]) == {"load", "decode", "preprocess", "inference", "postprocess"}
    # the same preprocessed tensor: the logits themselves agree with ONNX Runtime in Python
    exact = guest.infer({"tensor": hwc, "return_logits": True})
    np.testing.assert_allclose(exact["logits"], logits, rtol=1e-3, atol=2e-3)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    assert exact["confidence"] == pytest.approx(float(probs.max()), abs=2e-3)


@pytest.mark.parametrize("photo", PHOTOS)
def test_load_bytes_mode(classifier: tuple[str, edgewasm.Guest], reference: Any, photo: str) -> None:
    """`"load": "bytes"`: the guest reads /models/<id>/model.onnx itself and calls `load` (encoding ONNX)."""
    _, guest = classifier
    pixels, _, logits = reference[photo]
    assert guest.infer({"pixels": pixels, "load": "bytes"})["class_id"] == int(np.argmax(logits))


def test_guest_without_preload_reports_not_found(model_store: Path) -> None:  # noqa: F811
    with edgewasm.load(WASM / "wasinn_classifier.wasm", models=str(model_store)) as guest:
        with pytest.raises(edgewasm.GuestError) as err:
            guest.infer({"tensor": np.zeros((224, 224, 3), np.float32)})
        assert err.value.kind == "not_found"
        assert "--nn-preload" in err.value.message
        # the host keeps serving: the bytes mode works on the same instance
        assert guest.infer({"tensor": np.zeros((224, 224, 3), np.float32), "load": "bytes"})["top_k"]


def test_store_id_preload(model_store: Path, monkeypatch: pytest.MonkeyPatch, reference: Any) -> None:  # noqa: F811
    monkeypatch.setenv("EDGEWASM_MODELS", str(model_store))
    for spec in (MODEL_ID, f"{MODEL_ID}:store:{MODEL_ID}:openvino"):
        with edgewasm.load(WASM / "wasinn_classifier.wasm", models=str(model_store), nn_preload=[spec]) as guest:
            pixels, _, logits = reference["coffee"]
            assert guest.infer({"pixels": pixels})["class_id"] == int(np.argmax(logits)) == 967


# ---- TFLite ---------------------------------------------------------------------------------------------


def _load_blob(g: RawGuest, blob: bytes, encoding: int) -> int:
    g.write(blob, 0x10000)
    g.write(struct.pack("<II", 0x10000, len(blob)), 0x100)
    rc = g.call("load", 0x100, 1, encoding, 0, 0x104)
    assert rc == 0, NnErrno(rc).name
    graph = struct.unpack("<I", g.read(0x104, 0x108))[0]
    assert g.call("init_execution_context", graph, 0x108) == 0
    return int(struct.unpack("<I", g.read(0x108, 0x10C))[0])


def _run(g: RawGuest, ctx: int, x: np.ndarray, type_code: int) -> tuple[int, np.ndarray | None]:
    g.write(struct.pack("<II", 1, 4), 0x200)
    g.write(x.tobytes(), 0x1000)
    g.write(struct.pack("<IIIII", 0x200, 2, type_code, 0x1000, x.nbytes), 0x300)
    rc = g.call("set_input", ctx, 0, 0x300)
    if rc:
        return rc, None
    assert g.call("compute", ctx) == 0
    assert g.call("get_output", ctx, 0, 0x2000, 64, 0x110) == 0
    n = struct.unpack("<I", g.read(0x110, 0x114))[0]
    return 0, np.frombuffer(g.read(0x2000, 0x2000 + n), "<f4")


def test_tflite_f32_model() -> None:
    blob, w, b = tiny_tflite("float32")
    g = RawGuest(WasiNN(), "nn_probe.wat")
    ctx = _load_blob(g, blob, 4)
    x = np.array([1.5, -2, 0.25, 4], np.float32)
    rc, y = _run(g, ctx, x, 1)
    assert rc == 0
    np.testing.assert_allclose(y, x @ w.T + b, rtol=1e-6)


@pytest.mark.parametrize(("numbering", "code", "ok"), [
    ("auto", 3, True),  # wasi-nn 0.6 / WasmEdge >= 0.15: u8 = 3
    ("auto", 2, True),  # wasi-nn <= 0.5 / WasmEdge <= 0.14.1: u8 = 2 (told apart by the data length)
    ("witx", 3, True),
    ("witx", 2, False),  # 2 is f64 in the current witx: 4 bytes cannot be 4 f64s
    ("legacy", 2, True),
    ("legacy", 3, False),  # 3 is i32 in the old numbering
])  # fmt: skip
def test_tflite_u8_input_under_both_numberings(numbering: Any, code: int, ok: bool) -> None:
    blob, w, b = tiny_tflite("uint8")
    g = RawGuest(WasiNN(tensor_numbering=numbering), "nn_probe.wat")
    ctx = _load_blob(g, blob, 4)
    x = np.array([7, 0, 255, 3], np.uint8)
    rc, y = _run(g, ctx, x, code)
    if ok:
        assert rc == 0
        np.testing.assert_allclose(y, x.astype(np.float32) @ w.T + b, rtol=1e-6)
    else:
        assert rc == NnErrno.INVALID_ARGUMENT


def test_tflite_wrong_dtype_and_target() -> None:
    blob, _, _ = tiny_tflite("uint8")
    g = RawGuest(WasiNN(), "nn_probe.wat")
    ctx = _load_blob(g, blob, 4)
    rc, _ = _run(g, ctx, np.zeros(4, np.float32), 1)  # f32 data for a u8 input
    assert rc == NnErrno.INVALID_ARGUMENT
    g.write(struct.pack("<II", 0x10000, len(blob)), 0x100)
    assert g.call("load", 0x100, 1, 4, 1, 0x104) == NnErrno.UNSUPPORTED_OPERATION  # GPU


# ---- bad models, missing packages, laziness -----------------------------------------------------------------


def test_preload_that_is_not_a_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x01this is not an onnx model" * 10)
    good = tmp_path / "good.onnx"
    good.write_bytes(tiny_onnx())
    g = RawGuest(WasiNN([f"junk:ONNX:CPU:{junk}", f"good:ONNX:CPU:{good}"], graphs=GraphCache()), "nn_probe.wat")
    g.write(b"junkgood", 0)
    with caplog.at_level(logging.WARNING, logger="edgewasm.nn"):
        assert g.call("load_by_name", 0, 4, 0x100) == NnErrno.RUNTIME_ERROR
        assert g.call("load_by_name", 0, 4, 0x100) == NnErrno.RUNTIME_ERROR  # remembered, not reloaded
    assert sum("preload junk failed" in r.getMessage() for r in caplog.records) == 1
    assert g.call("load_by_name", 4, 4, 0x100) == 0


def test_openvino_not_a_model_from_bytes() -> None:
    g = RawGuest(WasiNN(), "nn_probe.wat")
    g.write(b"<net>not really</net>", 0x1000)
    g.write(b"\0" * 64, 0x2000)
    g.write(struct.pack("<IIII", 0x1000, 21, 0x2000, 64), 0x100)
    assert g.call("load", 0x100, 2, 0, 0, 0x200) == NnErrno.RUNTIME_ERROR
    assert g.call("load", 0x100, 2, 0, 1, 0x200) in (NnErrno.UNSUPPORTED_OPERATION, NnErrno.RUNTIME_ERROR)


def test_missing_backend_package(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """No onnxruntime: the guest gets invalid_encoding and the host logs one line naming the extra."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    monkeypatch.delitem(sys.modules, "edgewasm.nn.backends.onnx", raising=False)
    monkeypatch.setattr("edgewasm.nn.backends._warned", set())
    g = RawGuest(WasiNN(), "nn_probe.wat")
    blob = tiny_onnx()
    g.write(blob, 0x1000)
    g.write(struct.pack("<II", 0x1000, len(blob)), 0x100)
    with caplog.at_level(logging.WARNING, logger="edgewasm.nn"):
        assert g.call("load", 0x100, 1, 1, 0, 0x200) == NnErrno.INVALID_ENCODING
        assert g.call("load", 0x100, 1, 1, 0, 0x200) == NnErrno.INVALID_ENCODING
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "pip install onnxruntime (the onnx extra)" in lines[0], lines


def test_backends_are_imported_only_when_asked() -> None:
    code = textwrap.dedent(f"""
        import struct, sys, wasmtime
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from _nn_support import RawGuest, tiny_onnx
        from edgewasm.nn import WasiNN
        g = RawGuest(WasiNN(), "nn_probe.wat")
        heavy = ("onnxruntime", "openvino", "ai_edge_litert")
        before = [m for m in heavy if m in sys.modules]
        blob = tiny_onnx()
        g.write(blob, 0x1000); g.write(struct.pack("<II", 0x1000, len(blob)), 0x100)
        assert g.call("load", 0x100, 1, 1, 0, 0x200) == 0
        print(before, [m for m in heavy if m in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[] ['onnxruntime']", out.stdout + out.stderr


def test_guest_request_forms_and_errors(model_store: Path, reference: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """image bytes, image_data floats and tensors reach the same answer; bad requests are error maps."""
    monkeypatch.setenv("EDGEWASM_MODELS", str(model_store))  # the bare id in nn_preload resolves there
    import io

    from PIL import Image

    pixels, hwc, logits = reference["coffee"]
    want = int(np.argmax(logits))
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    h, w, _ = pixels.shape
    with edgewasm.load(WASM / "wasinn_classifier.wasm", models=str(model_store), nn_preload=[MODEL_ID]) as guest:
        by_image = guest.infer({"image": buf.getvalue()})
        assert by_image["class_id"] == want and by_image["stages_ms"]["decode"] > 0
        floats = pixels.astype(np.float32).ravel().tolist()
        assert guest.infer({"image_data": floats, "width": w, "height": h})["class_id"] == want
        echoed = guest.infer({"tensor": hwc, "return_tensor": True, "top_k": 3})
        np.testing.assert_array_equal(echoed["tensor"], hwc)
        assert len(echoed["top_k"]) == 3
        bad = hwc.copy()
        bad[5, 6, 1] = np.nan
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"tensor": bad}, "bad_request", "tensor[3379] is not a finite number"),
            ({"tensor": hwc.astype(np.float64)}, "bad_request", "float32"),
            ({"tensor": hwc[:100]}, "bad_request", "[224, 224, 3]"),
            ({"pixels": pixels, "tensor": hwc}, "bad_request", "only one"),
            ({"image": b"not an image"}, "decode", ""),
            ({"image_data": floats, "width": w}, "bad_request", "width and height"),
            ({"tensor": hwc, "top_k": 0}, "bad_request", "top_k"),
            ({"tensor": hwc, "top_k": 1001}, "bad_request", "top_k must be 1..1000"),
            ({"tensor": hwc, "model_id": "../etc"}, "bad_request", "model id"),
            ({"tensor": hwc, "model_id": "resnet-50"}, "not_found", "resnet-50"),
        ]
        for request, kind, words in cases:
            with pytest.raises(edgewasm.GuestError) as err:
                guest.infer(request)
            assert err.value.kind == kind and words in err.value.message, (request.keys(), err.value)
        assert guest.infer({"tensor": hwc})["class_id"] == want  # still serving


def test_guest_load_stage(model_store: Path, reference: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """stages_ms.load: load_by_name (or reading model.onnx and load) plus init_execution_context, on the
    first call of a fresh instance and when the load mode changes; 0 while the graph is reused."""
    monkeypatch.setenv("EDGEWASM_MODELS", str(model_store))  # the bare id in nn_preload resolves there
    _, hwc, logits = reference["chelsea"]
    want = int(np.argmax(logits))
    with edgewasm.load(WASM / "wasinn_classifier.wasm", models=str(model_store), nn_preload=[MODEL_ID]) as guest:
        replies = [guest.infer({"tensor": hwc, **extra}) for extra in ({}, {}, {"load": "bytes"}, {"load": "bytes"})]
    loads = [r["stages_ms"]["load"] for r in replies]
    assert loads[0] > 0 and loads[2] > 0, loads
    assert loads[1] == 0.0 and loads[3] == 0.0, loads
    # `load` is its own stage, not part of `inference`; latency_ms still covers it.
    for r in replies:
        assert r["class_id"] == want
        assert r["latency_ms"] >= sum(r["stages_ms"].values()) * 0.99
    assert replies[0]["stages_ms"]["inference"] < replies[0]["latency_ms"] - loads[0] + 1e-6


_SIGNAL_STACK_CHILD = r"""
import gc, sys, tempfile
from pathlib import Path
sys.path.insert(0, {tests!r})
import openvino as ov
import edgewasm
from _nn_script import GUEST, INIT, LOAD, OPENVINO, Script
from edgewasm.nn import _sigstack
from _nn_support import tiny_onnx

d = Path(tempfile.mkdtemp())
(d / "t.onnx").write_bytes(tiny_onnx())
ov.save_model(ov.convert_model(str(d / "t.onnx")), str(d / "t.xml"))
s = Script()
arr, n = s.builders([(d / "t.xml").read_bytes(), (d / "t.bin").read_bytes()])
s.call(LOAD, arr, n, OPENVINO, 0, s.space(4))
s.call(INIT, 0, s.space(4))
trap = edgewasm.load({trap!r})
try:
    trap.infer_bytes(b"x")
except edgewasm.GuestTrap:
    pass
wasmtime_stack = _sigstack.current()  # installed by wasmtime on this thread's first wasm call
guests = [edgewasm.load(GUEST) for _ in range(2)]
for g in guests:
    assert s.decode(g.run(s.encode()).stdout)[0] == [0, 0]
assert _sigstack.current() == wasmtime_stack, (_sigstack.current(), wasmtime_stack)
for g in guests:  # released in the order they were made
    g.close()
del guests, g
gc.collect()
for _ in range(3):
    try:
        trap.infer_bytes(b"x")
    except edgewasm.GuestTrap:
        print("trapped")
"""


def test_openvino_leaves_the_threads_signal_stack_to_wasmtime() -> None:
    """OpenVINO's CPU plugin replaces the calling thread's alternate signal stack and, as its engines are released,
    can leave it pointing at freed memory: the next trap of any guest on that thread then killed the process
    (SIGSEGV, no message). In a child process, so that a failure cannot take the test run with it."""
    pytest.importorskip("openvino")
    tests = str(Path(__file__).resolve().parent)
    code = _SIGNAL_STACK_CHILD.format(tests=tests, trap=str(WASM / "trap.wat"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split() == ["trapped"] * 3
