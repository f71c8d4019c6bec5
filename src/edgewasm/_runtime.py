"""The runtime: what guests share and what must be stopped when they are done with.

A `Runtime` owns the engines (one per engine settings) with their epoch tickers, the in-memory module cache and
the WASI-NN preload graph cache, and knows the guests it loaded. `close()` closes those guests, stops the tickers
and drops the caches; the disk cache is not the runtime's (it is shared by every process of this user).
`edgewasm.load` uses a default runtime, made on first use so that `import edgewasm` stays light.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._cache import DiskCache
from ._engine import Engines, EngineSettings, OptLevel, check_timeout
from ._errors import ModuleLoadError
from ._guest import Guest, _cache_for, _with_model_store
from ._loader import MemoryCache, load_module
from ._sandbox import DEFAULT_MAX_OUTPUT, Mount, Sandbox

if TYPE_CHECKING:
    from .nn import NnLimits
    from .nn._graphcache import GraphCache


class Runtime:
    """Engines, epoch tickers and caches for the guests it loads; `close()` (or `with`) stops what it started.

    Two runtimes share nothing but the disk cache. Closing one closes every guest it loaded: a call made later on
    such a guest is refused with `ModuleLoadError` ("guest is closed"), and so is `load`. A call still running on
    another thread when it closes finishes, but its timeout no longer fires: stop calling first (a server stops
    serving, then closes its runtime).
    """

    def __init__(self) -> None:
        self.engines = Engines()
        #: The modules it loaded (least recently used first, bounded by the descriptor limit).
        self.modules = MemoryCache()
        self._graphs: GraphCache | None = None
        self._guests: weakref.WeakSet[Guest] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def graphs(self) -> GraphCache:
        """The WASI-NN preload graphs its guests share (made on first use: WASI-NN is imported only when needed)."""
        with self._lock:
            if self._graphs is None:
                from .nn._graphcache import GraphCache

                self._graphs = GraphCache()
            return self._graphs

    def load(
        self,
        module: str | os.PathLike[str] | bytes,
        *,
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
        """Load a guest into this runtime: the arguments and the result are those of `edgewasm.load`."""
        if self._closed:
            raise _closed()
        timeout = check_timeout(timeout)
        settings = EngineSettings(opt_level=opt_level, fuel=fuel is not None, epoch=timeout is not None)
        loaded = load_module(
            module,
            settings,
            _cache_for(cache),
            engines=self.engines,
            memory=self.modules,
            allow_precompiled=allow_precompiled,
        )
        sandbox = Sandbox.build(
            timeout=timeout,
            memory_limit=memory_limit,
            fuel=fuel,
            dirs=dirs,
            env=env,
            args=args,
            inherit_stderr=stderr,
            max_output=max_output,
        )
        sandbox = _with_model_store(sandbox, loaded, models)
        return Guest(loaded, sandbox, nn_preload, nn_limits, runtime=self)

    def _adopt(self, guest: Guest) -> None:
        """Remember a guest made with this runtime, to close it with the runtime."""
        with self._lock:
            if self._closed:
                raise _closed()
            self._guests.add(guest)

    def close(self) -> None:
        """Close its guests, stop its epoch tickers, drop its module and graph caches; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            guests = list(self._guests)
            self._guests.clear()
            graphs = self._graphs
        for guest in guests:
            guest._close(" (its edgewasm.Runtime was closed)")
        self.engines.close()
        self.modules.clear()
        if graphs is not None:
            graphs.clear()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._guests)} guests, {len(self.modules)} modules"
        return f"<edgewasm.Runtime {state}>"


def _closed() -> ModuleLoadError:
    return ModuleLoadError("this edgewasm.Runtime is closed", hint="make a new edgewasm.Runtime to load guests")


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The runtime behind `edgewasm.load`, made on first use; it lives as long as the process."""
    global _default
    runtime = _default
    if runtime is None:
        with _default_lock:
            runtime = _default
            if runtime is None:
                runtime = _default = Runtime()
    return runtime
