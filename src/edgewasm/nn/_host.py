"""`WasiNN`: the `wasi_ephemeral_nn` host functions (witx / preview1 ABI) for wasmtime-py linkers."""

from __future__ import annotations

import ctypes
import logging
import math
import struct
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import wasmtime

from . import _fastcall, _graphcache
from ._enums import ExecutionTarget, GraphEncoding, Numbering, resolve_tensor_type
from ._errno import NnErrno, NnError
from ._guestmem import GuestMemory, u32
from ._preload import Preload, parse_preload
from ._tables import HandleTable
from .backends import Backend, BackendOptions, Context, Graph, get_backend
from .backends._base import check_input

log = logging.getLogger("edgewasm.nn")

MODULE = "wasi_ephemeral_nn"
MAX_BUILDERS = 16
MAX_RANK = 8
MAX_NAME = 4096
MAX_CONFIG = 1 << 20
MAX_MODEL_BYTES = 2 << 30


def imports_wasi_nn(module: wasmtime.Module) -> bool:
    """True when a module imports anything from `wasi_ephemeral_nn` (so the host should `define` it)."""
    return any(imp.module == MODULE for imp in module.imports)


@dataclass
class _Input:
    ptr: int
    nbytes: int
    dims: tuple[int, ...]
    dtype: np.dtype[np.generic]
    copy: np.ndarray | None  # set when the host copies inputs at set_input (copy_inputs=True)


class _StoreState:
    """The handles of one wasmtime store (its instances): like wasmtime and WasmEdge, handles are per instance."""

    def __init__(self, max_graphs: int, max_contexts: int) -> None:
        self.graphs: HandleTable[Graph] = HandleTable("graph", max_graphs)
        self.contexts: HandleTable[_ExecContext] = HandleTable("execution context", max_contexts)
        self.named: dict[str, int] = {}  # preload name -> its live graph handle
        self.lock = threading.Lock()


