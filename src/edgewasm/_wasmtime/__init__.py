"""The one place that reaches past wasmtime-py's public API, and the fallback when that is not possible.

Two routes give the same functions: `private` (wasmtime-py's C bindings and a few underscore attributes, on the hot
paths where the public API costs too much) and `public` (wasmtime-py's public API only: slower, but correct). At
import, `missing` checks that everything `private` relies on exists with the shape it expects. If it does, the
names below are `private`'s; if not, they are `public`'s and one warning names what is missing. Setting
EDGEWASM_WASMTIME_PUBLIC=1 forces the fallback (the tests run the suite's core on it). The choice is made once:
callers bind these names at import, so the fast route pays nothing for the fallback's existence.

The rest of edgewasm imports these names from here, never `wasmtime._ffi` or an underscore attribute of a wasmtime
object (tests/test_wasmtime_boundary.py keeps it so).
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType
from typing import Any

import wasmtime

#: Set to 1 to use wasmtime-py's public API even where the fast route would work.
PUBLIC_ENV = "EDGEWASM_WASMTIME_PUBLIC"

try:
    ffi: Any = importlib.import_module("wasmtime._ffi")
except ImportError:  # pragma: no cover - a wasmtime-py without it takes the fallback
    ffi = None

#: C functions `private` binds with raw pointers: they must be in the library.
_RAW = (
    "wasmtime_func_call_unchecked",
    "wasmtime_memory_data",
    "wasmtime_memory_data_size",
    "wasmtime_context_set_epoch_deadline",
    "wasmtime_context_set_fuel",
    "wasmtime_engine_increment_epoch",
    "wasmtime_caller_export_get",
    "wasmtime_caller_context",
)
#: C functions and types used through wasmtime-py's own prototypes: they must be bound by `wasmtime._ffi`.
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
    "wasmtime_linker_define_func_unchecked",
    "wasmtime_func_unchecked_callback_t",
    "wasmtime_val_raw_t",
    "wasmtime_extern_t",
    "WASMTIME_EXTERN_MEMORY",
    "wasm_trap_t",
    "wasmtime_error_t",
)
#: (object, attribute) pairs of wasmtime-py's private API.
_PRIVATE = (
    (wasmtime.Store, "_context"),
    (wasmtime.Caller, "_invalidate"),
    (wasmtime.Trap, "_from_ptr"),
    (wasmtime.Trap, "_consume"),
    (wasmtime.WasmtimeError, "_from_ptr"),
    (getattr(wasmtime, "_func", None), "LAST_EXCEPTION"),
)


def _struct_fields() -> tuple[tuple[type, str, Any], ...]:
    """Instance attributes whose address is passed to C, with the struct type wasmtime-py declares them as."""
    return (
        (wasmtime.Memory, "_memory", getattr(ffi, "wasmtime_memory_t", None)),
        (wasmtime.Func, "_func", getattr(ffi, "wasmtime_func_t", None)),
    )


def missing() -> list[str]:
    """Every binding or private attribute the fast route needs that this wasmtime-py lacks or declares otherwise."""
    if ffi is None:
        return ["wasmtime._ffi"]
    gone = [name for name in _RAW if not hasattr(ffi.dll, name)]
    gone += [name for name in _BOUND if not hasattr(ffi, name)]
    gone += [f"{getattr(o, '__name__', o)}.{a}" for o, a in _PRIVATE if not hasattr(o, a)]
    for owner, attr, struct in _struct_fields():
        declared = getattr(owner, "__annotations__", {}).get(attr)
        if struct is None or declared is not struct:  # annotations are objects here: the module has no __future__
            gone.append(f"{owner.__name__}.{attr} (a {getattr(struct, '__name__', 'struct')})")
    return gone


def check() -> None:
    """Raise ImportError naming everything the fast route needs that this wasmtime-py lacks."""
    gone = missing()
    if gone:
        raise ImportError(
            f"edgewasm: this wasmtime-py lacks {', '.join(gone)}; install the version constraints.txt pins"
        )


def _choose() -> tuple[ModuleType, str | None]:
    if os.environ.get(PUBLIC_ENV, "") not in ("", "0"):
        return importlib.import_module(f"{__name__}.public"), f"{PUBLIC_ENV} is set"
    gone = missing()
    if gone:
        why = f"wasmtime-py {_version()} lacks {', '.join(gone)}"
        warnings.warn(
            f"edgewasm: {why}: using its public API (slower calls, no pooling allocator); "
            "pip install the wasmtime version constraints.txt pins for the fast route",
            RuntimeWarning,
            stacklevel=2,
        )
        return importlib.import_module(f"{__name__}.public"), why
    return importlib.import_module(f"{__name__}.private"), None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wasmtime")
    except PackageNotFoundError:  # pragma: no cover
        return "?"


route, FALLBACK = _choose()
#: "private" (the fast route) or "public" (the fallback; `FALLBACK` says why).
ROUTE: str = route.__name__.rsplit(".", 1)[-1]

# The route's functions, bound once (see the module doc). Handles are addresses on the fast route, Python objects
# on the fallback: callers pass them back unread.
ValRaw: Any = route.ValRaw
#: (context, func handle, args address, nargs, trap slot address) -> error pointer or None/0
call_unchecked: Any = route.call_unchecked
#: (context, memory handle) -> base address
memory_data: Any = route.memory_data
#: (context, memory handle) -> length in bytes
memory_size: Any = route.memory_size
#: (context, ticks_from_now)
set_epoch_deadline: Any = route.set_epoch_deadline
#: (context, fuel)
set_fuel: Any = route.set_fuel
#: The address of `wasmtime_engine_increment_epoch(wasm_engine_t *)` for a C timer; 0 on the fallback.
INCREMENT_EPOCH: int = route.INCREMENT_EPOCH
#: Whether engines get the pooling allocator, and whether a GIL-free epoch ticker can be made.
POOLING: bool = route.POOLING
GIL_FREE_TICKER: bool = route.GIL_FREE_TICKER
call_context: Any = route.call_context
store_key: Any = route.store_key
#: `with calling(store):` around a call made with wasmtime-py directly into a store whose linker has edgewasm's host
#: functions (needed on the fallback only, where a Caller cannot say which store it belongs to).
calling: Any = route.calling
#: (caller, name=b"memory") -> (base address, length) of the calling instance's memory, or None
caller_memory: Any = route.caller_memory
memory_handle: Any = route.memory_handle
func_handle: Any = route.func_handle
trap_from: Any = route.trap_from
error_from: Any = route.error_from
enable_pooling: Any = route.enable_pooling
engine_clone: Any = route.engine_clone
engine_delete: Any = route.engine_delete
take_pending_exception: Any = route.take_pending_exception
#: (linker, module, name, nparams, func(caller, *i32) -> int): a WASI-NN style host function, freed with the
#: last store, instance or linker that uses it.
define_host_function: Any = route.define_host_function
#: The same through wasmtime-py's `Linker.define_func` on either route (slower; tests compare the two).
define_checked_host_function: Any = importlib.import_module(f"{__name__}.public").define_host_function


def live_host_functions() -> int:
    """How many host function definitions wasmtime still holds, on both registrations."""
    public = importlib.import_module(f"{__name__}.public")
    return int(route.live_host_functions()) + (0 if route is public else int(public.live_host_functions()))
