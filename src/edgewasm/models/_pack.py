"""The packed weight image (EWP): the pure guest's weights already in the layout its kernels read.

The guest uses the tensors where they lie, read from ``pure-*.ewp`` or mapped from a bundled module's data
segment (``_bundle``), so everything is laid out here, once, at install time: GEMM weights in panels of 8
output channels (FP32 ``[panel][k][8]``; INT8 ``[panel][k/4][2][4 channels][4 k]``), biases and scales padded
to whole panels, the labels as bytes. The container is EWT's (``_ewt``): ``b"EWP1"``, u32 LE header length,
a text header (``meta``, ``block`` and ``tensor <name> <dtype> <offset> <nbytes> <dims>`` lines), then the
tensors, little-endian, each at an offset that is a multiple of ``ALIGN`` (the SIMD kernels need 256-byte
aligned panels; the guest checks it).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ModelStoreError
from ._arch import Block

MAGIC = b"EWP1"
ALIGN = 256
#: Output channels per GEMM panel, and the k step of an INT8 panel row (one 32-bit dot product lane).
NR = 8
K_STEP = 4

#: header dtype token -> little-endian numpy dtype
DTYPES: dict[str, str] = {"f32": "<f4", "i32": "<i4", "i16": "<i2", "i8": "|i1", "u8": "|u1"}
_TOKENS = {np.dtype(v).str: k for k, v in DTYPES.items()}

F32 = npt.NDArray[np.float32]


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _stored(arr: npt.NDArray[Any]) -> tuple[str, npt.NDArray[Any]]:
    a = np.asarray(arr)
    token = _TOKENS.get(a.dtype.newbyteorder("<").str if a.dtype.byteorder == ">" else a.dtype.str)
    if token is None:
        raise ValueError(f"EWP cannot store dtype {a.dtype}; use one of {', '.join(DTYPES)}")
    return token, np.ascontiguousarray(a, dtype=DTYPES[token])


def encode(meta: Mapping[str, str], blocks: Sequence[Block], tensors: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """The whole image. Offsets depend on the header's length, so the header is laid out to a fixed point."""
    for key, value in meta.items():
        if not key or any(c.isspace() for c in key) or "\n" in value:
            raise ValueError(f"bad meta entry {key!r}")
    head = [f"meta {k} {v}" for k, v in meta.items()]
    head += [f"block {b.index} {b.kernel} {b.stride} {b.expand} {b.cin} {b.cout}" for b in blocks]
    stored = {name: _stored(t) for name, t in tensors.items()}
    start = _align(8)
    while True:
        offsets: dict[str, int] = {}
        pos, lines = start, list(head)
        for name, (token, arr) in stored.items():
            offsets[name] = pos
            dims = "x".join(str(d) for d in arr.shape) if arr.shape else "1"
            lines.append(f"tensor {name} {token} {pos} {arr.nbytes} {dims}")
            pos = _align(pos + arr.nbytes)
        header = ("\n".join(lines) + "\n").encode("utf-8")
        if _align(8 + len(header)) == start:
            break
        start = _align(8 + len(header))
    buf = bytearray(pos)
    buf[0:4] = MAGIC
    buf[4:8] = struct.pack("<I", len(header))
    buf[8 : 8 + len(header)] = header
    for name, (_, arr) in stored.items():
        buf[offsets[name] : offsets[name] + arr.nbytes] = arr.tobytes()
    return bytes(buf)


@dataclass
class Image:
    """A parsed packed image: meta, blocks and tensors (read-only views into the bytes)."""

    meta: dict[str, str] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    tensors: dict[str, npt.NDArray[Any]] = field(default_factory=dict)


def decode(raw: bytes) -> Image:
    """Parse and check an image (the checks the guest makes, so tests can hold the two to each other)."""
    if len(raw) < 8 or raw[:4] != MAGIC:
        raise ModelStoreError("not a packed weight image (bad magic); reinstall with: edgewasm models install --force")
    (header_len,) = struct.unpack_from("<I", raw, 4)
    if 8 + header_len > len(raw):
        raise ModelStoreError("truncated packed weight image; reinstall with: edgewasm models install --force")
    out = Image()
    for lineno, line in enumerate(raw[8 : 8 + header_len].decode("utf-8").splitlines(), 1):
        parts = line.split(" ")
        if not line:
            continue
        try:
            if parts[0] == "meta":
                out.meta[parts[1]] = " ".join(parts[2:])
            elif parts[0] == "block":
                i, k, s, e, cin, cout = (int(p) for p in parts[1:7])
                out.blocks.append(Block(i, k, s, e, cin, cout))
            elif parts[0] == "tensor":
                name, token, offset, nbytes = parts[1], parts[2], int(parts[3]), int(parts[4])
                shape = tuple(int(d) for d in parts[5].split("x"))
                dtype = np.dtype(DTYPES[token])
                if offset % ALIGN or offset + nbytes > len(raw) or nbytes != dtype.itemsize * int(np.prod(shape)):
                    raise ValueError("bad tensor line")
                count = nbytes // dtype.itemsize
                out.tensors[name] = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape)
            else:
                raise ValueError("unknown line")
        except (ValueError, IndexError, KeyError) as exc:
            raise ModelStoreError(f"corrupt packed image header line {lineno}: {line[:60]!r}") from exc
    return out


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
