"""The one module that reaches past wasmtime-py's public API: its C bindings (`wasmtime._ffi`) and a few private
attributes, on the hot paths where the public API costs too much (a call, the pooling allocator, a GIL-free epoch
tick, host functions without `Val` objects).

Everything it relies on is checked when edgewasm is imported (`check`): a wasmtime-py that renamed or removed one
of them fails there, with the name of what is missing, instead of crashing in a call. The rest of edgewasm imports
these names from here, never `wasmtime._ffi` or an underscore attribute of a wasmtime object.
"""

from __future__ import annotations

import ctypes
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

#: C functions bound here with raw pointers (see `_proto`): they must be in the library.
_RAW = (
    "wasmtime_func_call_unchecked",
    "wasmtime_memory_data",
    "wasmtime_memory_data_size",
    "wasmtime_context_set_epoch_deadline",
    "wasmtime_context_set_fuel",
    "wasmtime_engine_increment_epoch",
)
#: C functions used through wasmtime-py's own prototypes: they must be bound by `wasmtime._ffi`.
_BOUND = (
    "wasmtime_engine_clone",
    "wasm_engine_delete",
    "wasmtime_pooling_allocation_config_new",
    "wasmtime_pooling_allocation_config_delete",
    "wasmtime_pooling_allocation_config_total_core_instances_set",
    "wasmtime_pooling_allocation_config_total_memories_set",
    "wasmtime_pooling_allocation_config_total_tables_set",
    "wasmtime_pooling_allocation_config_total_stacks_set",
    "wasmtime_pooling_allocation_config_max_memory_size_set",
    "wasmtime_pooling_allocation_strategy_set",
)
#: (object, attribute) pairs of wasmtime-py's private API.
_PRIVATE = (
    (wasmtime.Store, "_context"),
    (wasmtime.Trap, "_from_ptr"),
    (wasmtime.WasmtimeError, "_from_ptr"),
    (ffi, "wasmtime_val_raw_t"),
    (ffi, "wasm_trap_t"),
    (ffi, "wasmtime_error_t"),
)


def _struct_fields() -> tuple[tuple[type, str, Any], ...]:
    """Instance attributes whose address is passed to C, with the struct type wasmtime-py declares them as."""
    return (
        (wasmtime.Memory, "_memory", getattr(ffi, "wasmtime_memory_t", None)),
        (wasmtime.Func, "_func", getattr(ffi, "wasmtime_func_t", None)),
    )


def check() -> None:
    """Raise ImportError naming every binding or private attribute this wasmtime-py lacks or declares otherwise."""
    missing = [name for name in _RAW if not hasattr(ffi.dll, name)]
    missing += [name for name in _BOUND if not hasattr(ffi, name)]
    missing += [f"{getattr(o, '__name__', o)}.{a}" for o, a in _PRIVATE if not hasattr(o, a)]
    for owner, attr, struct in _struct_fields():
        declared = getattr(owner, "__annotations__", {}).get(attr)
        if struct is None or declared is not struct:  # annotations are objects here: the module has no __future__
            missing.append(f"{owner.__name__}.{attr} (a {getattr(struct, '__name__', 'struct')})")
    if missing:
        raise ImportError(
            f"edgewasm: this wasmtime-py lacks {', '.join(missing)}; install the version constraints.txt pins"
        )


check()

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
#: The address of `wasmtime_engine_increment_epoch(wasm_engine_t *)`, for a C timer to call without Python.
INCREMENT_EPOCH: int = ctypes.cast(ffi.dll.wasmtime_engine_increment_epoch, ctypes.c_void_p).value or 0


def context_of(store: wasmtime.Store | wasmtime.Caller) -> Any:
    """The store's `wasmtime_context_t *` (the same through a Caller of that store)."""
    return store._context()


def context_address(store: wasmtime.Store | wasmtime.Caller) -> int:
    return ctypes.cast(context_of(store), ctypes.c_void_p).value or 0


def memory_address(memory: wasmtime.Memory) -> int:
    """The address of the memory's `wasmtime_memory_t`, to pass to `memory_data`/`memory_size`."""
    return ctypes.addressof(memory._memory)


def func_address(func: wasmtime.Func) -> int:
    """The address of the function's `wasmtime_func_t`, to pass to `call_unchecked`."""
    return ctypes.addressof(func._func)


def trap_from(pointer: int) -> wasmtime.Trap:
    """Take ownership of a `wasm_trap_t *` that `call_unchecked` wrote."""
    return wasmtime.Trap._from_ptr(ctypes.cast(pointer, ctypes.POINTER(ffi.wasm_trap_t)))


def error_from(pointer: int) -> wasmtime.WasmtimeError:
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


# -- host functions through the unchecked linker API (nn/_fastcall) --------------------------------------------------


def unchecked_host_functions() -> bool:
    """True when this wasmtime-py exposes what `define_unchecked` needs (else callers use `Linker.define_func`)."""
    return all(
        hasattr(ffi, name)
        for name in ("wasmtime_linker_define_func_unchecked", "wasmtime_func_unchecked_callback_t", "wasmtime_val_raw")
    ) and all(hasattr(wasmtime.Caller, a) for a in ("_invalidate",)) and hasattr(wasmtime.Trap, "_consume")


def unchecked_callback(fn: Any) -> Any:
    """A C thunk of `fn(env, caller_ptr, values, num) -> trap pointer or 0`."""
    return ffi.wasmtime_func_unchecked_callback_t(fn)


def caller(caller_ptr: Any) -> wasmtime.Caller:
    return wasmtime.Caller(caller_ptr)


def caller_done(c: wasmtime.Caller) -> None:
    """The callback returns: the Caller must not be used after it (wasmtime-py's own trampoline does the same)."""
    c._invalidate()


def new_trap(message: str) -> int:
    """A `wasm_trap_t *` for a callback to return (wasmtime takes ownership)."""
    return ctypes.cast(wasmtime.Trap(message)._consume(), ctypes.c_void_p).value or 0


def reraise_later(exc: BaseException) -> None:
    """Hand `exc` to wasmtime-py, which raises it from the outer call once the trap unwinds (its own route)."""
    wasmtime._func.LAST_EXCEPTION = exc  # type: ignore[assignment]


def define_unchecked(
    linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType, trampoline: Any, env: int, finalizer: Any
) -> None:
    m, n = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(), ctypes.create_string_buffer(m), len(m), ctypes.create_string_buffer(n), len(n),
        ty.ptr(), trampoline, env, finalizer,
    )  # fmt: skip
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
