"""The WasmEdge-style command guest (wasm/wasinn_compat.wasm) runs unmodified under edgewasm with a preload or
with model files on argv, and prints ONNX Runtime's top 5 for a raw tensor of the chelsea photo."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import skimage.data

import edgewasm
from _model_fixtures import model_entry, model_store  # noqa: F401  (fixtures)
from _nn_support import WASM
from edgewasm.models._preprocess import preprocess_pixels

LINE = re.compile(r"^\s+(\d)\.\) \[(\d+)\]\(([-0-9.]+)\)(.*)$")


@pytest.fixture(scope="module")
def chelsea(tmp_path_factory: pytest.TempPathFactory, model_entry: Path) -> tuple[Path, list[int], np.ndarray]:  # noqa: F811
    """The raw tensor file (1x3x224x224 f32 NCHW) and ONNX Runtime's top 5 / logits for it."""
    import onnxruntime as ort

    nchw = np.ascontiguousarray(preprocess_pixels(skimage.data.chelsea()).transpose(2, 0, 1)[None], dtype="<f4")
    d = tmp_path_factory.mktemp("compat")
    nchw.tofile(d / "chelsea.raw")
    sess = ort.InferenceSession(str(model_entry / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": nchw})[0][0]
    return d, [int(i) for i in np.argsort(-logits, kind="stable")[:5]], logits


def _top5(stdout: bytes) -> list[tuple[int, float, str]]:
    rows = [LINE.match(line) for line in stdout.decode().splitlines()]
    return [(int(m[2]), float(m[3]), m[4]) for m in rows if m]


def _check(stdout: bytes, want: list[int], logits: np.ndarray) -> None:
    text = stdout.decode()
    assert "The size of the output buffer is 4000 bytes" in text, text
    top = _top5(stdout)
    assert [c for c, _, _ in top] == want, text
    assert want[0] == 282 and top[0][2] == "tiger cat"
    np.testing.assert_allclose([s for _, s, _ in top], logits[want], atol=2e-3)


@pytest.mark.parametrize("encoding", ["onnx", "openvino"])
def test_compat_guest_with_preload(
    chelsea: tuple[Path, list[int], np.ndarray],
    model_entry: Path,  # noqa: F811
    encoding: str,
) -> None:
    d, want, logits = chelsea
    spec = (
        f"default:ONNX:CPU:{model_entry / 'model.onnx'}"
        if encoding == "onnx"
        else f"default:OpenVINO:CPU:{model_entry / 'openvino' / 'model.xml'}"
    )
    with edgewasm.load(WASM / "wasinn_compat.wasm", nn_preload=[spec], dirs={"/data": str(d)}) as guest:
        result = guest.run(args=["/data/chelsea.raw"])
    assert result.exit_code == 0, result.stderr
    _check(result.stdout, want, logits)


@pytest.mark.parametrize("files", [["model.onnx"], ["openvino/model.xml", "openvino/model.bin"]])
def test_compat_guest_loads_files_from_argv(
    chelsea: tuple[Path, list[int], np.ndarray],
    model_entry: Path,  # noqa: F811
    files: list[str],
) -> None:
    d, want, logits = chelsea
    dirs = {"/data": str(d), "/model": str(model_entry)}
    with edgewasm.load(WASM / "wasinn_compat.wasm", dirs=dirs) as guest:
        result = guest.run(args=[*(f"/model/{f}" for f in files), "/data/chelsea.raw"])
    assert result.exit_code == 0, result.stderr
    _check(result.stdout, want, logits)


def test_compat_guest_without_preload_fails_cleanly(chelsea: tuple[Path, list[int], np.ndarray]) -> None:
    d, _, _ = chelsea
    with edgewasm.load(WASM / "wasinn_compat.wasm", dirs={"/data": str(d)}) as guest:
        result = guest.run(args=["/data/chelsea.raw"])
    assert result.exit_code == 1
    assert b"wasi-nn error 8 (not_found)" in result.stderr
