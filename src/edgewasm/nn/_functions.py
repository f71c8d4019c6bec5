"""`WasiNN`: the `wasi_ephemeral_nn` host functions (witx / preview1 ABI) for wasmtime-py linkers."""

from __future__ import annotations

import logging
import struct
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import wasmtime

from .. import _deadline, _wasmtime
from .._abi import NN_MODULE
from ._enums import ExecutionTarget, GraphEncoding, NnErrno, NnError, Numbering, resolve_tensor_type
from ._graphcache import GraphCache
from ._guestmem import GuestMemory, u32
from ._limits import NnLimits, raise_hint
from ._preload import Preload, parse_preload
from ._ratelog import RateLimitedLog
from ._tables import HandleTable
from .backends import Backend, BackendOptions, Context, Graph, get_backend
from .backends._base import InputSpec, check_input
from .backends._onnxrefs import ModelRefused

log = logging.getLogger("edgewasm.nn")
_ratelog = RateLimitedLog(log)

MODULE = NN_MODULE
MAX_BUILDERS = 16
MAX_RANK = 8
MAX_NAME = 4096
MAX_CONFIG = 1 << 20
#: A tensor's data is a u32-sized guest range, so no valid tensor has more elements than this.
MAX_ELEMENTS = 1 << 32


@dataclass
class _Input:
    ptr: int
    nbytes: int
    dims: tuple[int, ...]
    dtype: np.dtype[np.generic]
    copy: np.ndarray | None  # set when the host copies inputs at set_input (copy_inputs=True)
    record: bytes = b""  # the validated tensor record and dims bytes: an identical one needs no re-validation


@dataclass
class _LiveGraph:
    """A graph of one store: alive while its handle or a context made from it is (`refs`)."""

    graph: Graph
    model_bytes: int  # charged to the store's budget
    charged: bool = True  # False for preloads: shared, and the host's choice
    refs: int = 1


@dataclass
class _ExecContext:
    live: _LiveGraph
    backend_ctx: Context
    charged_bytes: int = 0  # the graph's context_bytes, charged to the model budget
    inputs: dict[int, _Input] = field(default_factory=dict)
    outputs: list[np.ndarray] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def graph(self) -> Graph:
        return self.live.graph

    def held_bytes(self) -> int:
        """Tensor bytes the host holds for this context: input copies and kept outputs."""
        held = sum(i.copy.nbytes for i in self.inputs.values() if i.copy is not None)
        return held + (sum(o.nbytes for o in self.outputs) if self.outputs else 0)


class _StoreState:
    """The handles and budgets of one wasmtime store (its instances): like wasmtime and WasmEdge, handles are per
    instance, and so are the `NnLimits`."""

    def __init__(self, limits: NnLimits, n_preloads: int) -> None:
        self.limits = limits
        self.graphs: HandleTable[_LiveGraph] = HandleTable("graph", limits.graphs + n_preloads, raise_hint("graphs"))
        self.contexts: HandleTable[_ExecContext] = HandleTable(
            "execution context", limits.contexts, raise_hint("contexts")
        )
        self.named: dict[str, int] = {}  # preload name -> its live graph handle
        self.lock = threading.Lock()
        self.loaded_graphs = 0  # live graphs loaded from guest memory
        self.model_bytes = 0
        self.tensor_bytes = 0

    def charge_graph(self, nbytes: int, graphs: int = 1) -> None:
        """Charge a graph loaded from guest memory (or, graphs=0, a context's share of one) to the budgets."""
        with self.lock:
            if self.loaded_graphs + graphs > self.limits.graphs:
                raise NnError(
                    NnErrno.RUNTIME_ERROR,
                    f"this instance already holds {self.loaded_graphs} graphs loaded from its memory "
                    f"(limit {self.limits.graphs}); unload one, or {raise_hint('graphs')}",
                )
            if self.model_bytes + nbytes > self.limits.model_bytes:
                what = "model" if graphs else "context (its copy of the weights)"
                raise NnError(
                    NnErrno.TOO_LARGE,
                    f"a {nbytes}-byte {what} on top of {self.model_bytes} bytes of live models is past this "
                    f"instance's model budget of {self.limits.model_bytes} bytes; {raise_hint('model_bytes')}",
                )
            self.loaded_graphs += graphs
            self.model_bytes += nbytes

    def uncharge_graph(self, nbytes: int, graphs: int = 1) -> None:
        with self.lock:
            self.loaded_graphs -= graphs
            self.model_bytes -= nbytes

    def release_graph(self, live: _LiveGraph) -> None:
        with self.lock:
            live.refs -= 1
            gone = live.refs == 0 and live.charged
        if gone:
            self.uncharge_graph(live.model_bytes)

    def retain_graph(self, live: _LiveGraph) -> None:
        with self.lock:
            live.refs += 1

    def change_tensors(self, old: int, new: int) -> None:
        """Replace `old` held tensor bytes by `new`, or too_large past the budget (nothing changes then)."""
        with self.lock:
            total = self.tensor_bytes - old + new
            if new > old and total > self.limits.tensor_bytes:
                raise NnError(
                    NnErrno.TOO_LARGE,
                    f"holding {new} more tensor bytes would put this instance at {total} bytes, past its tensor "
                    f"budget of {self.limits.tensor_bytes}; {raise_hint('tensor_bytes')}",
                )
            self.tensor_bytes = total


