"""Host functions through wasmtime's unchecked C API (`wasmtime_linker_define_func_unchecked`).

`Linker.define_func` builds `Val` objects for every argument and result (~8.6 µs a call, and more Python to run
with cold caches right after a long inference); the unchecked callback reads the raw i32s in place (~0.5 µs).
Every function here is `(i32...) -> i32`: wasmtime checks the import's type at link time, so reading `num`
raw i32 slots is safe. The callbacks never raise: an errno is written to slot 0; only KeyboardInterrupt /
SystemExit become a trap (so Ctrl-C still stops a guest).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

_keepalive: list[object] = []  # the C function pointers must outlive every linker they are defined in


def _nothing(_env: int) -> None:
    """Nothing to free: the Python callback is kept alive in `_keepalive`."""


_no_finalizer: Any = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_nothing)


def available() -> bool:
    """True when this wasmtime-py exposes the unchecked linker API this module needs."""
    return all(
        hasattr(ffi, name)
        for name in ("wasmtime_linker_define_func_unchecked", "wasmtime_func_unchecked_callback_t", "wasmtime_val_raw")
    ) and hasattr(wasmtime, "Caller")


def define(linker: wasmtime.Linker, module: str, name: str, nparams: int, func: Callable[..., int]) -> None:
    """Define `module.name: (i32 x nparams) -> i32` calling `func(caller, *i32_args) -> int`."""

    def raw(_env: int, caller_ptr: Any, values: Any, _num: int) -> int:
        caller = wasmtime.Caller(caller_ptr)
        try:
            args = [values[i].i32 for i in range(nparams)]
            values[0].i32 = _to_i32(func(caller, *args))
            return 0
        except BaseException as exc:  # only KeyboardInterrupt/SystemExit get here: func catches every Exception
            # the same route as wasmtime-py's own trampoline: a trap now, the exception re-raised by the outer call
            wasmtime._func.LAST_EXCEPTION = exc  # type: ignore[assignment]
            trap = wasmtime.Trap(f"python exception in {module}.{name}")._consume()
            return ctypes.cast(trap, ctypes.c_void_p).value or 0
        finally:
            caller._invalidate()

    callback = ffi.wasmtime_func_unchecked_callback_t(raw)
    _keepalive.append(callback)
    ty = wasmtime.FuncType([wasmtime.ValType.i32()] * nparams, [wasmtime.ValType.i32()])
    _keepalive.append(ty)
    m, n = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(), ctypes.create_string_buffer(m), len(m), ctypes.create_string_buffer(n), len(n),
        ty.ptr(), callback, None, _no_finalizer,
    )  # fmt: skip
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


def _to_i32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value
