"""The fallback route: the same functions as `private`, through wasmtime-py's public API only. Slower (every call
goes through `Func.__call__`), but correct on a wasmtime-py whose internals moved: chosen at import when
`private`'s check fails, or forced with EDGEWASM_WASMTIME_PUBLIC=1.

The handles `Instance` passes around are Python objects here instead of addresses: the call context is the
`Store`, a memory handle is `(store, Memory)`, a function handle a `_Func`. A trap cannot be written to C memory
as a `wasm_trap_t *`, so `call_unchecked` keeps the exception under a token, writes the token where the trap
pointer goes, and `trap_from` gives the exception back: `Instance` reads both routes the same way.

What the public API cannot do: the pooling allocator (wasmtime-py's `Config` has no setting for it; engines use the
default allocator), a GIL-free epoch tick (`_ticker` uses a Python thread calling `Engine.increment_epoch`), and
host functions without `Val` objects (WASI-NN functions go through `Linker.define_func`).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import wasmtime

#: Every feature the fast route has, and whether this one has it too.
POOLING = False
GIL_FREE_TICKER = False


class ValRaw(ctypes.Union):
    """The argument and result slots `Instance` fills and reads (never passed to C on this route)."""

    _fields_ = (
        ("i32", ctypes.c_int32),
        ("i64", ctypes.c_int64),
        ("f32", ctypes.c_float),
        ("f64", ctypes.c_double),
    )


_CONTROL = (KeyboardInterrupt, SystemExit, GeneratorExit)
_pending: dict[int, BaseException] = {}
_tokens = itertools.count(1)
_local = threading.local()


class _Func:
    """A function export and how to move its values between `ValRaw` slots and `Func.__call__`."""

    __slots__ = ("func", "params", "results")

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func) -> None:
        ty = func.type(store)
        self.func = func
        self.params = tuple(_slot(t) for t in ty.params)
        self.results = tuple(_slot(t) for t in ty.results)


def _slot(ty: wasmtime.ValType) -> str:
    name = str(ty)
    if name not in ("i32", "i64", "f32", "f64"):
        raise TypeError(f"edgewasm: a guest export of type {name} (the ABI passes numbers only)")
    return name


def call_unchecked(store: wasmtime.Store, handle: _Func, args_addr: int, nargs: int, trap_addr: int) -> int:
    """Call `handle` with its arguments read from the slots at `args_addr`; its results go there. On a trap or a
    wasmtime error, returns 0 and writes a token to the `c_void_p` at `trap_addr` (see `trap_from`)."""
    slots = (ValRaw * max(nargs, len(handle.results), 1)).from_address(args_addr)
    params = [getattr(slots[i], kind) for i, kind in enumerate(handle.params)]
    outer = getattr(_local, "store", None)
    _local.store = id(store)
    try:
        result = handle.func(store, *params)
    except _CONTROL:
        raise
    except BaseException as exc:  # a Trap, a WasmtimeError, or a host function's _deadline.Stopped
        token = next(_tokens)
        _pending[token] = exc
        ctypes.c_void_p.from_address(trap_addr).value = token
        return 0
    finally:
        _local.store = outer
    values = result if isinstance(result, list | tuple) else ([] if result is None else [result])
    for i, (kind, value) in enumerate(zip(handle.results, values, strict=True)):
        setattr(slots[i], kind, value)
    return 0


def trap_from(token: int) -> Exception:
    """The exception `call_unchecked` kept under `token` (a deadline's `Stopped` is reported as the trap it is)."""
    exc = _pending.pop(token)
    if isinstance(exc, Exception):
        return exc
    return wasmtime.Trap(f"{type(exc).__name__}: {exc}")


def error_from(pointer: int) -> Exception:
    """Never needed here: `call_unchecked` reports errors through the trap slot."""
    return wasmtime.WasmtimeError(f"edgewasm: unexpected wasmtime error {pointer:#x}")


def memory_data(store: wasmtime.Store, memory: wasmtime.Memory) -> int:
    return ctypes.cast(memory.data_ptr(store), ctypes.c_void_p).value or 0


def memory_size(store: wasmtime.Store, memory: wasmtime.Memory) -> int:
    return memory.data_len(store)


def set_epoch_deadline(store: wasmtime.Store, ticks: int) -> None:
    store.set_epoch_deadline(ticks)


def set_fuel(store: wasmtime.Store, fuel: int) -> None:
    store.set_fuel(fuel)


#: No C function to hand a timer: `_ticker` falls back to its Python thread.
INCREMENT_EPOCH = 0


def call_context(store: wasmtime.Store) -> Any:
    return store


def store_key(store: wasmtime.Store | wasmtime.Caller) -> int:
    """A store's identity. The public API cannot tell which store a Caller belongs to, so `call_unchecked` records
    the store it calls into (per thread): a host function's Caller belongs to it."""
    if isinstance(store, wasmtime.Store):
        return id(store)
    key: int | None = getattr(_local, "store", None)
    if key is None:
        raise RuntimeError(
            "edgewasm: on wasmtime-py's public API a WASI-NN host function must be called through an edgewasm "
            "Guest, or inside `with edgewasm.nn.calling(store):` (the store of a bare Caller cannot be told)"
        )
    return key


@contextlib.contextmanager
def calling(store: wasmtime.Store) -> Iterator[None]:
    """Around a call into `store` made with wasmtime-py directly (a host's own linker with `edgewasm.nn`): its host
    functions' Callers are taken to belong to `store` (see `store_key`)."""
    outer = getattr(_local, "store", None)
    _local.store = id(store)
    try:
        yield
    finally:
        _local.store = outer


def caller_memory(caller: wasmtime.Caller, name: bytes = b"memory") -> tuple[int, int] | None:
    """(base address, length) of the calling instance's exported memory `name`, or None if it has none."""
    mem = caller.get(name.decode())
    if not isinstance(mem, wasmtime.Memory):
        return None
    return ctypes.cast(mem.data_ptr(caller), ctypes.c_void_p).value or 0, mem.data_len(caller)


def memory_handle(store: wasmtime.Store, memory: wasmtime.Memory) -> Any:
    return memory


def func_handle(store: wasmtime.Store, func: wasmtime.Func) -> Any:
    return _Func(store, func)


def enable_pooling(cfg: wasmtime.Config, instances: int, max_memory: int) -> None:
    """wasmtime-py's public Config has no pooling allocator: engines keep the default one (see `POOLING`)."""


def engine_clone(engine: wasmtime.Engine) -> Any:
    raise NotImplementedError("edgewasm: no GIL-free epoch ticker on wasmtime-py's public API")


def engine_delete(ref: Any) -> None:
    raise NotImplementedError("edgewasm: no GIL-free epoch ticker on wasmtime-py's public API")


def take_pending_exception(kind: type[BaseException]) -> None:
    """Nothing is left pending here: `Func.__call__` raised the host function's exception, which
    `call_unchecked` kept."""


# -- host functions: wasmtime-py's Linker.define_func ---------------------------------------------------------------

_live: set[int] = set()
_ids = itertools.count(1)
_lock = threading.Lock()


class _Host:
    """One definition's callback; wasmtime-py frees it when wasmtime drops the definition (its finalizer)."""

    __slots__ = ("__weakref__", "func")

    def __init__(self, func: Callable[..., int]) -> None:
        self.func = func

    def __call__(self, caller: wasmtime.Caller, *args: int) -> int:
        return self.func(caller, *args)


def define_host_function(
    linker: wasmtime.Linker, module: str, name: str, nparams: int, func: Callable[..., int]
) -> None:
    """Define `module.name: (i32 x nparams) -> i32` calling `func(caller, *i32_args) -> int`, which raises only
    `_deadline.Stopped` (to trap at the guest call's deadline) or KeyboardInterrupt / SystemExit."""
    i32 = wasmtime.ValType.i32()
    host = _Host(func)
    with _lock:
        env = next(_ids)
        _live.add(env)
    weakref.finalize(host, _forget, env)
    linker.define_func(module, name, wasmtime.FuncType([i32] * nparams, [i32]), host, access_caller=True)


def _forget(env: int) -> None:
    with _lock:
        _live.discard(env)


def live_host_functions() -> int:
    """How many definitions wasmtime still holds (tests of long-lived hosts watch this)."""
    return len(_live)
