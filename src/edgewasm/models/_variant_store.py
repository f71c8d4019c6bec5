"""Install a quantized variant into the store: made from the verified FP32 entry, published atomically.

The entry ``<store>/<base>-<precision>/`` holds ``model.onnx`` (ONNX Runtime), ``openvino/model.{xml,bin}``
(when openvino is installed), ``model.tflite`` (LiteRT, when ai-edge-litert is installed), ``labels.txt``
(copied from the base) and ``weights.ewt``: the variant's own weights in the store's EWT container (float16
tensors; or int8 weights with per-channel scales and the activation ranges of the ONNX Runtime INT8 model). The
manifest says how every file was made (tools and versions, method, calibration set and its digest). Same inputs
and versions, same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ModelStoreError, QuantizeError
from . import _calibration, _convert, _ewt, _pure, _quantize, _store, _tflite
from ._arch import BLOCKS, nhwc_tensor
from ._variants import INT8_ROUNDINGS, RECIPES, VARIANTS, Variant

EWT_PRECISION = {"fp16": "float16", "int8": "int8 weights, float32 scales and biases"}
TFLITE_FILE = _convert.TFLITE_FILE


def tflite_available() -> bool:
    try:
        _quantize.need("ai_edge_litert.schema_py_generated", "ai-edge-litert")
        _quantize.need("flatbuffers", "flatbuffers")
    except QuantizeError:
        return False
    return True


def _variant(model_id: str) -> Variant:
    v = VARIANTS.get(model_id)
    if v is None:
        raise ModelStoreError(f"{model_id!r} is not a quantized variant; available: {', '.join(VARIANTS)}")
    return v


def _layers() -> list[str]:
    layers = ["stem"]
    for b in BLOCKS:
        if b.expand != 1:
            layers.append(f"blocks.{b.index}.expand")
        layers += [f"blocks.{b.index}.dw", f"blocks.{b.index}.project"]
    return [*layers, "head", "fc"]


def _meta(v: Variant) -> dict[str, str]:
    return {"id": v.id, "version": v.version, "classes": "1000", "precision": v.precision, "base": v.base}


def fp16_ewt(onnx_fp16: Path, dst: Path, v: Variant) -> dict[str, Any]:
    """The FP16 ONNX model's float16 initializers in the EWT layouts of the FP32 file."""
    onnx = _quantize.need("onnx", "onnx")
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(onnx_fp16)).graph.initializer}
    tensors: dict[str, npt.NDArray[Any]] = {}
    for layer in _layers():
        for part in ("w", "b"):
            name = f"{layer}.{part}"
            arr = init.get(name)
            if arr is None or arr.dtype != np.float16:
                raise ModelStoreError(f"{onnx_fp16.name} has no float16 {name}; reinstall with --force")
            tensors[name] = nhwc_tensor(name, arr)
    _ewt.write(dst, _meta(v), BLOCKS, tensors)
    return {"from": "model.onnx (its float16 initializers)", "dtypes": "f16"}


def int8_ewt(onnx_int8: Path, base_ewt: Path, dst: Path, v: Variant) -> dict[str, Any]:
    """The INT8 ONNX model's int8 weights and per-channel scales, the FP32 biases and the activation ranges.

    Per layer L: ``L.w`` i8 (EWT layout), ``L.w_scale`` f32 [cout] (w = scale * q), ``L.b`` f32 (the FP32
    bias), ``L.x_range`` f32 [2] (the uint8 range of the layer's input in the INT8 model); per residual block
    ``blocks.<i>.add_range``.
    """
    qdq = _quantize.read_qdq(onnx_int8)
    fp32 = _ewt.read(base_ewt).tensors
    tensors: dict[str, npt.NDArray[Any]] = {}
    for layer in _layers():
        q = qdq.weights.get(layer)
        if q is None:
            raise ModelStoreError(f"{onnx_int8.name} has no quantized {layer}; reinstall with --force")
        tensors[f"{layer}.w"] = nhwc_tensor(f"{layer}.w", q.values)
        tensors[f"{layer}.w_scale"] = q.scale
        tensors[f"{layer}.b"] = fp32[f"{layer}.b"]
        tensors[f"{layer}.x_range"] = np.array(qdq.inputs[layer].range(), np.float32)
    for b in BLOCKS:
        if b.residual:
            name = f"blocks.{b.index}.add"
            tensors[f"{name}_range"] = np.array(qdq.adds[name].range(), np.float32)
    _ewt.write(dst, _meta(v), BLOCKS, tensors)
    return {"from": "model.onnx (its int8 weights and scales) and the FP32 biases", "dtypes": "i8, f32"}