@dataclass
class _ExecContext:
    graph: Graph
    backend_ctx: Context
    inputs: dict[int, _Input] = field(default_factory=dict)
    outputs: list[np.ndarray] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class WasiNN:
    """The WASI-NN host state: preloaded models, backends, and this object's graph and context handles.

    One `WasiNN` may be defined into several linkers and serve instances in several stores and threads. Graph
    and context handles are per store (keyed by the calling store), so an instance sees only its own; each
    store may hold `max_graphs` graphs and `max_contexts` contexts. Call `release(store)` when discarding an
    instance, or `bind(store)` once to have it done when the Store is collected; past `max_stores` live
    namespaces the least recently used one is dropped. Preloaded models are shared by everyone.

    Inputs are read zero-copy: `set_input` validates the tensor and remembers where it is, and `compute`
    hands the backend numpy views of guest memory (taken at the memory's current base). The guest must keep
    the input buffer alive and unchanged until `compute` returns, as WasmEdge's OpenVINO backend requires;
    `copy_inputs=True` copies at `set_input` instead (wasmtime's semantics).
    """

    def __init__(
        self,
        preloads: Iterable[Preload | str] = (),
        *,
        options: BackendOptions | None = None,
        tensor_numbering: Numbering = "auto",
        copy_inputs: bool = False,
        max_graphs: int = 64,
        max_contexts: int = 256,
        max_stores: int = 256,
        fast_calls: bool = True,
    ) -> None:
        self._options = options or BackendOptions()
        self._numbering: Numbering = tensor_numbering
        self._copy_inputs = copy_inputs
        self._fast_calls = fast_calls
        self._preloads: dict[str, Preload] = {}
        for p in preloads:
            pre = parse_preload(p) if isinstance(p, str) else p
            if pre.name in self._preloads:
                raise ValueError(f"two --nn-preload entries are named {pre.name!r}")
            self._preloads[pre.name] = pre
        self._backends: dict[GraphEncoding, Backend] = {}
        self._limits = (max_graphs, max_contexts)
        self._max_stores = max_stores
        self._stores: OrderedDict[int, _StoreState] = OrderedDict()  # by wasmtime context address, LRU order
        self._stores_lock = threading.Lock()
        self._evict_warned = False

    @property
    def preloads(self) -> tuple[Preload, ...]:
        return tuple(self._preloads.values())

    # ---- wiring -------------------------------------------------------------------------------------

    def define(self, linker: wasmtime.Linker) -> None:
        """Register every `wasi_ephemeral_nn` function (each `(i32...) -> i32`) in `linker`."""
        table: list[tuple[str, int, Callable[..., int], bool]] = [
            ("load", 5, self._load, True),
            ("load_by_name", 3, self._load_by_name, True),
            ("load_by_name_with_config", 5, self._load_by_name_with_config, True),
            ("init_execution_context", 2, self._init_execution_context, True),
            ("set_input", 3, self._set_input, True),
            ("compute", 1, self._compute, True),
            ("get_output", 5, self._get_output, True),
            ("unload", 1, self._unload, False),
            ("finalize_execution_context", 1, self._finalize_execution_context, False),
        ]
        fast = self._fast_calls and _fastcall.available()
        i32 = wasmtime.ValType.i32()
        for name, nparams, impl, needs_memory in table:
            callback = _guard(name, impl, needs_memory, self._state)
            if fast:
                _fastcall.define(linker, MODULE, name, nparams, callback)
            else:
                ty = wasmtime.FuncType([i32] * nparams, [i32])
                linker.define_func(MODULE, name, ty, callback, access_caller=True)

    # ---- per-store handle namespaces ----------------------------------------------------------------------

    def bind(self, store: wasmtime.Store) -> None:
        """Release this store's graphs and contexts automatically when the Store object is collected."""
        weakref.finalize(store, self._release_key, _store_key(store))

    def release(self, store: wasmtime.Store) -> None:
        """Drop every graph and context handle that instances in `store` created (call it when the host discards
        an instance; `bind` does it on garbage collection)."""
        self._release_key(_store_key(store))

    def _release_key(self, key: int) -> None:
        with self._stores_lock:
            self._stores.pop(key, None)

    def _state(self, caller: wasmtime.Caller) -> _StoreState:
        """The calling store's handle tables (created on its first WASI-NN call)."""
        key = _store_key(caller)
        with self._stores_lock:
            state = self._stores.get(key)
            if state is None:
                state = self._stores[key] = _StoreState(*self._limits)
                if len(self._stores) > self._max_stores:
                    # a host that never releases stores: forget the least recently used one
                    self._stores.popitem(last=False)
                    if not self._evict_warned:
                        self._evict_warned = True
                        log.warning(
                            "wasi-nn: more than %d stores hold handles (is the host calling release/bind?); "
                            "dropping the least recently used",
                            self._max_stores,
                        )
            else:
                self._stores.move_to_end(key)
            return state

    # ---- graphs -------------------------------------------------------------------------------------

    def _backend(self, encoding: GraphEncoding) -> Backend:
        return get_backend(encoding, self._options, self._backends)

    def _load(
        self, st: _StoreState, mem: GuestMemory, bptr: int, count: int, encoding: int, target: int, gout: int
    ) -> int:
        count, encoding, target = u32(count), u32(encoding), u32(target)
        mem.check(gout, 4, "graph out pointer")
        if count > MAX_BUILDERS:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"{count} graph builders (at most {MAX_BUILDERS})")
        pairs = mem.read_u32s(bptr, 2 * count, "graph builder array")
        if encoding not in GraphEncoding._value2member_map_:
            raise NnError(NnErrno.INVALID_ENCODING, f"unknown graph encoding {encoding}")
        if target > ExecutionTarget.TPU:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"unknown execution target {target}")
        backend = self._backend(GraphEncoding(encoding))
        if count != backend.blob_count:
            raise NnError(
                NnErrno.INVALID_ARGUMENT,
                f"{backend.encoding_name} takes {backend.blob_count} graph builder(s), got {count}",
            )
        sizes = pairs[1::2]
        if sum(sizes) > MAX_MODEL_BYTES:
            raise NnError(NnErrno.TOO_LARGE, f"model blobs total {sum(sizes)} bytes")
        blobs = [
            mem.read_bytes(p, n, f"graph builder {i}") for i, (p, n) in enumerate(zip(pairs[::2], sizes, strict=True))
        ]
        graph = backend.load(blobs, ExecutionTarget(target))
        handle = st.graphs.insert(graph)
        mem.write_u32(gout, handle, "graph out pointer")
        return 0

    def _load_by_name(self, st: _StoreState, mem: GuestMemory, nptr: int, nlen: int, gout: int) -> int:
        nlen = u32(nlen)
        if nlen > MAX_NAME:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"graph name of {nlen} bytes")
        raw = mem.read_bytes(nptr, nlen, "graph name")
        mem.check(gout, 4, "graph out pointer")
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise NnError(NnErrno.INVALID_ARGUMENT, "graph name is not UTF-8") from None
        preload = self._preloads.get(name)
        if preload is None:
            raise NnError(NnErrno.NOT_FOUND, f"no preloaded graph named {name!r}")
        graph = _graphcache.get_or_load(preload, self._backend, self._options)
        with st.lock:
            handle = st.named.get(name)
            if handle is None:
                handle = st.graphs.insert(graph)
                st.named[name] = handle
        mem.write_u32(gout, handle, "graph out pointer")
        return 0

    def _load_by_name_with_config(
        self, st: _StoreState, mem: GuestMemory, nptr: int, nlen: int, cptr: int, clen: int, gout: int
    ) -> int:
        clen = u32(clen)
        if clen > MAX_CONFIG:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"config of {clen} bytes")
        mem.check(cptr, clen, "config")  # opaque (WasmEdge's GGML options); our backends take none
        return self._load_by_name(st, mem, nptr, nlen, gout)

    def _unload(self, st: _StoreState, graph: int) -> int:
        handle = u32(graph)
        st.graphs.remove(handle)
        with st.lock:
            for name, h in list(st.named.items()):
                if h == handle:
                    del st.named[name]
        return 0

    # ---- execution contexts -------------------------------------------------------------------------

    def _init_execution_context(self, st: _StoreState, mem: GuestMemory, graph: int, cout: int) -> int:
        g = st.graphs.get(graph)
        mem.check(cout, 4, "context out pointer")
        ctx = _ExecContext(g, g.new_context())
        handle = st.contexts.insert(ctx)
        mem.write_u32(cout, handle, "context out pointer")
        return 0

    def _finalize_execution_context(self, st: _StoreState, ctx: int) -> int:
        st.contexts.remove(ctx)
        return 0

    def _set_input(self, st: _StoreState, mem: GuestMemory, ctx: int, index: int, tptr: int) -> int:
        c = st.contexts.get(ctx)
        index = u32(index)
        raw = mem.read_bytes(tptr, 20, "tensor")
        dims_ptr, dims_len = struct.unpack_from("<II", raw, 0)
        type_code = raw[8]  # one byte; bytes 9..11 are padding (the wasi-nn crate writes a u32)
        data_ptr, data_len = struct.unpack_from("<II", raw, 12)
        if index >= len(c.graph.inputs):
            n_inputs = len(c.graph.inputs)
            raise NnError(NnErrno.INVALID_ARGUMENT, f"input index {index} (the model has {n_inputs})")
        if dims_len > MAX_RANK:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"tensor rank {dims_len} (at most {MAX_RANK})")
        dims = mem.read_u32s(dims_ptr, dims_len, "tensor dimensions")
        dtype = resolve_tensor_type(type_code, math.prod(dims), data_len, self._numbering)
        check_input(c.graph.inputs[index], index, dims, dtype)
        if self._copy_inputs:
            copy: np.ndarray | None = mem.view(data_ptr, data_len, "tensor data").view(dtype).reshape(dims).copy()
        else:
            mem.check(data_ptr, data_len, "tensor data")  # read in place at compute
            copy = None
        with c.lock:
            c.inputs[index] = _Input(u32(data_ptr), data_len, dims, dtype, copy)
            c.outputs = None
        return 0

    def _compute(self, st: _StoreState, mem: GuestMemory, ctx: int) -> int:
        c = st.contexts.get(ctx)
        with c.lock:
            missing = [i for i in range(len(c.graph.inputs)) if i not in c.inputs]
            if missing:
                raise NnError(NnErrno.INVALID_ARGUMENT, f"input {missing[0]} has not been set")
            arrays = [self._input_array(mem, c.inputs[i], i) for i in range(len(c.graph.inputs))]
            outputs = c.backend_ctx.compute(arrays)
            del arrays  # the views of guest memory die with this call
            c.outputs = [_raw_output(o, i) for i, o in enumerate(outputs)]
        return 0

    @staticmethod
    def _input_array(mem: GuestMemory, inp: _Input, index: int) -> np.ndarray:
        if inp.copy is not None:
            return inp.copy
        # re-checked: the guest may have shrunk nothing, but a different instance may be computing
        return mem.view(inp.ptr, inp.nbytes, f"input {index} data").view(inp.dtype).reshape(inp.dims)

    def _get_output(
        self, st: _StoreState, mem: GuestMemory, ctx: int, index: int, optr: int, omax: int, wptr: int
    ) -> int:
        c = st.contexts.get(ctx)
        index, omax = u32(index), u32(omax)
        with c.lock:
            outputs = c.outputs
        if outputs is None:
            raise NnError(NnErrno.INVALID_ARGUMENT, "get_output before a successful compute")
        if index >= len(outputs):
            raise NnError(NnErrno.INVALID_ARGUMENT, f"output index {index} (the model has {len(outputs)})")
        arr = outputs[index]
        mem.check(wptr, 4, "bytes-written pointer")
        if arr.nbytes > omax:
            # the size needed, as WasmEdge master does
            mem.write_u32(wptr, arr.nbytes, "bytes-written pointer")
            log.debug("wasi-nn get_output: buffer of %d bytes, output needs %d", omax, arr.nbytes)
            return int(NnErrno.TOO_LARGE)
        mem.check(optr, omax, "output buffer")
        mem.write_array(optr, arr, "output buffer")
        mem.write_u32(wptr, arr.nbytes, "bytes-written pointer")
        return 0


