"""WASI-NN error numbers (witx >= 2023-08 numbering, shared by wasi-nn 0.5/0.6, wasmtime and WasmEdge)."""

from __future__ import annotations

import enum


class NnErrno(enum.IntEnum):
    """`nn_errno`: returned as the i32 result of every `wasi_ephemeral_nn` function."""

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