class WasiNN:
    """The WASI-NN host state: preloaded models, backends, and this object's graph and context handles.

    One `WasiNN` may be defined into several linkers and serve instances in several stores and threads. Graph
    and context handles are per store (keyed by the calling store), so an instance sees only its own; each
    store gets the budgets of `limits` (`NnLimits`: graphs, contexts, model and tensor bytes). Call
    `release(store)` when discarding an instance, or `bind(store)` once to have it done when the Store is
    collected; past `max_stores` live namespaces the least recently used one is dropped. `close()` drops them
    all. Preloaded models are shared by everyone using the same `graphs` (`edgewasm.Runtime.graphs`; by default
    the default runtime's).

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
        limits: NnLimits | None = None,
        tensor_numbering: Numbering = "auto",
        copy_inputs: bool = False,
        max_stores: int = 256,
        fast_calls: bool = True,
        graphs: GraphCache | None = None,
    ) -> None:
        if graphs is None:
            from .._runtime import default_runtime

            graphs = default_runtime().graphs
        self._graphs = graphs
        self._options = options or BackendOptions()
        self.limits = limits or NnLimits()
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
        self._max_stores = max_stores
        self._stores: OrderedDict[int, _StoreState] = OrderedDict()  # by wasmtime context address, LRU order
        self._stores_lock = threading.Lock()
        self._evict_warned = False

    @property
    def preloads(self) -> tuple[Preload, ...]:
        """The models it loads for `load_by_name`, in the order given."""
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
        # Freed by wasmtime with the last linker, store or instance that uses them (see _wasmtime).
        define = _wasmtime.define_host_function if self._fast_calls else _wasmtime.define_checked_host_function
        for name, nparams, impl, needs_memory in table:
            define(linker, MODULE, name, nparams, _guard(name, impl, needs_memory, self._state))

    # ---- per-store handle namespaces ----------------------------------------------------------------------

    def bind(self, store: wasmtime.Store) -> None:
        """Give `store` a fresh handle namespace now, and release it when the Store object is collected.

        Keys are store addresses, which the allocator reuses: a namespace made here replaces whatever a dead store
        at the same address left (its finalizer may not have run yet), and that finalizer then removes only its own.
        """
        key = _store_key(store)
        with self._stores_lock:
            state = self._new_state(key)
        weakref.finalize(store, _release_state, weakref.ref(self), key, weakref.ref(state))

    def release(self, store: wasmtime.Store) -> None:
        """Drop every graph and context handle that instances in `store` created (call it when the host discards
        an instance; `bind` does it on garbage collection)."""
        self._release_key(_store_key(store))

    @property
    def live_stores(self) -> int:
        """How many stores' handle namespaces it holds: what would grow if discarded instances leaked them."""
        with self._stores_lock:
            return len(self._stores)

    def close(self) -> None:
        """Drop every store's graphs, contexts and held tensors (a host that is done with this guest)."""
        with self._stores_lock:
            self._stores.clear()

    def _release_key(self, key: int, only: _StoreState | None = None) -> None:
        with self._stores_lock:
            if only is None or self._stores.get(key) is only:
                self._stores.pop(key, None)

    def _new_state(self, key: int) -> _StoreState:
        """A fresh namespace for `key` (caller holds _stores_lock); past max_stores the least recently used goes."""
        self._stores.pop(key, None)
        state = self._stores[key] = _StoreState(self.limits, len(self._preloads))
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
        return state

    def _state(self, caller: wasmtime.Caller) -> _StoreState:
        """The calling store's handle tables (created on its first WASI-NN call if `bind` did not)."""
        key = _store_key(caller)
        with self._stores_lock:
            state = self._stores.get(key)
            if state is None:
                return self._new_state(key)
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
        nbytes = sum(sizes)
        for i, (p, n) in enumerate(zip(pairs[::2], sizes, strict=True)):
            mem.check(p, n, f"graph builder {i}")
        st.charge_graph(nbytes)  # before the copy and the backend's session: the budget bounds both
        try:
            blobs = [
                mem.read_bytes(p, n, f"graph builder {i}")
                for i, (p, n) in enumerate(zip(pairs[::2], sizes, strict=True))
            ]
            live = _LiveGraph(backend.load(blobs, ExecutionTarget(target)), nbytes)
            del blobs
            handle = st.graphs.insert(live)
        except BaseException:
            st.uncharge_graph(nbytes)
            raise
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
        graph = self._graphs.get_or_load(preload, self._backend, self._options)
        with st.lock:
            handle = st.named.get(name)
        if handle is None:
            handle = st.graphs.insert(_LiveGraph(graph, 0, charged=False))
            with st.lock:
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
        live = st.graphs.remove(handle)
        with st.lock:
            for name, h in list(st.named.items()):
                if h == handle:
                    del st.named[name]
        st.release_graph(live)
        return 0

    # ---- execution contexts -------------------------------------------------------------------------

    def _init_execution_context(self, st: _StoreState, mem: GuestMemory, graph: int, cout: int) -> int:
        live = st.graphs.get(graph)
        mem.check(cout, 4, "context out pointer")
        cost = live.graph.context_bytes if live.charged else 0
        st.charge_graph(cost, graphs=0)  # before the backend makes it
        try:
            ctx = _ExecContext(live, live.graph.new_context(), cost)
            handle = st.contexts.insert(ctx)
        except BaseException:
            st.uncharge_graph(cost, graphs=0)
            raise
        st.retain_graph(live)
        mem.write_u32(cout, handle, "context out pointer")
        return 0

    def _finalize_execution_context(self, st: _StoreState, ctx: int) -> int:
        c = st.contexts.remove(ctx)
        with c.lock:
            st.change_tensors(c.held_bytes(), 0)
            c.inputs.clear()
            c.outputs = None
        st.uncharge_graph(c.charged_bytes, graphs=0)
        st.release_graph(c.live)
        return 0

    def _set_input(self, st: _StoreState, mem: GuestMemory, ctx: int, index: int, tptr: int) -> int:
        c = st.contexts.get(ctx)
        index = u32(index)
        raw = mem.read_bytes(tptr, 20, "tensor")
        dims_ptr, dims_len = struct.unpack_from("<II", raw, 0)
        type_code = raw[8]  # one byte; bytes 9..11 are padding (the wasi-nn crate writes a u32)
        data_ptr, data_len = struct.unpack_from("<II", raw, 12)
        inputs = c.graph.inputs
        if index >= len(inputs):
            raise NnError(NnErrno.INVALID_ARGUMENT, f"input index {index} (the model has {len(inputs)})")
        if dims_len > MAX_RANK:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"tensor rank {dims_len} (at most {MAX_RANK})")
        dims_raw = mem.read_bytes(dims_ptr, 4 * dims_len, "tensor dimensions")
        record = raw + dims_raw
        with c.lock:
            last = c.inputs.get(index)
        if last is not None and last.record == record:
            # a guest that sets the same tensor every inference: dims and type were validated for these bytes
            dims, dtype = last.dims, last.dtype
        else:
            spec = inputs[index]
            dims = _checked_dims(dims_raw, spec, index)
            dtype = resolve_tensor_type(type_code, _elements(dims), data_len, self._numbering)
            check_input(spec, index, dims, dtype)
        mem.check(data_ptr, data_len, "tensor data")  # every call: the memory may have changed size
        with c.lock:
            old = c.inputs.get(index)
            held_now = old.copy.nbytes if old is not None and old.copy is not None else 0
            held_now += sum(o.nbytes for o in c.outputs) if c.outputs else 0  # set_input drops the outputs
            copy: np.ndarray | None = None
            if self._copy_inputs:
                st.change_tensors(held_now, data_len)
                copy = mem.view(data_ptr, data_len, "tensor data").view(dtype).reshape(dims).copy()
            elif held_now:
                st.change_tensors(held_now, 0)  # read in place at compute
            c.inputs[index] = _Input(u32(data_ptr), data_len, dims, dtype, copy, record)
            c.outputs = None
        return 0

    def _compute(self, st: _StoreState, mem: GuestMemory, ctx: int) -> int:
        c = st.contexts.get(ctx)
        with c.lock:
            missing = [i for i in range(len(c.graph.inputs)) if i not in c.inputs]
            if missing:
                raise NnError(NnErrno.INVALID_ARGUMENT, f"input {missing[0]} has not been set")
            arrays = [self._input_array(mem, c.inputs[i], i) for i in range(len(c.graph.inputs))]
            if c.outputs:
                old = sum(o.nbytes for o in c.outputs)
                c.outputs = None
                st.change_tensors(old, 0)
            outputs = c.backend_ctx.compute(arrays)
            del arrays  # the views of guest memory die with this call
            raw = [_raw_output(o, i) for i, o in enumerate(outputs)]
            del outputs
            st.change_tensors(0, sum(o.nbytes for o in raw))  # too_large: the outputs are dropped
            c.outputs = raw
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
            raise NnError(NnErrno.TOO_LARGE, f"buffer of {omax} bytes, output {index} needs {arr.nbytes}")
        mem.check(optr, omax, "output buffer")
        mem.write_array(optr, arr, "output buffer")
        mem.write_u32(wptr, arr.nbytes, "bytes-written pointer")
        return 0


