"""The tensor container shared by the EWT weight file and the EWP packed image.

Four magic bytes, the header's length (u32 LE), a text header (``meta <key> <value>``, ``block <index> <kernel>
<stride> <expand> <cin> <cout>`` and ``tensor <name> <dtype> <offset> <nbytes> <dims>`` lines), then the
tensors, little-endian, each at an offset that is a multiple of the format's alignment. The two files differ
only in their magic, alignment and dtypes (``Format``), so one parser checks both the way the guests do.
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


@dataclass(frozen=True)
class Format:
    """What tells one container file from the other."""

    magic: bytes
    align: int
    #: header dtype token -> little-endian numpy dtype
    dtypes: Mapping[str, str]
    short: str  # "EWT": "truncated EWT file", "corrupt EWT header line 3", "EWT cannot store dtype ..."
    kind: str  # "an EWT weight file": "not an EWT weight file (bad magic)"
    #: float64 tensors are stored as float32 (the EWT writer always did this)
    float64_as_float32: bool = False
    #: the file ends where the last tensor does (EWT) rather than at an aligned size (EWP)
    trim_tail: bool = False

    def token(self, arr: npt.NDArray[Any]) -> str | None:
        for token, dt in self.dtypes.items():
            d = np.dtype(dt)
            if (arr.dtype.kind, arr.dtype.itemsize) == (d.kind, d.itemsize):
                return token
        return None


@dataclass
class Container:
    """A parsed file: meta, blocks and tensors (read-only views into the file's bytes)."""

    meta: dict[str, str] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    tensors: dict[str, npt.NDArray[Any]] = field(default_factory=dict)


def _stored(fmt: Format, t: npt.NDArray[Any]) -> tuple[str, npt.NDArray[Any]]:
    arr = np.asarray(t)
    if fmt.float64_as_float32 and arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    token = fmt.token(arr)
    if token is None:
        raise ValueError(f"{fmt.short} cannot store dtype {arr.dtype}; use one of {', '.join(fmt.dtypes)}")
    return token, np.ascontiguousarray(arr, dtype=fmt.dtypes[token])


def encode(
    fmt: Format, meta: Mapping[str, str], blocks: Sequence[Block], tensors: Mapping[str, npt.NDArray[Any]]
) -> bytes:
    """The whole file. Offsets depend on the header's length, so the header is laid out to a fixed point."""

    def align(n: int) -> int:
        return (n + fmt.align - 1) // fmt.align * fmt.align

    for key, value in meta.items():
        if not key or any(c.isspace() for c in key) or "\n" in value:
            raise ValueError(f"bad meta entry {key!r}")
    head = [f"meta {k} {v}" for k, v in meta.items()]
    head += [f"block {b.index} {b.kernel} {b.stride} {b.expand} {b.cin} {b.cout}" for b in blocks]
    stored = {name: _stored(fmt, t) for name, t in tensors.items()}
    start = align(8)
    while True:
        offsets: dict[str, int] = {}
        pos, lines = start, list(head)
        for name, (token, arr) in stored.items():
            offsets[name] = pos
            dims = "x".join(str(d) for d in arr.shape) if arr.shape else "1"
            lines.append(f"tensor {name} {token} {pos} {arr.nbytes} {dims}")
            pos = align(pos + arr.nbytes)
        header = ("\n".join(lines) + "\n").encode("utf-8")
        if align(8 + len(header)) == start:
            break
        start = align(8 + len(header))
    buf = bytearray(pos)
    buf[0:4] = fmt.magic
    buf[4:8] = struct.pack("<I", len(header))
    buf[8 : 8 + len(header)] = header
    for name, (_, arr) in stored.items():
        buf[offsets[name] : offsets[name] + arr.nbytes] = arr.tobytes()
    if fmt.trim_tail:
        end = max((offsets[n] + a.nbytes for n, (_, a) in stored.items()), default=start)
        return bytes(buf[:end])
    return bytes(buf)


def decode(fmt: Format, raw: bytes) -> Container:
    """Parse and check a file (the checks the guests make, so tests can hold the two to each other)."""
    fix = "reinstall with: edgewasm models install --force"
    if len(raw) < 8 or raw[:4] != fmt.magic:
        raise ModelStoreError(f"not {fmt.kind} (bad magic); {fix}")
    (header_len,) = struct.unpack_from("<I", raw, 4)
    if 8 + header_len > len(raw):
        raise ModelStoreError(f"truncated {fmt.short} file; {fix}")
    out = Container()
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
                dtype = np.dtype(fmt.dtypes[token])  # KeyError: an unknown dtype
                count = int(np.prod(shape))
                if offset % fmt.align or offset + nbytes > len(raw) or nbytes != dtype.itemsize * count:
                    raise ValueError("bad tensor line")
                out.tensors[name] = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape)
            else:
                raise ValueError("unknown line")
        except (ValueError, IndexError, KeyError) as exc:
            raise ModelStoreError(f"corrupt {fmt.short} header line {lineno}: {line[:60]!r}") from exc
    return out