def _raw_output(array: np.ndarray, index: int) -> np.ndarray:
    """An output as the guest will get it: C order, little-endian; numeric types only (an object array's
    bytes would be host pointers)."""
    if array.dtype.kind not in "biuf":
        raise NnError(NnErrno.RUNTIME_ERROR, f"output {index} has type {array.dtype}, which has no raw bytes form")
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def _store_key(store: wasmtime.Store | wasmtime.Caller) -> int:
    """A store's identity: the address of its wasmtime context (the same through a Caller of that store)."""
    return ctypes.cast(store._context(), ctypes.c_void_p).value or 0


def _guard(
    name: str, impl: Callable[..., int], needs_memory: bool, state_of: Callable[[wasmtime.Caller], _StoreState]
) -> Callable[..., int]:
    """Wrap an implementation so that it always returns an errno and never raises into wasmtime.

    wasmtime-py re-raises a callback's exception through a global slot that is not thread-safe, so every
    Exception becomes an errno here (unexpected ones are logged with their traceback). KeyboardInterrupt and
    SystemExit are left to propagate so Ctrl-C still stops a guest.
    """

    def callback(caller: wasmtime.Caller, *args: int) -> int:
        try:
            state = state_of(caller)
            if needs_memory:
                return impl(state, GuestMemory(caller), *args)
            return impl(state, *args)
        except NnError as exc:
            log.debug("wasi-nn %s -> %s", name, exc)
            return int(exc.errno)
        except Exception:
            log.exception("wasi-nn %s: unexpected host error", name)
            return int(NnErrno.RUNTIME_ERROR)

    callback.__name__ = f"wasi_nn_{name}"
    return callback
