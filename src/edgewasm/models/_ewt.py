"""The EWT weight file: a text header naming little-endian tensors at 64-byte aligned offsets.

The FP32 model holds float32 tensors only (what the pure-wasm guest reads); the quantized variants' files use the
same container with the dtypes in ``DTYPES`` (docs/quantization.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _container
from ._arch import Block

MAGIC = b"EWT1"
ALIGN = 64

F32 = npt.NDArray[np.float32]

# header dtype token -> little-endian numpy dtype
DTYPES: dict[str, str] = {"f32": "<f4", "f16": "<f2", "i8": "|i1", "i32": "<i4"}
FORMAT = _container.Format(
    MAGIC, ALIGN, DTYPES, short="EWT", kind="an EWT weight file", float64_as_float32=True, trim_tail=True
)

#: A parsed EWT file: meta, blocks and tensors (read-only views into the file's bytes).
EwtFile = _container.Container


def encode(meta: Mapping[str, str], blocks: Sequence[Block], tensors: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """The whole file; float64 tensors are stored as float32."""
    return _container.encode(FORMAT, meta, blocks, tensors)


def decode(raw: bytes) -> EwtFile:
    """Parse and check an EWT file (the same checks a guest should make)."""
    return _container.decode(FORMAT, raw)


def write(
    path: Path, meta: Mapping[str, str], blocks: Sequence[Block], tensors: Mapping[str, npt.NDArray[Any]]
) -> None:
    path.write_bytes(encode(meta, blocks, tensors))


def read(path: Path) -> EwtFile:
    return decode(path.read_bytes())
