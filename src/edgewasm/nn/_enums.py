"""WASI-NN's ABI values: errnos, graph encodings, execution targets, tensor types (and the two tensor-type numberings).

The Rust guests' binding (guest/wasi-nn-sys) carries the same witx values; tests/test_nn_units.py compares them.
"""

from __future__ import annotations

import enum
from typing import Literal

import numpy as np


class NnErrno(enum.IntEnum):
    """`nn_errno` (witx >= 2023-08 numbering, shared by wasi-nn 0.5/0.6, wasmtime and WasmEdge): the i32 result of
    every `wasi_ephemeral_nn` function."""

    SUCCESS = 0
    INVALID_ARGUMENT = 1
    INVALID_ENCODING = 2
    MISSING_MEMORY = 3
    BUSY = 4
    RUNTIME_ERROR = 5
    UNSUPPORTED_OPERATION = 6
    TOO_LARGE = 7
    NOT_FOUND = 8


class NnError(Exception):
    """Raised inside the host implementation; the callback wrapper turns it into its errno.

    It never crosses into wasmtime: every callback catches it (and everything else) and returns an int.
    """

    def __init__(self, errno: NnErrno, message: str) -> None:
        super().__init__(message)
        self.errno = errno
        self.message = message

    def __str__(self) -> str:
        return f"{self.errno.name.lower()}: {self.message}"


class GraphEncoding(enum.IntEnum):
    """witx `graph_encoding` (values 0-5), plus WasmEdge's extensions so names parse and report clearly."""

    OPENVINO = 0
    ONNX = 1
    TENSORFLOW = 2
    PYTORCH = 3
    TENSORFLOWLITE = 4
    AUTODETECT = 5
    GGML = 6  # WasmEdge only


class ExecutionTarget(enum.IntEnum):
    """witx `execution_target` (0-2), plus WasmEdge's AUTO (3), accepted only in preloads."""

    CPU = 0
    GPU = 1
    TPU = 2
    AUTO = 3


_ENCODING_NAMES: dict[str, GraphEncoding] = {
    "openvino": GraphEncoding.OPENVINO,
    "onnx": GraphEncoding.ONNX,
    "tensorflow": GraphEncoding.TENSORFLOW,
    "pytorch": GraphEncoding.PYTORCH,
    "tensorflowlite": GraphEncoding.TENSORFLOWLITE,
    "tflite": GraphEncoding.TENSORFLOWLITE,
    "autodetect": GraphEncoding.AUTODETECT,
    "ggml": GraphEncoding.GGML,
}

_TARGET_NAMES: dict[str, ExecutionTarget] = {t.name.lower(): t for t in ExecutionTarget}


def encoding_from_name(name: str) -> GraphEncoding:
    """Parse an encoding name the way WasmEdge's `--nn-preload` does (case-insensitive)."""
    try:
        return _ENCODING_NAMES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown encoding {name!r} (expected one of OpenVINO, ONNX, TensorflowLite/TFLite)") from None


def target_from_name(name: str) -> ExecutionTarget:
    """Parse CPU/GPU/TPU/AUTO, case-insensitive."""
    try:
        return _TARGET_NAMES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown target {name!r} (expected CPU, GPU, TPU or AUTO)") from None


Numbering = Literal["auto", "witx", "legacy"]

# witx >= 2023-08-23 (wasi-nn 0.6.0, wasmtime >= v15, WasmEdge >= 0.15.0, WAMR): the default.
WITX_TENSOR_TYPES: dict[int, np.dtype[np.generic]] = {
    0: np.dtype("<f2"),
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("<i8"),
}
# witx 2020-08 ... 2023-08-14 (wasi-nn 0.1-0.5, wasmtime <= v14, WasmEdge <= 0.14.1).
LEGACY_TENSOR_TYPES: dict[int, np.dtype[np.generic]] = {
    0: np.dtype("<f2"),
    1: np.dtype("<f4"),
    2: np.dtype("u1"),
    3: np.dtype("<i4"),
}


def resolve_tensor_type(code: int, n_elements: int, data_len: int, numbering: Numbering) -> np.dtype[np.generic]:
    """The element type of a guest tensor, from the type byte and (in "auto" mode) the data length.

    The two numberings disagree only on codes 2 (f64 / u8) and 3 (u8 / i32), and the element sizes
    differ in both cases, so `data_len == n_elements * itemsize` tells them apart. When both fit
    (n_elements == 0) the current witx numbering wins.
    """
    tables: list[dict[int, np.dtype[np.generic]]]
    if numbering == "witx":
        tables = [WITX_TENSOR_TYPES]
    elif numbering == "legacy":
        tables = [LEGACY_TENSOR_TYPES]
    else:
        tables = [WITX_TENSOR_TYPES, LEGACY_TENSOR_TYPES]
    candidates = [t[code] for t in tables if code in t]
    if not candidates:
        raise NnError(NnErrno.INVALID_ARGUMENT, f"unknown tensor type {code}")
    for dtype in candidates:
        if n_elements * dtype.itemsize == data_len:
            return dtype
    sizes = ", ".join(f"{d.name}: {n_elements * d.itemsize}" for d in candidates)
    raise NnError(
        NnErrno.INVALID_ARGUMENT,
        f"tensor data is {data_len} bytes but its dims and type {code} need ({sizes})",
    )
