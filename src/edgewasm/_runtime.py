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
from typing import TYPE_CHECKING, Any

from ._engine import Engines
from ._errors import ModuleLoadError
from ._guest import Guest, _with_model_store, chosen_options
from ._loader import MemoryCache, load_module
from ._options import GuestOptions
from ._sandbox import Sandbox

if TYPE_CHECKING:
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
        """Whether `close()` has run: a closed runtime refuses to load."""
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
        self, module: str | os.PathLike[str] | bytes, *, options: GuestOptions | None = None, **keywords: Any
    ) -> Guest:
        """Load a guest into this runtime: the arguments (`options=` or `edgewasm.load`'s keywords) and the
        result are those of `edgewasm.load`."""
        if self._closed:
            raise _closed()
        options = chosen_options(options, GuestOptions(**keywords))
        loaded = load_module(
            module,
            options.engine_settings(),
            options.disk_cache(),
            engines=self.engines,
            memory=self.modules,
            allow_precompiled=options.allow_precompiled,
        )
        sandbox = _with_model_store(Sandbox.of(options), loaded, options.models)
        return Guest(loaded, sandbox, options.nn_preload, options.nn_limits, runtime=self)

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
