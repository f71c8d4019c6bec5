"""The public Guest: a loaded module plus its sandbox, serving calls from any thread.

Each thread gets its own Store and instance (wasmtime stores are not thread-safe); instances are made from one
pre-linked `InstancePre`, which with the pooling allocator costs microseconds. An instance that trapped is thrown
away and the next call gets a fresh one.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import wasmtime

from . import _abi, _codec
from ._cache import DiskCache
from ._command import CommandResult, run_command
from ._engine import OptLevel
from ._errors import AbiError, ModuleLoadError, RequestError, SandboxError
from ._instance import Instance, raw_bytes
from ._loader import Loaded, wasi_instance_pre
from ._options import DEFAULT_MAX_OUTPUT, GuestOptions, Mount
from ._paths import models_dir
from ._sandbox import Sandbox

if TYPE_CHECKING:
    from ._runtime import Runtime
    from .nn import NnLimits, WasiNN

#: Where a guest that asks for the model store (custom section `edgewasm.needs`: `models`) finds it.
MODELS_GUEST_PATH = "/models"


class Guest:
    """A WebAssembly guest ready to serve `infer` calls (reactors) or `run` (WASI commands)."""

    def __init__(
        self,
        loaded: Loaded,
        sandbox: Sandbox,
        nn_preload: Sequence[Any] = (),
        nn_limits: NnLimits | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        if runtime is None:
            from ._runtime import default_runtime

            runtime = default_runtime()
        self._loaded = loaded
        self.sandbox = sandbox
        #: The runtime whose caches it uses and whose close() closes it (kept alive as long as the guest is).
        self.runtime = runtime
        self.nn: WasiNN | None = None  # the guest's WASI-NN host, when it imports wasi_ephemeral_nn
        try:
            if loaded.verdict.imports_wasi_nn or nn_preload:
                self._pre = self._link_with_nn(nn_preload, nn_limits)
            else:
                self._pre = wasi_instance_pre(loaded, runtime.modules)
        except wasmtime.WasmtimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ModuleLoadError(
                f"{loaded.name}: cannot link: {first}",
                hint="the module imports something this host does not provide "
                "(WASI preview 1 and wasi_ephemeral_nn are provided)",
            ) from None
        self._local = threading.local()
        self._lock = threading.Lock()
        # Weak: an instance lives as long as its thread's reference; close() breaks the ones still alive.
        self._instances: weakref.WeakSet[Instance] = weakref.WeakSet()
        self._closed = False
        self._closed_by = ""
        runtime._adopt(self)
        if self.kind == "reactor":
            self._instance()  # fail at load, not at the first call, and be ready for it

    def _link_with_nn(self, nn_preload: Sequence[Any], nn_limits: NnLimits | None) -> wasmtime.InstancePre:
        from .nn import WasiNN  # imported only for guests that use WASI-NN

        try:
            self.nn = WasiNN(list(nn_preload), limits=nn_limits, graphs=self.runtime.graphs)
        except ValueError as e:
            raise SandboxError(f"bad WASI-NN preload: {e}", hint="see docs/wasi-nn.md for the syntax") from None
        linker = wasmtime.Linker(self._loaded.engine)
        linker.define_wasi()
        self.nn.define(linker)
        return linker.instantiate_pre(self._loaded.module)

    # -- facts -------------------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The module's path as given (or "<bytes>"), as errors name it."""
        return self._loaded.name

    @property
    def kind(self) -> str:
        """ "reactor" (serves `infer`) or "command" (a WASI program with `_start`, served by `run`)."""
        return self._loaded.verdict.kind

    @property
    def origin(self) -> str:
        """Where the machine code came from: "memory", "disk", "compiled" or "artifact"."""
        return self._loaded.origin

    @property
    def module(self) -> wasmtime.Module:
        """The compiled wasmtime Module (for inspecting imports and exports)."""
        return self._loaded.module

    # -- instances ---------------------------------------------------------------------------------------------------

    def _new_instance(self) -> Instance:
        inst = Instance(self._loaded, self._pre, self.sandbox)
        if self.nn is not None:
            self.nn.bind(inst.store)  # its graphs and contexts go when the instance does
        try:
            if inst.exports("_initialize"):
                inst.call_export("_initialize")
            if inst.exports("edge_abi_version"):
                version = inst.call_export("edge_abi_version") & 0xFFFFFFFF
                if version != _abi.ABI_VERSION:
                    raise AbiError(
                        f"{self.name}: unknown ABI version {version} (this host speaks version {_abi.ABI_VERSION})",
                        hint=f"rebuild the guest against ABI v{_abi.ABI_VERSION} or upgrade edgewasm",
                    )
        except BaseException:
            inst.discard()
            raise
        with self._lock:
            self._instances.add(inst)
        return inst

    def _instance(self) -> Instance:
        inst: Instance | None = getattr(self._local, "inst", None)
        if inst is None or inst.broken:
            if self._closed:
                raise self._closed_error()
            inst = None  # release the broken one (and its pool slot) before making another
            inst = self._new_instance()
            self._local.inst = inst
        return inst

    def _reactor(self) -> Instance:
        inst: Instance | None = getattr(self._local, "inst", None)
        if inst is not None and not inst.broken:
            return inst  # the hot path: this thread's live instance
        if self.kind != "reactor":
            raise AbiError(f"{self.name} is a WASI command (_start), not an infer guest", hint="use run() instead")
        return self._instance()

    # -- calls -------------------------------------------------------------------------------------------------------

    def infer(self, request: Any) -> Any:
        """Send a msgpack-able request (numpy arrays allowed) and return the decoded response."""
        segments = _codec.encode(request)
        return self._reactor().infer(segments, _abi.decode_reply)

    def infer_bytes(self, request: bytes) -> bytes:
        """The raw round trip: request bytes in, response bytes out, no msgpack on the host."""
        return bytes(self._reactor().infer([bytes(request)], raw_bytes))

    def run(
        self, stdin: bytes | None = b"", args: Sequence[str] | None = None, *, stream: bool = False
    ) -> CommandResult:
        """Run a WASI command guest once: `stdin` in, stdout/stderr and exit code out.

        Output is captured, at most `max_output` bytes per stream (else `GuestOutputLimit`); on a trap what was
        captured is on the exception (`.stdout`, `.stderr`). `stream=True` writes it to this process's stdout and
        stderr as the guest runs instead, as the wasmtime CLI does; `stdin=None` gives the guest this process's.
        """
        if self.kind != "command":
            raise AbiError(f"{self.name} is an infer guest, not a WASI command", hint="use infer() instead")
        if stdin is not None and not isinstance(stdin, (bytes, bytearray, memoryview)):
            raise RequestError(f"stdin must be bytes, not {type(stdin).__name__}", hint="encode it first")
        if self._closed:
            raise self._closed_error()
        sandbox = self.sandbox if args is None else dataclasses.replace(self.sandbox, args=tuple(args))
        data = None if stdin is None else bytes(stdin)
        return run_command(self._loaded, self._pre, sandbox, data, self.nn, stream=stream)

    def close(self) -> None:
        """Drop every instance (their memory returns to the pool) and the WASI-NN graphs, contexts and tensors the
        host holds for them; later calls are refused."""
        self._close("")

    def _close(self, by: str) -> None:
        with self._lock:
            if not self._closed:
                self._closed_by = by
            self._closed = True
            for inst in list(self._instances):
                inst.discard()
            self._instances.clear()
        self._local = threading.local()
        if self.nn is not None:
            self.nn.close()

    def _closed_error(self) -> ModuleLoadError:
        hint = "load it again (through an open Runtime)"
        return ModuleLoadError(f"{self.name}: guest is closed{self._closed_by}", hint=hint)

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<edgewasm.Guest {self.name!r} kind={self.kind} origin={self.origin}>"