def _build(
    v: Variant, base: Path, out: Path, openvino: bool, tflite: bool, sets: Sequence[str], rounding: str
) -> dict[str, Any]:
    """Write the variant's files into ``out``; return the manifest's ``variant`` record."""
    src = base / _convert.ONNX_FILE
    record: dict[str, Any] = {"of": v.base, "precision": v.precision, "recipe": _recipe(v, rounding)}
    if v.precision == "fp16":
        record["onnx"] = _quantize.onnx_fp16(src, out / _convert.ONNX_FILE)
        if openvino:
            record["openvino"] = _quantize.openvino_fp16(src, out / _convert.OPENVINO_XML)
        if tflite:
            fp32 = _ewt.read(base / _convert.EWT_FILE).tensors
            (out / TFLITE_FILE).write_bytes(_tflite.build_float(fp32, fp16=True, description=v.id))
            record["tflite"] = _tflite.float_record(fp16=True)
        record["weights"] = fp16_ewt(out / _convert.ONNX_FILE, out / _convert.EWT_FILE, v)
    else:
        photos = _calibration.calibration_photos(sets)
        batch = _calibration.calibration_tensors(photos)
        record["calibration"] = _calibration.calibration_record(photos)
        record["onnx"] = _quantize.onnx_int8(src, out / _convert.ONNX_FILE, batch, rounding=rounding)
        if openvino:
            record["openvino"] = _quantize.openvino_from_qdq(out / _convert.ONNX_FILE, out / _convert.OPENVINO_XML)
        if tflite:
            fp32 = _ewt.read(base / _convert.EWT_FILE).tensors
            model, record["tflite"] = _tflite.quantize_int8(_tflite.build_float(fp32, description=v.id), batch)
            (out / TFLITE_FILE).write_bytes(model)
        record["weights"] = int8_ewt(out / _convert.ONNX_FILE, base / _convert.EWT_FILE, out / _convert.EWT_FILE, v)
        labels = (base / _convert.LABELS_FILE).read_text(encoding="utf-8").splitlines()
        record["pure"] = _pure.write_int8_image(out, out / _convert.EWT_FILE, src, batch, labels, _meta(v))
    shutil.copyfile(base / _convert.LABELS_FILE, out / _convert.LABELS_FILE)
    return record


def _manifest(v: Variant, entry: Path, base: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    files = sorted(p for p in entry.rglob("*") if p.is_file() and p.name != _store.MANIFEST)
    record = {"of": v.base, "of_version": base["version"],
              "of_onnx_sha256": base["files"][_convert.ONNX_FILE]["sha256"], **record}  # fmt: skip
    return {
        "format": _store.MANIFEST_FORMAT,
        "id": v.id,
        "version": v.version,
        "files": {f.relative_to(entry).as_posix(): _store._file_info(f) for f in files},
        "weights": _convert.EWT_FILE,
        "weights_precision": EWT_PRECISION[v.precision],
        "onnx": _convert.ONNX_FILE,
        "openvino": _convert.OPENVINO_XML if (entry / _convert.OPENVINO_XML).is_file() else None,
        "tflite": TFLITE_FILE if (entry / TFLITE_FILE).is_file() else None,
        **{k: base[k] for k in ("input", "output", "preprocessing", "labels", "num_classes") if k in base},
        "variant": record,
        **{k: base[k] for k in ("source", "labels_source", "converter") if k in base},
    }


def _recipe(v: Variant, rounding: str) -> int:
    """The recipe number a build of ``v`` with this INT8 weight rounding makes."""
    return INT8_ROUNDINGS[rounding] if v.precision == "int8" else RECIPES[v.precision]


def _current(v: Variant, store: str | os.PathLike[str] | None, sets: Sequence[str], rounding: str) -> bool:
    """The installed entry verifies, was made by the recipe asked for and calibrated on the sets asked for."""
    if not (_store._root(store) / v.id / _store.MANIFEST).is_file():
        return False
    try:
        manifest = _store.verify(v.id, store)
    except ModelStoreError:
        return False
    if manifest.get("variant", {}).get("recipe") != _recipe(v, rounding):
        return False
    if v.precision != "int8":
        return True
    made = manifest.get("variant", {}).get("calibration", {}).get("sets")
    return bool(made == list(dict.fromkeys(sets)))


def needs_build(
    model_id: str,
    store: str | os.PathLike[str] | None,
    calibration: Sequence[str],
    force: bool = False,
    rounding: str = "adaptive",
) -> bool:
    """Whether ``install_variant`` with these arguments will make the variant's files (else it keeps them)."""
    return force or not _current(_variant(model_id), store, calibration, rounding)


def install_variant(
    model_id: str,
    store: str | os.PathLike[str] | None = None,
    force: bool = False,
    *,
    openvino: bool | None = None,
    tflite: bool | None = None,
    calibration: Sequence[str] = (_calibration.DEFAULT_SET,),
    rounding: str = "adaptive",
) -> Path:
    """Make and install a variant (and its base if needed); a verified install is kept unless ``force``.

    An entry that fails verification, was made by an older recipe (``_variants.RECIPES``), or an INT8 entry
    calibrated on other sets than ``calibration`` (names from ``_calibration.SETS``), is rebuilt. ``rounding``
    of the INT8 weights: ``adaptive`` (the current recipe) or ``nearest`` (recipe 2's, for comparisons and tests;
    a later install that asks for the current recipe rebuilds it).
    """
    if rounding not in INT8_ROUNDINGS:
        raise ValueError(f"rounding must be one of {tuple(INT8_ROUNDINGS)}, not {rounding!r}")
    v = _variant(model_id)
    root = _store._root(store)
    entry = root / v.id
    if not needs_build(model_id, store, calibration, force, rounding):
        return entry
    base_entry = _store.install(v.base, store)
    base = _store.verify(v.base, store)
    if openvino is None:
        openvino = _convert.openvino_available()
    if tflite is None:
        tflite = tflite_available()
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".install-{v.id}-", dir=root))
        tmp.chmod(0o755)
    except OSError as exc:
        raise ModelStoreError(
            f"cannot write to the model store {root}: {exc.strerror}; set {_store.ENV_VAR} or --store"
        ) from exc
    try:
        record = _build(v, base_entry, tmp, openvino, tflite, calibration, rounding)
        manifest = _manifest(v, tmp, base, record)
        (tmp / _store.MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _store._fsync_tree(tmp)
        old: Path | None = None
        if entry.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{v.id}-", dir=root))
            os.replace(entry, old / v.id)
        os.replace(tmp, entry)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelStoreError(f"cannot install {v.id} into {root}: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry
