"""The pure guest's packed weight images, written at install time: ``pure-fp32.ewp`` and ``pure-int8.ewp``.

The FP32 image is the EWT tensors in the kernels' layout. The INT8 one needs per-channel int8 weights and
7-bit activation scales calibrated on the deterministic calibration photos. PROVISIONAL until the quantized
variants of issue 12 land (``_calibration`` and the QDQ model): the photos are scikit-image's bundled ones
and the weights are quantized here, per channel, the way ONNX Runtime's per-channel QDQ weights are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _int8, _pack
from ._arch import BLOCKS

F32 = npt.NDArray[np.float32]

FP32_FILE = "pure-fp32.ewp"
INT8_FILE = "pure-int8.ewp"
#: The model id the INT8 image serves (the guest reads it from the FP32 entry for now).
INT8_MODEL_ID = "efficientnet-lite0-int8"

#: PROVISIONAL calibration photos (scikit-image's bundled natural photos), in a fixed order.
_SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "moon", "retina", "rocket",
)  # fmt: skip


def calibration_images() -> tuple[list[F32], dict[str, Any]]:
    """The normalised NHWC calibration images and what the manifest records about them."""
    from skimage import data  # the dev extra; PROVISIONAL (issue 12's _calibration replaces this)

    from ._preprocess import preprocess_pixels

    images: list[F32] = []
    digest = hashlib.sha256()
    for name in _SKIMAGE_PHOTOS:
        pixels = np.asarray(getattr(data, name)())
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        pixels = np.ascontiguousarray(pixels[..., :3], dtype=np.uint8)
        digest.update(pixels.tobytes())
        images.append(preprocess_pixels(pixels))
    return images, {"set": "scikit-image data (provisional)", "photos": list(_SKIMAGE_PHOTOS),
                    "count": len(images), "pixels_sha256": digest.hexdigest()}  # fmt: skip


def _ranges_onnxruntime(onnx_path: Path, images: Sequence[F32]) -> dict[str, tuple[float, float]] | None:
    """The activation ranges from ONNX Runtime with the intermediate tensors as outputs (fast), or None."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        return None
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


def write_images(
    out_dir: Path, tensors: Mapping[str, F32], labels: Sequence[str], meta: Mapping[str, str], onnx_path: Path
) -> dict[str, Any]:
    """Write both images into ``out_dir``; return what the manifest records (INT8: skipped, with the reason,
    when the calibration photos are not installed)."""
    (out_dir / FP32_FILE).write_bytes(_pack.pack_fp32(tensors, BLOCKS, meta, labels))
    record: dict[str, Any] = {"fp32": {"file": FP32_FILE, "layout": _pack.LAYOUT_FP32}}
    try:
        images, calibration = calibration_images()
    except ImportError as exc:
        record["int8"] = {"skipped": f"no calibration photos ({exc}); pip install scikit-image"}
        return record
    ranges = _ranges_onnxruntime(onnx_path, images)
    ranges_by = "onnxruntime (FP32 model.onnx)"
    if ranges is None:
        ranges, ranges_by = _int8.activation_ranges(tensors, images), "numpy reference (FP32)"
    model = _int8.build(tensors, ranges)
    int8_meta = {**meta, "id": INT8_MODEL_ID}
    (out_dir / INT8_FILE).write_bytes(_int8.pack(model, int8_meta, labels))
    record["int8"] = {
        "file": INT8_FILE,
        "model_id": INT8_MODEL_ID,
        "layout": _int8.LAYOUT,
        "weights": "int8, symmetric, per output channel (quantized at install; provisional)",
        "activations": "uint8 0..127 (7-bit), per tensor, MinMax over the calibration photos",
        "requantization": "float32: clip(rint(f32(acc) * s + c [+ f32(x) * r]), 0, 127)",
        "calibration": {**calibration, "ranges_by": ranges_by},
    }
    return record


def image_of(model_id: str, store: Path) -> Path:
    """The packed image serving ``model_id`` in an installed store entry (``store`` is the store root)."""
    from ._convert import MODEL_ID
    from ._errors import ModelStoreError

    name = INT8_FILE if model_id == INT8_MODEL_ID else FP32_FILE
    if model_id not in (MODEL_ID, INT8_MODEL_ID):
        raise ModelStoreError(f"no packed weights for model {model_id!r}; known: {MODEL_ID}, {INT8_MODEL_ID}")
    path = store / MODEL_ID / name
    if not path.is_file():
        raise ModelStoreError(
            f"{path} is missing (installed by an older edgewasm, or without calibration photos); "
            f"run: edgewasm models install --force {MODEL_ID}"
        )
    return path
