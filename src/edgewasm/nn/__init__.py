"""WASI-NN (`wasi_ephemeral_nn`, the witx / preview1 ABI) for edgewasm guests.

    nn = WasiNN(["default:ONNX:CPU:model.onnx"])
    nn.define(linker)          # before instantiating a module that imports wasi_ephemeral_nn
    with calling(store):       # around your own calls into the guest (needed on the public-API fallback only)
        func(store, ...)

Backends (ONNX Runtime, OpenVINO, LiteRT) are imported only when a guest asks for their encoding.
See docs/wasi-nn.md.
"""

from __future__ import annotations

from .._abi import imports_wasi_nn
from .._wasmtime import calling
from ._enums import ExecutionTarget, GraphEncoding, NnErrno, NnError, resolve_tensor_type
from ._functions import MODULE, WasiNN
from ._limits import NnLimits
from ._preload import Preload, parse_preload
from .backends import BackendOptions

__all__ = [
    "MODULE",
    "BackendOptions",
    "ExecutionTarget",
    "GraphEncoding",
    "NnErrno",
    "NnError",
    "NnLimits",
    "Preload",
    "WasiNN",
    "calling",
    "imports_wasi_nn",
    "parse_preload",
    "resolve_tensor_type",
]
