"""Host functions through wasmtime's unchecked C API (`wasmtime_linker_define_func_unchecked`).

`Linker.define_func` builds `Val` objects for every argument and result (~8.6 µs a call, and more Python to run
with cold caches right after a long inference); the unchecked callback reads the raw i32s in place (~0.5 µs).
Every function here is `(i32...) -> i32`: wasmtime checks the import's type at link time, so reading `num`
raw i32 slots is safe. The callbacks never raise: an errno is written to slot 0; `_deadline.Stopped` (the guest
call's deadline passed) and KeyboardInterrupt / SystemExit become a trap (so Ctrl-C still stops a guest).

One C trampoline and one finalizer serve the whole process, as wasmtime-py's own `define_func` does: each
definition registers its Python callback under an integer `env`, and wasmtime calls the finalizer with that `env`
when the last reference to the definition goes (the linker and every instance and InstancePre made from it), so a
dropped guest leaves nothing behind here.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

from .. import _deadline

# env -> (callback, number of i32 params, "module.name")
_registered: dict[int, tuple[Callable[..., int], int, str]] = {}
_ids = itertools.count(1)
_lock = threading.Lock()


def available() -> bool:
    """True when this wasmtime-py exposes the unchecked linker API this module needs."""
    return all(
        hasattr(ffi, name)
        for name in ("wasmtime_linker_define_func_unchecked", "wasmtime_func_unchecked_callback_t", "wasmtime_val_raw")
    ) and hasattr(wasmtime, "Caller")


def live_definitions() -> int:
    """How many definitions wasmtime still holds (tests of long-lived hosts watch this)."""
    return len(_registered)


def _trap(message: str) -> int:
    trap = wasmtime.Trap(message)._consume()
    return ctypes.cast(trap, ctypes.c_void_p).value or 0


def _trampoline(env: int | None, caller_ptr: Any, values: Any, _num: int) -> int:
    entry = _registered.get(env or 0)
    if entry is None:  # cannot happen while wasmtime holds the definition
        return _trap("edgewasm: a host function was called after it was released")
    func, nparams, qualname = entry
    caller = wasmtime.Caller(caller_ptr)
    try:
        args = [values[i].i32 for i in range(nparams)]
        values[0].i32 = _to_i32(func(caller, *args))
        return 0
    except _deadline.Stopped:
        return _trap(f"{qualname}: the guest call's deadline passed")
    except BaseException as exc:  # only KeyboardInterrupt/SystemExit get here: func catches every Exception
        # the same route as wasmtime-py's own trampoline: a trap now, the exception re-raised by the outer call
        wasmtime._func.LAST_EXCEPTION = exc  # type: ignore[assignment]
        return _trap(f"python exception in {qualname}")
    finally:
        caller._invalidate()


def _finalize(env: int | None) -> None:
    try:
        with _lock:
            _registered.pop(env or 0, None)
    except Exception:  # interpreter shutdown: nothing left to free
        pass


_TRAMPOLINE: Any = ffi.wasmtime_func_unchecked_callback_t(_trampoline) if available() else None
_FINALIZER: Any = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_finalize)
# wasmtime may call these while the interpreter tears modules down: never let the thunks themselves be freed.
for _thunk in (_TRAMPOLINE, _FINALIZER):
    if _thunk is not None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_thunk))


def define(linker: wasmtime.Linker, module: str, name: str, nparams: int, func: Callable[..., int]) -> None:
    """Define `module.name: (i32 x nparams) -> i32` calling `func(caller, *i32_args) -> int`."""
    with _lock:
        env = next(_ids)
        _registered[env] = (func, nparams, f"{module}.{name}")
    m, n = module.encode(), name.encode()
    # A fresh type each time: wasmtime ties a type to the first engine it is used with.
    ty = wasmtime.FuncType([wasmtime.ValType.i32()] * nparams, [wasmtime.ValType.i32()])
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(), ctypes.create_string_buffer(m), len(m), ctypes.create_string_buffer(n), len(n),
        ty.ptr(), _TRAMPOLINE, env, _FINALIZER,
    )  # fmt: skip
    if error:
        _finalize(env)  # wasmtime did not take it (it calls the finalizer only for definitions it holds)
        raise wasmtime.WasmtimeError._from_ptr(error)


def _to_i32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value
