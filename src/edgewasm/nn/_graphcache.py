"""Preloaded graphs, loaded once per process on first use and shared by every `WasiNN` and thread.

Keyed by encoding, target, backend options and each file's (path, size, mtime), so a changed file reloads.
A failure is remembered too (per key), so a guest retrying a broken preload does not reload it each call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ._enums import GraphEncoding
from ._errno import NnErrno, NnError
from ._preload import Preload
from .backends import Backend, BackendOptions, Graph

log = logging.getLogger("edgewasm.nn")

_Key = tuple[object, ...]
_lock = threading.Lock()
_slots: dict[_Key, _Slot] = {}


class _Slot:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.graph: Graph | None = None
        self.error: NnError | None = None


def _key(preload: Preload, options: BackendOptions) -> _Key:
    stats: list[object] = []
    for p in preload.paths:
        try:
            st = p.stat()
            stats.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append((str(p), None, None))
    return (preload.encoding, preload.target, options, *stats)


def get_or_load(preload: Preload, backend_for: Callable[[GraphEncoding], Backend], options: BackendOptions) -> Graph:
    """The graph of a preload, loading it (once) if needed; NnError for a missing backend or a bad model."""
    backend = backend_for(preload.encoding)  # invalid_encoding, not cached: installing the extra fixes it
    key = _key(preload, options)
    with _lock:
        slot = _slots.setdefault(key, _Slot())
    with slot.lock:
        if slot.graph is not None:
            return slot.graph
        if slot.error is not None:
            raise slot.error
        missing = [p for p in preload.paths if not p.is_file()]
        if missing:
            slot.error = NnError(NnErrno.NOT_FOUND, f"preload {preload.name}: {missing[0]} is gone")
        else:
            try:
                slot.graph = backend.load_files(preload.paths, preload.target)
                log.info("wasi-nn: loaded preload %s", preload)
                return slot.graph
            except NnError as exc:
                slot.error = exc
        log.warning("wasi-nn: preload %s failed: %s", preload.name, slot.error)
        raise slot.error


def clear() -> None:
    """Forget every cached preload graph (tests, long-lived hosts that swap models)."""
    with _lock:
        _slots.clear()
