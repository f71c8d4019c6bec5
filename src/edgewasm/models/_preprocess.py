"""The classifier's preprocessing in numpy: the reference the Rust guest must match (see docs/models.md).

Resize so the shorter side is 256 with a separable, antialiased bicubic filter (PIL's algorithm, computed in
floating point with no intermediate rounding), centre-crop 224x224, then ``(x - 127) / 128``. Only the output
pixels inside the crop are computed: each output pixel depends only on its own row and column weights.
"""

from __future__ import annotations

import io
import math

import numpy as np
import numpy.typing as npt

RESIZE_SHORTER = 256
CROP = 224
MEAN = 127.0
STD = 128.0
FILTER_NAME = "bicubic-a-0.5-antialias-pil"
BICUBIC_A = -0.5
BICUBIC_SUPPORT = 2.0

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]


def bicubic(x: float) -> float:
    """Keys cubic convolution kernel with a = -0.5 (as PIL's ``bicubic_filter``)."""
    x = abs(x)
    a = BICUBIC_A
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


def resized_size(width: int, height: int, shorter: int = RESIZE_SHORTER) -> tuple[int, int]:
    """(new_width, new_height): the shorter side becomes ``shorter``, the longer is rounded half up."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if width <= height:
        return shorter, (2 * height * shorter + width) // (2 * width)
    return (2 * width * shorter + height) // (2 * height), shorter


def resize_weights(in_size: int, out_size: int, first: int, count: int) -> F64:
    """Dense [count, in_size] weight matrix for output indices first..first+count-1 of an in->out resize."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filterscale
    weights = np.zeros((count, in_size), dtype=np.float64)
    for row, o in enumerate(range(first, first + count)):
        center = (o + 0.5) * scale
        lo = max(math.floor(center - support + 0.5), 0)
        hi = min(math.floor(center + support + 0.5), in_size)
        ws = [bicubic((i - center + 0.5) / filterscale) for i in range(lo, hi)]
        total = sum(ws)
        if total != 0.0:
            ws = [w / total for w in ws]
        weights[row, lo:hi] = ws
    return weights


def resize_crop(pixels: npt.NDArray[np.generic]) -> F32:
    """HxWx3 (uint8 or float, 0..255) -> float32 [224, 224, 3], 0..255: shorter side to 256, centre crop."""
    arr = np.asarray(pixels)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {arr.shape}")
    height, width = int(arr.shape[0]), int(arr.shape[1])
    new_w, new_h = resized_size(width, height)
    left = (new_w - CROP) // 2
    top = (new_h - CROP) // 2
    wx = resize_weights(width, new_w, left, CROP)  # [224, W]
    wy = resize_weights(height, new_h, top, CROP)  # [224, H]
    planes = np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float64)  # [3, H, W]
    horiz = planes @ wx.T  # horizontal pass first: [3, H, 224]
    out = wy @ horiz  # vertical pass: [3, 224, 224]
    return np.ascontiguousarray(np.clip(out, 0.0, 255.0).transpose(1, 2, 0), dtype=np.float32)


def normalize(crop: F32) -> F32:
    """(x - 127) / 128, the constants of the TensorFlow EfficientNet-Lite builder."""
    return ((crop.astype(np.float32) - np.float32(MEAN)) / np.float32(STD)).astype(np.float32)


def preprocess_pixels(pixels: npt.NDArray[np.generic]) -> F32:
    """HxWx3 RGB pixels -> the network input, float32 [224, 224, 3] (NHWC without the batch axis)."""
    return normalize(resize_crop(pixels))


def decode_image(data: bytes) -> U8:
    """JPEG/PNG bytes -> uint8 HxWx3 RGB (PIL if installed, else scikit-image); EXIF orientation ignored."""
    try:
        from PIL import Image
    except ImportError:
        pass
    else:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    try:
        from skimage import io as skio
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("decoding images needs Pillow or scikit-image: pip install pillow") from exc
    arr = np.asarray(skio.imread(io.BytesIO(data)))
    return _to_rgb_u8(arr)


def _to_rgb_u8(arr: npt.NDArray[np.generic]) -> U8:
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim == 3 and arr.shape[2] == 2:
        arr = np.stack([arr[:, :, 0]] * 3, axis=-1)
    return np.ascontiguousarray(arr, dtype=np.uint8)


def preprocess_image(data: bytes) -> F32:
    """JPEG/PNG bytes -> float32 [224, 224, 3], the tensor the guests compute."""
    return preprocess_pixels(decode_image(data))
