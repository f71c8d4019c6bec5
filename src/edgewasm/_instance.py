"""One live instance and its call path: the product.

wasmtime-py's `Func.__call__` rebuilds type and value objects on every call, which costs many times what the C
API's unchecked call through ctypes does (docs/benchmarks.md measures both). This module calls
`wasmtime_func_call_unchecked` with an argument buffer made once, writes requests with `memmove` into one reusable
guest buffer, decodes responses in place from guest memory, and re-reads the memory's base and length after every
call, because a call that grows memory may move it. On wasmtime-py's public-API fallback (`_wasmtime`) the same
code runs with `Func.__call__` and `Memory.data_ptr` behind those names.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable
from typing import Any

import wasmtime

from . import _abi, _codec, _deadline, _engine, _wasmtime
from ._errors import (
    AbiError,
    BadExitStatus,
    EdgeWasmError,
    GuestOutOfFuel,
    GuestOutOfMemory,
    GuestTimeout,
    GuestTrap,
    MemoryLimitTooSmall,
    ModuleLoadError,
    ProcExit,
)
from ._loader import Loaded
from ._output import StderrSink
from ._sandbox import WASM_PAGE, Sandbox

#: What Rust's default allocation-error handler prints before it aborts (the abort is an `unreachable` trap).
_RUST_ALLOC_FAILED = re.compile(r"memory allocation of (\d+) bytes failed")


_call_unchecked = _wasmtime.call_unchecked
_memory_data = _wasmtime.memory_data
_memory_size = _wasmtime.memory_size
_set_deadline = _wasmtime.set_epoch_deadline
_set_fuel = _wasmtime.set_fuel
_memmove = ctypes.memmove
_addressof = ctypes.addressof
_c_char = ctypes.c_char
_ubytes = ctypes.c_ubyte


def trap_reason(text: str) -> str:
    """The line of a wasmtime trap message that says why (it follows the backtrace, after "Caused by:")."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if "Caused by:" in lines:
        after = lines[lines.index("Caused by:") + 1 :]
        if after:
            return after[-1]
    for line in lines:
        if not line.startswith(("error while executing", "0:", "1:", "2:")) and not line[:1].isdigit():
            return line
    return lines[0] if lines else "trap"


