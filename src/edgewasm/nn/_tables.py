"""Thread-safe handle tables: u32 handles for graphs and execution contexts, one set per `WasiNN`."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from ._enums import NnErrno, NnError

T = TypeVar("T")


class HandleTable(Generic[T]):
    """Maps u32 handles to objects; handles start at 0 (as wasmtime and WasmEdge do) and are not reused."""

    def __init__(self, kind: str, limit: int, hint: str = "release some first") -> None:
        self._kind = kind
        self._limit = limit
        self._hint = hint
        self._items: dict[int, T] = {}
        self._next = 0
        self._lock = threading.Lock()

    def insert(self, item: T) -> int:
        with self._lock:
            if len(self._items) >= self._limit:
                raise NnError(
                    NnErrno.RUNTIME_ERROR,
                    f"too many live {self._kind} handles ({self._limit}); {self._hint}",
                )
            handle = self._next
            while handle in self._items:  # only after 2**32 handles: skip the ones still live
                handle = (handle + 1) & 0xFFFFFFFF
            self._next = (handle + 1) & 0xFFFFFFFF
            self._items[handle] = item
            return handle

    def get(self, handle: int) -> T:
        with self._lock:
            item = self._items.get(handle & 0xFFFFFFFF)
        if item is None:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"unknown {self._kind} handle {handle & 0xFFFFFFFF}")
        return item

    def remove(self, handle: int) -> T:
        with self._lock:
            item = self._items.pop(handle & 0xFFFFFFFF, None)
        if item is None:
            raise NnError(NnErrno.INVALID_ARGUMENT, f"unknown {self._kind} handle {handle & 0xFFFFFFFF}")
        return item

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
