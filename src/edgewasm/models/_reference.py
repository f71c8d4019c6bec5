"""A numpy forward pass of EfficientNet-Lite0 (NHWC): the yardstick for the EWT file, the ONNX model, guests.

``forward`` runs the folded EWT weights; ``forward_unfolded`` runs the raw torch state dict with BatchNorm
applied separately, which checks the folding. Convolutions are vectorised (im2col for the stem, shifted
strided slices for depthwise, matmul for 1x1), so one image takes tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._arch import BLOCKS, BN_EPS, Block, same_pads
from ._preprocess import preprocess_image, preprocess_pixels

F32 = npt.NDArray[np.float32]

__all__ = ["forward", "forward_unfolded", "preprocess_image", "preprocess_pixels", "softmax"]


def _pad_same(x: F32, kernel: int, stride: int) -> tuple[F32, int, int]:
    """Pad an [N, H, W, C] batch TensorFlow-SAME style; returns the padded array and the output size."""
    oh, top, bottom = same_pads(x.shape[1], kernel, stride)
    ow, left, right = same_pads(x.shape[2], kernel, stride)
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))), oh, ow


def _windows(xp: F32, kernel: int, stride: int, oh: int, ow: int) -> list[F32]:
    """The k*k shifted, strided views [N, oh, ow, C] of a padded input, in (kh, kw) order."""
    return [
        xp[:, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride, :]
        for i in range(kernel)
        for j in range(kernel)
    ]


def conv2d(x: F32, w: F32, b: F32, stride: int) -> F32:
    """Full conv, NHWC input, weight [kh, kw, cin, cout]: im2col then one matmul."""
    k = w.shape[0]
    xp, oh, ow = _pad_same(x, k, stride)
    cols = np.concatenate(_windows(xp, k, stride, oh, ow), axis=-1)  # [N, oh, ow, k*k*cin]
    return (cols @ w.reshape(-1, w.shape[-1]) + b).astype(np.float32)


def depthwise(x: F32, w: F32, b: F32, stride: int) -> F32:
    """Depthwise conv, weight [k, k, C]."""
    k = w.shape[0]
    xp, oh, ow = _pad_same(x, k, stride)
    acc = np.zeros((x.shape[0], oh, ow, x.shape[3]), dtype=np.float32)
    for n, view in enumerate(_windows(xp, k, stride, oh, ow)):
        acc += view * w[n // k, n % k]
    return acc + b


def pointwise(x: F32, w: F32, b: F32) -> F32:
    """1x1 conv, weight [cin, cout]."""
    return (x @ w + b).astype(np.float32)


def relu6(x: F32) -> F32:
    return np.clip(x, 0.0, 6.0)


def _as_batch(x: npt.NDArray[Any]) -> F32:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(f"expected NHWC input [N, H, W, 3], got {arr.shape}")
    return arr


def forward(tensors: Mapping[str, F32], x: npt.NDArray[Any], blocks: Sequence[Block] = BLOCKS) -> F32:
    """Logits [N, 1000] from the EWT tensors (folded, NHWC layouts) for NHWC input [N, 224, 224, 3]."""
    h = relu6(conv2d(_as_batch(x), tensors["stem.w"], tensors["stem.b"], 2))
    for blk in blocks:
        p = f"blocks.{blk.index}"
        y = h
        if blk.expand != 1:
            y = relu6(pointwise(y, tensors[f"{p}.expand.w"], tensors[f"{p}.expand.b"]))
        y = relu6(depthwise(y, tensors[f"{p}.dw.w"], tensors[f"{p}.dw.b"], blk.stride))
        y = pointwise(y, tensors[f"{p}.project.w"], tensors[f"{p}.project.b"])
        h = h + y if blk.residual else y
    h = relu6(pointwise(h, tensors["head.w"], tensors["head.b"]))
    pooled: F32 = h.mean(axis=(1, 2), dtype=np.float32)
    return np.asarray(pooled @ tensors["fc.w"] + tensors["fc.b"], dtype=np.float32)


def forward_unfolded(sd: Mapping[str, npt.NDArray[Any]], x: npt.NDArray[Any]) -> F32:
    """Logits from the raw torch state dict (torch layouts), BatchNorm applied after each conv, no folding."""

    def bn(y: F32, name: str) -> F32:
        scale = sd[f"{name}.weight"] / np.sqrt(sd[f"{name}.running_var"] + BN_EPS)
        return np.asarray((y - sd[f"{name}.running_mean"]) * scale + sd[f"{name}.bias"], dtype=np.float32)

    def pw(y: F32, name: str) -> F32:
        return pointwise(y, sd[f"{name}.weight"][:, :, 0, 0].T, np.zeros(1, np.float32))

    zero = np.zeros(1, np.float32)
    stem_w = sd["_conv_stem.weight"].transpose(2, 3, 1, 0)
    h = relu6(bn(conv2d(_as_batch(x), stem_w, zero, 2), "_bn0"))
    for blk in BLOCKS:
        p = f"_blocks.{blk.index}"
        y = h
        if blk.expand != 1:
            y = relu6(bn(pw(y, f"{p}._expand_conv"), f"{p}._bn0"))
        dw_w = sd[f"{p}._depthwise_conv.weight"][:, 0].transpose(1, 2, 0)
        y = relu6(bn(depthwise(y, dw_w, zero, blk.stride), f"{p}._bn1"))
        y = bn(pw(y, f"{p}._project_conv"), f"{p}._bn2")
        h = h + y if blk.residual else y
    h = relu6(bn(pw(h, "_conv_head"), "_bn1"))
    pooled: F32 = h.mean(axis=(1, 2), dtype=np.float32)
    return np.asarray(pooled @ sd["_fc.weight"].T + sd["_fc.bias"], dtype=np.float32)


def softmax(logits: npt.NDArray[Any]) -> F32:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray(z / z.sum(axis=-1, keepdims=True), dtype=np.float32)


