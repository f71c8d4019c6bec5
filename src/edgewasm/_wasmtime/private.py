"""The fast route: wasmtime-py's C bindings (`wasmtime._ffi`) and a few private attributes, on the hot paths where
the public API costs too much (a call, the pooling allocator, a GIL-free epoch tick, host functions without `Val`
objects). Imported only after the package checked that all of it exists (`edgewasm._wasmtime.missing`).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import threading
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

from .. import _deadline

#: Every feature of the fast route (`public` has fewer).
POOLING = True
GIL_FREE_TICKER = True

ValRaw = ffi.wasmtime_val_raw_t


def _proto(name: str, restype: Any, *argtypes: Any) -> Any:
    # Item access gives a fresh function object, so wasmtime-py's own prototypes stay as they are.
    fn = ffi.dll[name]
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


_vp, _sz, _u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64
#: (context, func, args_and_results, nargs, trap_out) -> error pointer or None
call_unchecked = _proto("wasmtime_func_call_unchecked", _vp, _vp, _vp, _vp, _sz, _vp)
#: (context, memory) -> base address
memory_data = _proto("wasmtime_memory_data", _vp, _vp, _vp)
#: (context, memory) -> length in bytes
memory_size = _proto("wasmtime_memory_data_size", _sz, _vp, _vp)
#: (context, ticks_from_now)
set_epoch_deadline = _proto("wasmtime_context_set_epoch_deadline", None, _vp, _u64)
#: (context, fuel) -> error pointer or None
set_fuel = _proto("wasmtime_context_set_fuel", _vp, _vp, _u64)
#: (caller, name, name_len, extern_out) -> found
caller_export_get = _proto("wasmtime_caller_export_get", ctypes.c_bool, _vp, ctypes.c_char_p, _sz, _vp)
#: (caller) -> its store's context
caller_context = _proto("wasmtime_caller_context", _vp, _vp)
#: The address of `wasmtime_engine_increment_epoch(wasm_engine_t *)`, for a C timer to call without Python.
INCREMENT_EPOCH: int = ctypes.cast(ffi.dll.wasmtime_engine_increment_epoch, ctypes.c_void_p).value or 0


def context_of(store: wasmtime.Store | wasmtime.Caller) -> Any:
    """The store's `wasmtime_context_t *` (the same through a Caller of that store)."""
    return store._context()


def call_context(store: wasmtime.Store) -> Any:
    """What the call functions take for `store`: the address of its `wasmtime_context_t`."""
    return ctypes.cast(context_of(store), ctypes.c_void_p).value or 0


def store_key(store: wasmtime.Store | wasmtime.Caller) -> int:
    """A store's identity, the same through a Caller of that store: the address of its context."""
    return ctypes.cast(context_of(store), ctypes.c_void_p).value or 0


def calling(store: wasmtime.Store) -> contextlib.AbstractContextManager[None]:
    """Nothing to do here: a Caller knows its store (see `public.calling`)."""
    return contextlib.nullcontext()


class _RawCaller(wasmtime.Caller):
    """The Caller our trampoline hands a host function: it also keeps the raw `wasmtime_caller_t *`, so that
    `caller_memory` looks the export up in one C call instead of building wasmtime-py objects."""

    def __init__(self, ptr: Any) -> None:
        super().__init__(ptr)
        self.raw: int | None = ctypes.cast(ptr, ctypes.c_void_p).value

    def _invalidate(self) -> None:
        self.raw = None  # like the Caller itself, unusable once the callback returned
        super()._invalidate()


_EXTERN_MEMORY = int(ffi.WASMTIME_EXTERN_MEMORY.value)


def caller_memory(caller: wasmtime.Caller, name: bytes = b"memory") -> tuple[int, int] | None:
    """(base address, length) of the calling instance's exported memory `name`, or None if it has none. A host
    function's Caller is valid only during the callback, and so are these numbers (the memory can grow)."""
    if not isinstance(caller, _RawCaller):  # a Caller made elsewhere (wasmtime-py's own define_func route)
        return _public_caller_memory(caller, name)
    raw = caller.raw
    if raw is None:
        raise ValueError("caller is no longer valid")
    item = ffi.wasmtime_extern_t()
    if not caller_export_get(raw, name, len(name), ctypes.addressof(item)) or int(item.kind) != _EXTERN_MEMORY:
        return None
    ctx = caller_context(raw)
    at = ctypes.addressof(item.of.memory)
    return memory_data(ctx, at) or 0, memory_size(ctx, at)


def _public_caller_memory(caller: wasmtime.Caller, name: bytes) -> tuple[int, int] | None:
    mem = caller.get(name.decode())
    if not isinstance(mem, wasmtime.Memory):
        return None
    return ctypes.cast(mem.data_ptr(caller), ctypes.c_void_p).value or 0, mem.data_len(caller)


def memory_handle(store: wasmtime.Store, memory: wasmtime.Memory) -> Any:
    """The address of the memory's `wasmtime_memory_t`, to pass to `memory_data`/`memory_size`."""
    return ctypes.addressof(memory._memory)