def _checked_dims(raw: bytes, spec: InputSpec, index: int) -> tuple[int, ...]:
    """A guest tensor's dims (`raw`: rank u32s, rank at most MAX_RANK), refused unless they could describe a
    real tensor for this input: the model's rank, no zero dim the model does not have, and an element count that
    fits a guest range."""
    rank = len(raw) // 4
    if spec.dims is not None and rank != len(spec.dims):
        raise NnError(NnErrno.INVALID_ARGUMENT, f"input {index} ({spec.name}) has rank {len(spec.dims)}, got {rank}")
    dims: tuple[int, ...] = struct.unpack(f"<{rank}I", raw)
    for axis, d in enumerate(dims):
        if d == 0 and (spec.dims is None or spec.dims[axis] != 0):
            raise NnError(NnErrno.INVALID_ARGUMENT, f"input {index} dimension {axis} is 0")
    _elements(dims)
    return dims


def _elements(dims: Sequence[int]) -> int:
    """The element count, refused past MAX_ELEMENTS (checked as it grows, so it cannot overflow anything)."""
    n = 1
    for d in dims:
        n *= d
        if n > MAX_ELEMENTS:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"dims {list(dims)} describe more than {MAX_ELEMENTS} elements")
    return n


#: numpy byte-order marks that mean little-endian (or no order, for one-byte types) on this machine.
_LITTLE_ORDERS = ("<", "|", "=") if sys.byteorder == "little" else ("<", "|")


def _raw_output(array: np.ndarray, index: int) -> np.ndarray:
    """An output as the guest will get it: C order, little-endian; numeric types only (an object array's
    bytes would be host pointers)."""
    if array.dtype.kind not in "biuf":
        raise NnError(NnErrno.RUNTIME_ERROR, f"output {index} has type {array.dtype}, which has no raw bytes form")
    if array.flags.c_contiguous and array.dtype.byteorder in _LITTLE_ORDERS:
        return array  # what backends return: no copy, no new array
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def _store_key(store: wasmtime.Store | wasmtime.Caller) -> int:
    """A store's identity, the same through a Caller of that store."""
    return int(_wasmtime.store_key(store))


def _release_state(nn: weakref.ref[WasiNN], key: int, state: weakref.ref[_StoreState]) -> None:
    """`bind`'s finalizer: weak references, so that a bound store keeps neither its `WasiNN` nor, once released,
    its graphs alive; it removes its own namespace only, not a newer store's at the same address."""
    target, own = nn(), state()
    if target is not None and own is not None:
        target._release_key(key, own)


def _guard(
    name: str, impl: Callable[..., int], needs_memory: bool, state_of: Callable[[wasmtime.Caller], _StoreState]
) -> Callable[..., int]:
    """Wrap an implementation so that it returns an errno and never raises into wasmtime, except to trap.

    wasmtime-py re-raises a callback's exception through a global slot that is not thread-safe, so every
    Exception becomes an errno here. A guest's mistake is logged at debug level only; a model refused for
    reaching outside the sandbox, and an unexpected host error (with its traceback), are logged at most once
    per kind a minute. Past the guest call's deadline (`edgewasm._deadline`) the callback raises
    `_deadline.Stopped`, which the registration turns into a trap; KeyboardInterrupt and SystemExit propagate so
    Ctrl-C still stops a guest.
    """
    where = f"{MODULE}.{name}"

    def callback(caller: wasmtime.Caller, *args: int) -> int:
        if _deadline.expired():
            _deadline.stop(where)
            raise _deadline.Stopped(where)
        try:
            state = state_of(caller)
            errno = impl(state, GuestMemory(caller), *args) if needs_memory else impl(state, *args)
        except ModelRefused as exc:
            _ratelog.log(logging.WARNING, "refused", "wasi-nn %s: refused a guest model: %s", name, exc.message)
            errno = int(exc.errno)
        except NnError as exc:
            log.debug("wasi-nn %s -> %s", name, exc)
            errno = int(exc.errno)
        except Exception as exc:
            _ratelog.log(
                logging.ERROR, f"{name}:{type(exc).__name__}", "wasi-nn %s: unexpected host error", name, exc_info=True
            )
            errno = int(NnErrno.RUNTIME_ERROR)
        if _deadline.expired():
            _deadline.stop(where)
            raise _deadline.Stopped(where)
        return errno

    callback.__name__ = f"wasi_nn_{name}"
    return callback
