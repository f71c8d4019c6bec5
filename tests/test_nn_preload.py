"""`--nn-preload` specs: WasmEdge's NAME:ENCODING:TARGET:PATH[:PATH], store ids, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from _model_fixtures import model_store  # noqa: F401  (fixture)
from conftest import require
from edgewasm.nn import ExecutionTarget, GraphEncoding, Preload, WasiNN, parse_preload


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("m.onnx", "m.xml", "m.bin", "m.tflite"):
        (tmp_path / name).write_bytes(b"x")
        out[name] = tmp_path / name
    return out


def test_wasmedge_form(files: dict[str, Path]) -> None:
    p = parse_preload(f"default:ONNX:CPU:{files['m.onnx']}")
    assert p == Preload("default", GraphEncoding.ONNX, ExecutionTarget.CPU, (files["m.onnx"],))
    p = parse_preload(f"ov:openvino:auto:{files['m.xml']}:{files['m.bin']}")
    assert (p.encoding, p.target, p.paths) == (
        GraphEncoding.OPENVINO,
        ExecutionTarget.AUTO,
        (files["m.xml"], files["m.bin"]),
    )
    for enc in ("TensorflowLite", "TFLite", "tflite"):
        assert parse_preload(f"t:{enc}:cpu:{files['m.tflite']}").encoding is GraphEncoding.TENSORFLOWLITE
    assert parse_preload(f"g:ONNX:GPU:{files['m.onnx']}").target is ExecutionTarget.GPU


def test_openvino_weights_next_to_xml(files: dict[str, Path]) -> None:
    assert parse_preload(f"ov:OpenVINO:CPU:{files['m.xml']}").paths == (files["m.xml"], files["m.bin"])


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", "empty"),
        (" default:ONNX:CPU:x", "spaces"),
        ("a:b", "expected NAME:ENCODING:TARGET:PATH"),
        ("a:ONNX:CPU", "expected NAME:ENCODING:TARGET:PATH"),
        ("a:Caffe:CPU:{onnx}", "unknown encoding"),
        ("a:GGML:AUTO:{onnx}", "not supported by edgewasm"),
        ("a:PyTorch:CPU:{onnx}", "not supported by edgewasm"),
        ("a:ONNX:NPU:{onnx}", "unknown target"),
        (":ONNX:CPU:{onnx}", "name is empty"),
        ("a:ONNX:CPU:/no/such/model.onnx", "no such file"),
        ("a:ONNX:CPU:{onnx}:{onnx}", "takes 1 file"),
        ("a:OpenVINO:CPU:{onnx}", "takes 2 file"),
        ("a:store:no-such-model", "unknown model"),
        ("a:store:../etc", "model"),
        ("a:store:efficientnet-lite0:caffe", "store format"),
        ("a:store:efficientnet-lite0:onnx:XPU", "unknown target"),
        ("a:store:efficientnet-lite0:onnx:cpu:extra", "expected NAME:store:ID"),
    ],
)
def test_bad_specs_are_clear_value_errors(spec: str, words: str, files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="bad --nn-preload") as err:
        parse_preload(spec.format(onnx=files["m.onnx"]))
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_store_forms(model_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("EDGEWASM_MODELS", str(model_store))
    entry = model_store / "efficientnet-lite0"
    p = parse_preload("efficientnet-lite0")
    assert (p.name, p.encoding, p.target, p.paths) == (
        "efficientnet-lite0",
        GraphEncoding.ONNX,
        ExecutionTarget.CPU,
        (entry / "model.onnx",),
    )
    require("openvino")  # the store has an OpenVINO IR only when openvino was there to convert it
    p = parse_preload("default:store:efficientnet-lite0:OpenVINO:auto")
    assert (p.name, p.encoding, p.target, p.store_id) == (
        "default",
        GraphEncoding.OPENVINO,
        ExecutionTarget.AUTO,
        "efficientnet-lite0",
    )
    assert p.paths == (entry / "openvino" / "model.xml", entry / "openvino" / "model.bin")


def test_store_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEWASM_MODELS", str(tmp_path))
    with pytest.raises(ValueError, match="not installed"):
        parse_preload("efficientnet-lite0")


def test_duplicate_names_refused(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="named 'a'"):
        WasiNN([f"a:ONNX:CPU:{files['m.onnx']}", f"a:TFLite:CPU:{files['m.tflite']}"])