def load(
    module: str | os.PathLike[str] | bytes,
    *,
    options: GuestOptions | None = None,
    timeout: float | None = None,
    memory_limit: int | str | None = None,
    fuel: int | None = None,
    dirs: Mapping[str, str | os.PathLike[str]] | Sequence[Mount | str] | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    models: bool | str | os.PathLike[str] | None = None,
    nn_preload: Sequence[Any] = (),
    nn_limits: NnLimits | None = None,
    cache: bool | str | os.PathLike[str] | DiskCache = True,
    opt_level: OptLevel = "speed",
    stderr: bool = False,
    allow_precompiled: bool = False,
    max_output: int | str = DEFAULT_MAX_OUTPUT,
) -> Guest:
    """Load a guest (.wasm, .wat or .cwasm), compiling it ahead of time through the artifact cache.

    timeout: wall-clock seconds per call. memory_limit: bytes, or "256MiB". fuel: instructions per call.
    dirs: `{guest_path: host_path}` preopened read-only, or `Mount`/"HOST::GUEST[:rw]" items.
    models: the model store for guests that ask for it (None: the default store; False: never mount).
    nn_preload: WASI-NN models the host loads for `load_by_name` ("NAME:ENCODING:TARGET:PATH[:PATH]").
    allow_precompiled: run a `.cwasm`, native code the sandbox cannot check (see docs/cache.md); refused without.
    stderr: pass what the guest writes to stderr through to this process's. max_output: bytes of a command's
    stdout, and of its stderr, that `run()` keeps in memory (16 MiB by default; "256MiB" raises it).
    nn_limits: what the guest's WASI-NN calls may make the host hold (`edgewasm.nn.NnLimits`; safe defaults).
    options: all of these at once, as an `edgewasm.GuestOptions` (then give none of the keywords).

    It loads through the default runtime, made on first use and kept for the life of the process; a test or a
    server that wants engines, epoch tickers and caches of its own, stopped when it is done, makes an
    `edgewasm.Runtime` and calls its `load`.
    """
    from ._runtime import default_runtime

    given = GuestOptions(
        timeout=timeout,
        memory_limit=memory_limit,
        fuel=fuel,
        dirs=dirs,
        env=env,
        args=args,
        models=models,
        nn_preload=nn_preload,
        nn_limits=nn_limits,
        cache=cache,
        opt_level=opt_level,
        stderr=stderr,
        allow_precompiled=allow_precompiled,
        max_output=max_output,
    )
    return default_runtime().load(module, options=chosen_options(options, given))


def chosen_options(options: GuestOptions | None, given: GuestOptions) -> GuestOptions:
    """`options=` or the keywords, never both (a keyword beside options= would be silently ignored)."""
    if options is None:
        return given
    if given != _NO_KEYWORDS:
        raise SandboxError("load() got both options= and keywords", hint="put every setting in the GuestOptions")
    return options


_NO_KEYWORDS = GuestOptions()


def _with_model_store(sandbox: Sandbox, loaded: Loaded, models: bool | Path | None) -> Sandbox:
    """Mount the model store read-only at /models when the guest asks for it and the user has not said no."""
    if models is False or "models" not in loaded.needs:
        return sandbox
    if any(m.guest == MODELS_GUEST_PATH for m in sandbox.mounts):
        return sandbox
    store = models if isinstance(models, Path) else models_dir()
    if not store.is_dir():
        if models not in (None, True):
            raise ModuleLoadError(f"model store {store} is not a directory", hint="run `edgewasm models install`")
        return sandbox  # the guest reports model_unavailable with its own hint
    return dataclasses.replace(sandbox, mounts=(*sandbox.mounts, Mount(store, MODELS_GUEST_PATH).checked()))
