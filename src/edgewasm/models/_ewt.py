"""The EWT weight file: a text header naming little-endian tensors at 64-byte aligned offsets.

The FP32 model holds float32 tensors only (what the pure-wasm guest reads); the quantized variants' files use the
same container with the dtypes in ``DTYPES`` (docs/quantization.md).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ModelStoreError
from ._arch import Block

MAGIC = b"EWT1"
ALIGN = 64

F32 = npt.NDArray[np.float32]

# header dtype token -> little-endian numpy dtype
DTYPES: dict[str, str] = {"f32": "<f4", "f16": "<f2", "i8": "|i1", "i32": "<i4"}
_TOKENS = {(np.dtype(v).kind, np.dtype(v).itemsize): k for k, v in DTYPES.items()}


def _as_stored(t: npt.NDArray[Any]) -> tuple[str, npt.NDArray[Any]]:
    """The dtype token and the little-endian contiguous array; float64 is stored as float32 (the old behaviour)."""
    arr = np.asarray(t)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    token = _TOKENS.get((arr.dtype.kind, arr.dtype.itemsize))
    if token is None:
        raise ValueError(f"EWT cannot store dtype {arr.dtype}; use one of {', '.join(DTYPES)}")
    return token, np.ascontiguousarray(arr, dtype=DTYPES[token])


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def encode(meta: Mapping[str, str], blocks: Sequence[Block], tensors: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """The whole file. Offsets depend on the header's length, so the header is laid out to a fixed point."""
    for key, value in meta.items():
        if not key or any(c.isspace() for c in key) or "\n" in value:
            raise ValueError(f"bad meta entry {key!r}")
    head_lines = [f"meta {k} {v}" for k, v in meta.items()]
    head_lines += [f"block {b.index} {b.kernel} {b.stride} {b.expand} {b.cin} {b.cout}" for b in blocks]
    stored = {name: _as_stored(t) for name, t in tensors.items()}
    arrays = {name: arr for name, (_, arr) in stored.items()}
    data_start = _align(8)
    while True:
        offsets: dict[str, int] = {}
        pos = data_start
        lines = list(head_lines)
        for name, arr in arrays.items():
            offsets[name] = pos
            dims = "x".join(str(d) for d in arr.shape) if arr.shape else "1"
            lines.append(f"tensor {name} {stored[name][0]} {pos} {arr.nbytes} {dims}")
            pos = _align(pos + arr.nbytes)
        header = ("\n".join(lines) + "\n").encode("utf-8")
        needed = _align(8 + len(header))
        if needed == data_start:
            break
        data_start = needed
    buf = bytearray(pos)
    buf[0:4] = MAGIC
    buf[4:8] = struct.pack("<I", len(header))
    buf[8 : 8 + len(header)] = header
    for name, arr in arrays.items():
        buf[offsets[name] : offsets[name] + arr.nbytes] = arr.tobytes()
    end = max(offsets[n] + a.nbytes for n, a in arrays.items()) if arrays else data_start
    return bytes(buf[:end])


@dataclass
class EwtFile:
    """A parsed EWT file: meta, blocks and tensors (read-only views into the file's bytes)."""

    meta: dict[str, str] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    tensors: dict[str, npt.NDArray[Any]] = field(default_factory=dict)


def decode(raw: bytes) -> EwtFile:
    """Parse and check an EWT file (the same checks a guest should make)."""
    if len(raw) < 8 or raw[:4] != MAGIC:
        raise ModelStoreError("not an EWT weight file (bad magic); reinstall with: edgewasm models install --force")
    (header_len,) = struct.unpack_from("<I", raw, 4)
    if 8 + header_len > len(raw):
        raise ModelStoreError("truncated EWT file; reinstall with: edgewasm models install --force")
    out = EwtFile()
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
                name, dtype, offset, nbytes, dims = parts[1], parts[2], int(parts[3]), int(parts[4]), parts[5]
                shape = tuple(int(d) for d in dims.split("x"))
                dt = np.dtype(DTYPES[dtype])  # KeyError: an unknown dtype
                count = int(np.prod(shape))
                if offset % ALIGN or offset + nbytes > len(raw) or nbytes != dt.itemsize * count:
                    raise ValueError("bad tensor line")
                out.tensors[name] = np.frombuffer(raw, dtype=dt, count=count, offset=offset).reshape(shape)
            else:
                raise ValueError("unknown line")
        except (ValueError, IndexError, KeyError) as exc:
            raise ModelStoreError(f"corrupt EWT header line {lineno}: {line[:60]!r}") from exc
    return out


def write(
    path: Path, meta: Mapping[str, str], blocks: Sequence[Block], tensors: Mapping[str, npt.NDArray[Any]]
) -> None:
    path.write_bytes(encode(meta, blocks, tensors))


def read(path: Path) -> EwtFile:
    return decode(path.read_bytes())
