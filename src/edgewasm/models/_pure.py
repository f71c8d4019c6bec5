"""The pure guest's packed weight images, written at install time: ``pure-fp32.ewp`` and ``pure-int8.ewp``.

The FP32 image (in the base entry) is the EWT tensors in the kernels' layout. The INT8 one (in the
``efficientnet-lite0-int8`` entry, made by the same install as the variant's other files, ``_variant_store``)
takes the variant's int8 weights and per-channel scales (``weights.ewt``: ONNX Runtime's QDQ model's values,
pair-bounded 8-bit for the GEMM layers) and FP32 biases, and 7-bit activation scales calibrated on the same
calibration photos (MinMax of the FP32 network's activations, ``_int8``); then its biases are corrected, layer
after layer, with the numpy reference of its own scheme (``_int8.correct_biases``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _biascorr, _ewt, _int8, _pack
from ._arch import BLOCKS

F32 = npt.NDArray[np.float32]

FP32_FILE = "pure-fp32.ewp"
INT8_FILE = "pure-int8.ewp"
FP32_MODEL_ID = "efficientnet-lite0"
INT8_MODEL_ID = "efficientnet-lite0-int8"


def _ranges_onnxruntime(onnx_path: Path, images: Sequence[F32]) -> dict[str, tuple[float, float]]:
    """Min and max of every activation the INT8 network quantizes (``_int8.activation_ranges`` names), from
    ONNX Runtime running the FP32 model with those tensors as extra outputs."""
    import onnx
    import onnxruntime as ort

    names = {"stem": "stem.relu6", "head": "head.relu6", "pool": "pool"}
    for b in BLOCKS:
        p = f"blocks.{b.index}"
        if b.expand != 1:
            names[f"{p}.expand"] = f"{p}.expand.relu6"
        names[f"{p}.dw"] = f"{p}.dw.relu6"
        names[p] = f"{p}.add" if b.residual else f"{p}.project.conv"
    model = onnx.load(str(onnx_path))
    have = {o.name for o in model.graph.output}
    for tensor in names.values():
        if tensor not in have:
            model.graph.output.append(onnx.ValueInfoProto(name=tensor))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    wanted = list(names.values())
    ranges: dict[str, tuple[float, float]] = {}
    for img in images:
        outs = sess.run(wanted, {"input": np.ascontiguousarray(img.transpose(2, 0, 1)[None])})
        for key, arr in zip(names, outs, strict=True):
            lo, hi = float(arr.min()), float(arr.max())
            old = ranges.get(key)
            ranges[key] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return ranges


def write_fp32_image(
    out_dir: Path, tensors: Mapping[str, F32], labels: Sequence[str], meta: Mapping[str, str]
) -> dict[str, Any]:
    """The base entry's FP32 image; returns what the manifest records."""
    (out_dir / FP32_FILE).write_bytes(_pack.pack_fp32(tensors, BLOCKS, meta, labels))
    return {"file": FP32_FILE, "layout": _pack.LAYOUT_FP32}


def write_int8_image(
    out_dir: Path, weights_ewt: Path, fp32_onnx: Path, calibration: F32, labels: Sequence[str], meta: Mapping[str, str]
) -> dict[str, Any]:
    """The INT8 variant entry's image: its ``weights.ewt`` (int8 weights, scales, FP32 biases) and the
    activation ranges of the FP32 model on the calibration batch (NCHW); returns the manifest's record."""
    ewt = _ewt.read(weights_ewt).tensors
    tensors = {name: np.asarray(t, np.float32) for name, t in ewt.items() if name.endswith(".b")}
    weights = {
        layer: _int8.QWeight(np.asarray(ewt[f"{layer}.w"], np.int8), np.asarray(ewt[f"{layer}.w_scale"], np.float32))
        for layer in _int8.layer_names()
    }
    images = [np.ascontiguousarray(x.transpose(1, 2, 0), np.float32) for x in calibration]
    ranges = _ranges_onnxruntime(fp32_onnx, images)
    model = _int8.build(tensors, ranges, weights)
    # This scheme's own bias correction (7-bit activations, float requantization): ONNX Runtime's corrections
    # are for its uint8 activations and do not fit it.
    outputs = _int8.fp32_outputs()
    means = _biascorr.fp32_means(fp32_onnx, sorted(set(outputs.values())), calibration)
    model = _int8.correct_biases(model, np.stack(images), {n: means[t] for n, t in outputs.items()})
    (out_dir / INT8_FILE).write_bytes(_int8.pack(model, meta, labels))
    return {
        "file": INT8_FILE,
        "layout": _int8.LAYOUT,
        "weights": "weights.ewt: int8 values and per-channel scales of model.onnx, FP32 biases",
        "activations": "uint8 0..127 (7-bit) per tensor: MinMax of the FP32 model's activations on the calibration "
        "photos (ONNX Runtime)",
        "requantization": "float32: clip(rint(f32(acc) * s + c [+ f32(x) * r]), 0, 127)",
        "bias_correction": "sequential per layer, on the calibration photos, with this scheme's numpy reference "
        "(edgewasm.models._int8.correct_biases): each c moved by the layer's mean shift from FP32",
    }


def image_of(model_id: str, store: Path) -> Path:
    """The packed image serving ``model_id`` in an installed store entry (``store`` is the store root)."""
    from .._errors import ModelStoreError

    files = {FP32_MODEL_ID: FP32_FILE, INT8_MODEL_ID: INT8_FILE}
    if model_id not in files:
        raise ModelStoreError(f"no packed weights for model {model_id!r}; known: {', '.join(files)}")
    path = store / model_id / files[model_id]
    if not path.is_file():
        raise ModelStoreError(
            f"{path} is missing (not installed, or by an older edgewasm); "
            f"run: edgewasm models install --force {model_id}"
        )
    return path
