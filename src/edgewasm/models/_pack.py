"""The packed weight image (EWP): the pure guest's weights already in the layout its kernels read.

The guest uses the tensors where they lie, read from ``pure-*.ewp`` or mapped from a bundled module's data
segment (``_bundle``), so everything is laid out here, once, at install time: GEMM weights in panels of 8
output channels (FP32 ``[panel][k][8]``; INT8 ``[panel][k/4][2][4 channels][4 k]``), biases and scales padded
to whole panels, the labels as bytes. The container is EWT's (``_container``) with ``b"EWP1"`` and tensors at
multiples of ``ALIGN`` (the SIMD kernels need 256-byte aligned panels; the guest checks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _container
from ._arch import Block

MAGIC = b"EWP1"
ALIGN = 256
#: Output channels per GEMM panel, and the k step of an INT8 panel row (one 32-bit dot product lane).
NR = 8
K_STEP = 4

#: header dtype token -> little-endian numpy dtype
DTYPES: dict[str, str] = {"f32": "<f4", "i32": "<i4", "i16": "<i2", "i8": "|i1", "u8": "|u1"}
FORMAT = _container.Format(MAGIC, ALIGN, DTYPES, short="EWP", kind="a packed weight image")

F32 = npt.NDArray[np.float32]

#: A parsed packed image: meta, blocks and tensors (read-only views into the bytes).
Image = _container.Container


def encode(meta: Mapping[str, str], blocks: Sequence[Block], tensors: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """The whole image, padded to a multiple of ``ALIGN``."""
    return _container.encode(FORMAT, meta, blocks, tensors)


def decode(raw: bytes) -> Image:
    """Parse and check an image (the checks the guest makes, so tests can hold the two to each other)."""
    return _container.decode(FORMAT, raw)


def panels(cout: int) -> int:
    return (cout + NR - 1) // NR


def pad_channels(v: npt.NDArray[Any], cout: int) -> npt.NDArray[Any]:
    """A per-output-channel vector padded with zeros to whole panels."""
    out = np.zeros(panels(cout) * NR, dtype=v.dtype)
    out[:cout] = v
    return out


def pack_f32_gemm(w: F32, k_padded: int | None = None) -> F32:
    """``[cin][cout]`` float32 weights -> ``[panel][k][8]`` (zero rows past cin, zero channels past cout)."""
    cin, cout = w.shape
    k = k_padded or cin
    full = np.zeros((k, panels(cout) * NR), dtype=np.float32)
    full[:cin, :cout] = w
    return np.ascontiguousarray(full.reshape(k, panels(cout), NR).transpose(1, 0, 2)).reshape(-1)


#: An INT8 panel's stride is a multiple of this (the kernels mask aligned pointers, see guest/effnet/csrc).
PANEL_ALIGN = 128


def i8_panel_stride(cin: int) -> int:
    groups = (cin + K_STEP - 1) // K_STEP
    return (groups * NR * K_STEP + PANEL_ALIGN - 1) // PANEL_ALIGN * PANEL_ALIGN


def pack_i8_gemm(w: npt.NDArray[np.int8]) -> npt.NDArray[np.int8]:
    """``[cin][cout]`` int8 weights -> panels of ``[k/4][half][4 channels][4 k]``: each 16 bytes hold 4 output
    channels' 4 consecutive k values, one 32-bit lane per channel, as ``relaxed_dot_i8x16_i7x16_add`` reads
    them (cin padded with zero rows to a multiple of 4, cout with zero channels to whole panels, each panel
    padded with zeros to ``i8_panel_stride`` bytes)."""
    cin, cout = w.shape
    k = (cin + K_STEP - 1) // K_STEP * K_STEP
    full = np.zeros((k, panels(cout) * NR), dtype=np.int8)
    full[:cin, :cout] = w
    # [k/4, 4k, panel, half, 4ch] -> [panel, k/4, half, 4ch, 4k]
    t = full.reshape(k // K_STEP, K_STEP, panels(cout), 2, NR // 2).transpose(2, 0, 3, 4, 1)
    out = np.zeros((panels(cout), i8_panel_stride(cin)), dtype=np.int8)
    out[:, : k * NR] = np.ascontiguousarray(t).reshape(panels(cout), -1)
    return out.reshape(-1)


LAYOUT_FP32 = "fp32-v1"


def labels_tensor(labels: Sequence[str]) -> npt.NDArray[np.uint8]:
    return np.frombuffer("".join(f"{lab}\n" for lab in labels).encode("utf-8"), np.uint8)


def pack_fp32(
    tensors: Mapping[str, F32], blocks: Sequence[Block], meta: Mapping[str, str], labels: Sequence[str]
) -> bytes:
    """The FP32 image from the EWT tensors: GEMM weights in panels (the stem's im2col rows padded to a
    multiple of 4), biases padded to whole panels, depthwise weights ``[k*k*c]`` as they are."""
    t: dict[str, npt.NDArray[Any]] = {}

    def gemm(name: str, k_padded: int | None = None) -> None:
        w = tensors[f"{name}.w"]
        w2 = w.reshape(-1, w.shape[-1])
        t[f"{name}.w"] = pack_f32_gemm(w2, k_padded)
        t[f"{name}.b"] = pad_channels(np.asarray(tensors[f"{name}.b"], np.float32), w2.shape[1])

    stem_k = int(np.prod(tensors["stem.w"].shape[:3]))
    gemm("stem", (stem_k + K_STEP - 1) // K_STEP * K_STEP)
    for b in blocks:
        p = f"blocks.{b.index}"
        if b.expand != 1:
            gemm(f"{p}.expand")
        t[f"{p}.dw.w"] = np.ascontiguousarray(tensors[f"{p}.dw.w"], np.float32).reshape(-1)
        t[f"{p}.dw.b"] = pad_channels(np.asarray(tensors[f"{p}.dw.b"], np.float32), b.cmid)
        gemm(f"{p}.project")
    gemm("head")
    gemm("fc")
    t["labels"] = labels_tensor(labels)
    return encode({**meta, "layout": LAYOUT_FP32, "classes": str(len(labels))}, blocks, t)
