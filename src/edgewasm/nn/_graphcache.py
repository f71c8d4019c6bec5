"""Preloaded graphs, loaded once per runtime on first use and shared by its every `WasiNN` and thread.

Keyed by encoding, target, backend options and each file's (path, size, mtime), so a changed file reloads.
A failure is remembered too (per key), so a guest retrying a broken preload does not reload it each call.
The cache is bounded (least recently used out first, by entries and by the model files' bytes), so a long-lived
host that swaps models does not keep every session it ever made; a store that holds an evicted graph keeps it
until it lets go. Each `edgewasm.Runtime` owns one (`Runtime.graphs`); a `WasiNN` made by hand uses the default
runtime's.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from ._enums import GraphEncoding, NnErrno, NnError
from ._preload import Preload
from .backends import Backend, BackendOptions, Graph

log = logging.getLogger("edgewasm.nn")

#: At most this many preloads (loaded or failed) are cached...
MAX_ENTRIES = 16
#: ...and the cached graphs' model files total at most this many bytes (the newest one is always kept).
MAX_BYTES = 4 << 30

_Key = tuple[object, ...]


class _Slot:
    def __init__(self, nbytes: int) -> None:
        self.lock = threading.Lock()
        self.graph: Graph | None = None
        self.error: NnError | None = None
        self.nbytes = nbytes


def _key(preload: Preload, options: BackendOptions) -> tuple[_Key, int]:
    stats: list[object] = []
    total = 0
    for p in preload.paths:
        try:
            st = p.stat()
            stats.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
            total += st.st_size
        except OSError:
            stats.append((str(p), None, None))
    return (preload.encoding, preload.target, options, *stats), total


class GraphCache:
    """The preload graphs of one runtime, bounded by entries and by model bytes (least recently used out first)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._lock = threading.Lock()
        self._slots: OrderedDict[_Key, _Slot] = OrderedDict()
        self._limits = (max(1, max_entries), max(0, max_bytes))

    def configure(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        """Set the cache's bounds (a host that preloads many or large models); evicts at once if needed."""
        with self._lock:
            self._limits = (max(1, max_entries), max(0, max_bytes))
            self._evict()

    def _evict(self) -> None:
        """Drop least recently used slots beyond the bounds; the newest always stays. Caller holds _lock."""
        max_entries, max_bytes = self._limits
        slots = self._slots
        while len(slots) > 1 and (len(slots) > max_entries or sum(s.nbytes for s in slots.values()) > max_bytes):
            key, _ = slots.popitem(last=False)
            log.debug("wasi-nn: preload cache dropped %s", key[3:])

    def get_or_load(
        self, preload: Preload, backend_for: Callable[[GraphEncoding], Backend], options: BackendOptions
    ) -> Graph:
        """The graph of a preload, loading it (once) if needed; NnError for a missing backend or a bad model."""
        backend = backend_for(preload.encoding)  # invalid_encoding, not cached: installing the extra fixes it
        key, nbytes = _key(preload, options)
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(nbytes)
                self._evict()
            else:
                self._slots.move_to_end(key)
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

    def cached(self) -> int:
        """How many preloads are cached (loaded or failed)."""
        with self._lock:
            return len(self._slots)

    def clear(self) -> None:
        """Forget every cached preload graph (the runtime closes; a long-lived host that swaps models)."""
        with self._lock:
            self._slots.clear()