def func_handle(store: wasmtime.Store, func: wasmtime.Func) -> Any:
    """The address of the function's `wasmtime_func_t`, to pass to `call_unchecked` (the Func keeps it alive)."""
    return ctypes.addressof(func._func)


def trap_from(pointer: int) -> Exception:
    """Take ownership of a `wasm_trap_t *` that `call_unchecked` wrote."""
    return wasmtime.Trap._from_ptr(ctypes.cast(pointer, ctypes.POINTER(ffi.wasm_trap_t)))


def error_from(pointer: int) -> Exception:
    """Take ownership of a `wasmtime_error_t *` that `call_unchecked` returned."""
    return wasmtime.WasmtimeError._from_ptr(ctypes.cast(pointer, ctypes.POINTER(ffi.wasmtime_error_t)))


def enable_pooling(cfg: wasmtime.Config, instances: int, max_memory: int) -> None:
    """The pooling allocator: not exposed by wasmtime-py's Config, but its C functions are bound."""
    pool = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, instances)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, instances)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, instances)
        ffi.wasmtime_pooling_allocation_config_total_stacks_set(pool, instances)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pool, max_memory)
        ffi.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pool)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pool)


def engine_clone(engine: wasmtime.Engine) -> Any:
    """A reference of our own to the engine (`wasmtime_engine_clone`), released with `engine_delete`."""
    return ffi.wasmtime_engine_clone(engine.ptr())


def engine_delete(ref: Any) -> None:
    ffi.wasm_engine_delete(ref)


def take_pending_exception(kind: type[BaseException]) -> None:
    """Forget the exception a host function left for wasmtime-py to re-raise (its `define_func` route traps by
    raising), when it is of `kind`: that one was ours, not the caller's."""
    if isinstance(getattr(wasmtime._func, "LAST_EXCEPTION", None), kind):
        wasmtime._func.LAST_EXCEPTION = None


# -- host functions through the unchecked linker API ------------------------------------------------------------------
#
# `Linker.define_func` builds `Val` objects for every argument and result; the unchecked callback reads the raw i32s
# in place, many times cheaper. Every function here is `(i32...) -> i32`: wasmtime checks the import's type at link
# time, so reading `num` raw i32 slots is safe. `_deadline.Stopped` (the guest call's deadline passed) and
# KeyboardInterrupt / SystemExit become a trap, so Ctrl-C still stops a guest.
#
# One C trampoline and one finalizer serve the whole process, as wasmtime-py's own `define_func` does: each
# definition registers its Python callback under an integer `env`, and wasmtime calls the finalizer with that `env`
# when the last reference to the definition goes (the linker and every store, instance and InstancePre made from
# it), so a dropped guest leaves nothing behind here.

# env -> (callback, number of i32 params, "module.name")
_registered: dict[int, tuple[Callable[..., int], int, str]] = {}
_ids = itertools.count(1)
_lock = threading.Lock()


def _trap(message: str) -> int:
    """A `wasm_trap_t *` for a callback to return (wasmtime takes ownership)."""
    return ctypes.cast(wasmtime.Trap(message)._consume(), ctypes.c_void_p).value or 0


def _trampoline(env: int | None, caller_ptr: Any, values: Any, _num: int) -> int:
    entry = _registered.get(env or 0)
    if entry is None:  # cannot happen while wasmtime holds the definition
        return _trap("edgewasm: a host function was called after it was released")
    func, nparams, qualname = entry
    caller = _RawCaller(caller_ptr)
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
        caller._invalidate()  # the Caller must not be used after the callback (wasmtime-py does the same)


def _finalize(env: int | None) -> None:
    try:
        with _lock:
            _registered.pop(env or 0, None)
    except Exception:  # interpreter shutdown: nothing left to free
        pass


_TRAMPOLINE: Any = ffi.wasmtime_func_unchecked_callback_t(_trampoline)
_FINALIZER: Any = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_finalize)
# wasmtime may call these while the interpreter tears modules down: never let the thunks themselves be freed.
for _thunk in (_TRAMPOLINE, _FINALIZER):
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_thunk))


def define_host_function(
    linker: wasmtime.Linker, module: str, name: str, nparams: int, func: Callable[..., int]
) -> None:
    """Define `module.name: (i32 x nparams) -> i32` calling `func(caller, *i32_args) -> int`, which raises only
    `_deadline.Stopped` (to trap at the guest call's deadline) or KeyboardInterrupt / SystemExit."""
    with _lock:
        env = next(_ids)
        _registered[env] = (func, nparams, f"{module}.{name}")
    # A fresh type each time: wasmtime ties a type to the first engine it is used with.
    ty = wasmtime.FuncType([wasmtime.ValType.i32()] * nparams, [wasmtime.ValType.i32()])
    m, n = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(), ctypes.create_string_buffer(m), len(m), ctypes.create_string_buffer(n), len(n),
        ty.ptr(), _TRAMPOLINE, env, _FINALIZER,
    )  # fmt: skip
    if error:
        _finalize(env)  # wasmtime did not take it (it calls the finalizer only for definitions it holds)
        raise wasmtime.WasmtimeError._from_ptr(error)


def live_host_functions() -> int:
    """How many definitions wasmtime still holds (tests of long-lived hosts watch this)."""
    return len(_registered)


def _to_i32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value