class Instance:
    """A Store and an instance of one guest. Not thread-safe: a Guest gives each thread its own.

    After a trap the instance is `broken` and must be replaced; nothing of its state is trusted again.
    """

    def __init__(
        self,
        loaded: Loaded,
        pre: wasmtime.InstancePre,
        sandbox: Sandbox,
        wasi: wasmtime.WasiConfig | None = None,
        stderr: StderrSink | None = None,
    ) -> None:
        self.loaded = loaded
        self.sandbox = sandbox
        self.broken = False
        engine = loaded.engine
        store = wasmtime.Store(engine)
        if wasi is None:
            stderr = sandbox.stderr_sink()
            wasi = sandbox.wasi_config(loaded.name, stderr)
        #: The tail of what the guest wrote to stderr, where the host sees it (see _output), to explain a trap.
        self.stderr = stderr
        store.set_wasi(wasi)
        if sandbox.memory_limit is not None:
            store.set_limits(memory_size=sandbox.memory_limit)
        self.store = store
        self._ctx = _wasmtime.call_context(store)
        self._deadline = _engine.deadline_ticks(sandbox.timeout)
        if sandbox.timeout is not None:
            loaded.engines.ensure_ticker(loaded.settings)
        _set_deadline(self._ctx, self._deadline)
        self._fuel = sandbox.fuel
        self._trap = ctypes.c_void_p()
        self._trap_addr = ctypes.addressof(self._trap)
        self._args = (_wasmtime.ValRaw * 2)()
        self._args_addr = ctypes.addressof(self._args)
        try:
            self.instance = pre.instantiate(store)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
            raise self._instantiate_error(e) from None
        exports = self.instance.exports(store)
        memory = exports.get("memory")
        self.memory = memory if isinstance(memory, wasmtime.Memory) else None
        self._mem_addr = _wasmtime.memory_handle(store, self.memory) if self.memory is not None else 0
        self._funcs: dict[str, wasmtime.Func] = {}
        for name in _abi.EXPORTS:
            f = exports.get(name)
            if isinstance(f, wasmtime.Func):
                self._funcs[name] = f
        # What the call takes for each export: on the fast route the address of its wasmtime_func_t.
        self._faddr = {name: _wasmtime.func_handle(store, f) for name, f in self._funcs.items()}
        if loaded.verdict.kind == "reactor" and not {"infer", "edge_alloc", "edge_free"} <= self._faddr.keys():
            raise AbiError(f"{loaded.name}: the instance lacks the ABI v1 exports its module declared")
        self._per_call = sandbox.fuel is not None or sandbox.timeout is not None
        # Only WASI-NN host functions read the call's deadline (`_deadline`): other guests do not pay for it.
        self._host_deadline = sandbox.timeout is not None and loaded.verdict.imports_wasi_nn
        self._buf_ptr = 0
        self._buf_cap = 0
        # A view of all of guest memory, rebuilt whenever its base or length changes (growth may move it).
        self._view_at = (0, -1)
        self._view = memoryview(b"")

    def _instantiate_error(self, e: Exception) -> EdgeWasmError:
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        if "exceeds memory limits" in text or "memory minimum size" in text:
            return MemoryLimitTooSmall(
                f"{self.loaded.name}: the module's initial memory does not fit its memory limit "
                f"({self.sandbox.memory_limit} bytes): {first}",
                hint="raise memory_limit= (or --memory-limit) above the module's initial memory",
            )
        if "concurrent limit" in text:
            return ModuleLoadError(
                f"{self.loaded.name}: too many live instances ({first})",
                hint="close() guests you no longer need; every thread of every guest holds one instance",
            )
        if "unknown import" in text:
            return ModuleLoadError(
                f"{self.loaded.name}: {first}",
                hint="the module imports something this host does not provide (WASI preview 1 and "
                "wasi_ephemeral_nn are provided)",
            )
        return ModuleLoadError(f"{self.loaded.name}: cannot instantiate: {first}")

    # -- calls ---------------------------------------------------------------------------------------------------

    def _raw_call(self, func_addr: Any, nargs: int) -> None:
        """Call with the arguments already in `self._args`; results land there too. Raises on a trap."""
        if self._per_call:
            if self._fuel is not None:
                _set_fuel(self._ctx, self._fuel)
            if self.sandbox.timeout is not None:
                _set_deadline(self._ctx, self._deadline)
                if self._host_deadline:
                    return self._timed_call(func_addr, nargs, self.sandbox.timeout)
        err = _call_unchecked(self._ctx, func_addr, self._args_addr, nargs, self._trap_addr)
        if err or self._trap.value:
            self.broken = True
            raise self._trap_error(err)

    def _timed_call(self, func_addr: Any, nargs: int, timeout: float) -> None:
        """A call under the sandbox's timeout. The epoch interrupt stops wasm code; host functions (WASI-NN) see the
        deadline through `_deadline`, cancel their work when it passes and return a trap, reported here."""
        outer = _deadline.enter(timeout)
        try:
            err = _call_unchecked(self._ctx, func_addr, self._args_addr, nargs, self._trap_addr)
        finally:
            stopped_in = _deadline.leave(outer)
        if err or self._trap.value:
            self.broken = True
            error = self._trap_error(err)
            if stopped_in is not None:
                # wasmtime-py's define_func route traps by raising; that exception is ours, not the caller's
                _wasmtime.take_pending_exception(_deadline.Stopped)
                raise GuestTimeout(
                    f"{self.loaded.name}: guest call exceeded its timeout of {timeout:g} s "
                    f"and was stopped in {stopped_in}",
                    trap_code="INTERRUPT",
                )
            raise error

    def exports(self, name: str) -> bool:
        """Whether the instance has the ABI's function export `name`."""
        return name in self._funcs

    def discard(self) -> None:
        """Never use this instance again (its owner makes a fresh one): it trapped, failed to start, or was closed."""
        self.broken = True

    def call_export(self, name: str, *args: int) -> int:
        """Call a function export with i32 arguments; returns the raw i64 slot (callers mask what they need)."""
        for i, a in enumerate(args):
            self._args[i].i32 = a
        self._raw_call(self._faddr[name], max(len(args), 1))
        return int(self._args[0].i64)

    def _trap_error(self, err: int | None) -> EdgeWasmError:
        exc: Exception
        if self._trap.value:
            exc = _wasmtime.trap_from(self._trap.value)
            self._trap.value = None
        else:
            exc = _wasmtime.error_from(err or 0)
        error = self.classify(exc)
        if isinstance(error, GuestTrap) and self.stderr is not None:
            error.stderr = self.stderr.value()
        return error

    def classify(self, exc: Exception) -> EdgeWasmError:
        """Turn a wasmtime trap or error into the edgewasm exception that says why."""
        name = self.loaded.name
        if isinstance(exc, wasmtime.ExitTrap):
            return ProcExit(f"{name}: guest called proc_exit({exc.code}) during a call", exc.code)
        first = trap_reason(str(exc))
        if "exit with invalid exit status" in first:
            return BadExitStatus(f"{name}: guest called proc_exit with a status outside 0..125", trap_code="exit")
        code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
        code_name = code.name if code is not None else None
        if code == wasmtime.TrapCode.INTERRUPT:
            return GuestTimeout(
                f"{name}: guest call exceeded its timeout of {self.sandbox.timeout:g} s and was interrupted",
                trap_code=code_name,
            )
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return GuestOutOfFuel(f"{name}: guest ran out of fuel ({self._fuel} units)", trap_code=code_name)
        limit = self.sandbox.memory_limit
        if self.stderr is not None and code == wasmtime.TrapCode.UNREACHABLE:
            oom = self.allocation_failure(self.stderr.text())
            if oom is not None:
                return oom
        if limit is not None and self.memory is not None:
            size = int(_memory_size(self._ctx, self._mem_addr))
            # wasmtime does not say that a memory.grow was refused; a trap with memory within a tenth of the limit
            # is how a refused grow looks (a Rust guest aborts with `unreachable`).
            if size + max(WASM_PAGE, limit // 10) > limit:
                return GuestOutOfMemory(
                    f"{name}: guest ran out of linear memory: it trapped ({first}) holding {size / 2**20:.1f} MiB "
                    f"of its {limit / 2**20:g} MiB limit",
                    trap_code=code_name,
                )
        return GuestTrap(f"{name}: guest trapped: {first}", trap_code=code_name)

    def allocation_failure(self, stderr: str) -> GuestOutOfMemory | None:
        """The error for an `unreachable` trap after which the guest's stderr says an allocation failed (what Rust's
        default handler prints before it aborts), else None."""
        alloc = _RUST_ALLOC_FAILED.findall(stderr)
        if not alloc:
            return None
        name, limit = self.loaded.name, self.sandbox.memory_limit
        size = int(_memory_size(self._ctx, self._mem_addr)) if self.memory is not None else 0
        held = f"holding {size / 2**20:.1f} MiB"
        if limit is None:
            return GuestOutOfMemory(
                f"{name}: guest ran out of memory: it could not allocate {int(alloc[-1])} bytes ({held}, no limit "
                "set: a 32-bit guest cannot address more than 4 GiB)",
                trap_code="UNREACHABLE",
                hint="send a smaller request; the guest's address space is full",
            )
        return GuestOutOfMemory(
            f"{name}: guest ran out of memory: it could not allocate {int(alloc[-1])} bytes ({held} of its "
            f"{limit / 2**20:g} MiB limit)",
            trap_code="UNREACHABLE",
        )

    # -- the infer round trip ---------------------------------------------------------------------------------------

    def _request_buffer(self, size: int) -> int:
        if size <= self._buf_cap:
            return self._buf_ptr
        if self._buf_cap:
            self.call_export("edge_free", self._buf_ptr, self._buf_cap)
            self._buf_ptr = self._buf_cap = 0
        cap = max(size, 4096)
        ptr = self.call_export("edge_alloc", cap) & 0xFFFFFFFF
        if ptr == 0:
            raise GuestOutOfMemory(
                f"{self.loaded.name}: edge_alloc({cap}) returned 0: the guest cannot hold a {size}-byte request",
                hint="send a smaller request or raise memory_limit=",
            )
        if ptr + cap > int(_memory_size(self._ctx, self._mem_addr)):
            self.broken = True
            raise AbiError(f"{self.loaded.name}: edge_alloc returned a buffer outside its memory ({ptr:#x}+{cap})")
        self._buf_ptr, self._buf_cap = ptr, cap
        return ptr

    def infer(self, segments: list[_codec.Segment], decode: Callable[[memoryview], Any]) -> Any:
        total = 0
        for seg in segments:
            total += len(seg) if type(seg) is bytes else seg.nbytes  # type: ignore[union-attr]
        ptr = self._buf_ptr if total <= self._buf_cap else self._request_buffer(total)
        dst = (_memory_data(self._ctx, self._mem_addr) or 0) + ptr
        for seg in segments:
            if isinstance(seg, bytes):
                n = len(seg)
                _memmove(dst, seg, n)
            else:  # a C-contiguous little-endian array (see _codec)
                n = seg.nbytes
                # c_char.from_buffer is 4x cheaper than ndarray.ctypes, but needs a writable array.
                src = _addressof(_c_char.from_buffer(seg)) if seg.flags.writeable else seg.ctypes.data  # type: ignore[arg-type]
                _memmove(dst, src, n)
            dst += n
        args = self._args
        args[0].i32 = ptr
        args[1].i32 = total
        self._raw_call(self._faddr["infer"], 2)
        out_ptr, out_len = _abi.unpack_result(args[0].i64)
        # The call may have grown (and so moved) memory: read base and length again.
        base = _memory_data(self._ctx, self._mem_addr) or 0
        size = int(_memory_size(self._ctx, self._mem_addr))
        if out_len > _abi.MAX_RESPONSE:
            self.broken = True
            raise AbiError(
                f"{self.loaded.name}: infer returned an absurd response length "
                f"({out_len} bytes, limit {_abi.MAX_RESPONSE})",
                hint="the guest must return (out_ptr << 32) | out_len",
            )
        if out_ptr + out_len > size:
            self.broken = True
            raise AbiError(
                f"{self.loaded.name}: infer returned a response range outside its memory "
                f"([{out_ptr:#x}, {out_ptr + out_len:#x}) but memory is {size:#x} bytes)",
                hint="the guest must return (out_ptr << 32) | out_len of a buffer it owns",
            )
        if self._view_at != (base, size):
            self._view = memoryview((_ubytes * size).from_address(base)) if size else memoryview(b"")
            self._view_at = (base, size)
        view = self._view[out_ptr : out_ptr + out_len]
        try:
            return decode(view)
        finally:
            view.release()
            if out_len:
                args[0].i32 = out_ptr
                args[1].i32 = out_len
                self._raw_call(self._faddr["edge_free"], 2)


def raw_bytes(view: memoryview) -> bytes:
    return view.tobytes()
