"""Log lines a guest can cause, at most one per kind per interval, so that a guest cannot flood the host's log."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class RateLimitedLog:
    """`log(level, kind, msg, ...)` emits the first line of each kind, then at most one per `interval` seconds,
    saying how many were left out in between."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, max_kinds: int = 256) -> None:
        self._logger = logger
        self._interval = interval
        self._max_kinds = max_kinds
        self._seen: dict[str, list[float]] = {}  # kind -> [last logged at, left out since]
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget what was logged (tests)."""
        with self._lock:
            self._seen.clear()

    def log(self, level: int, kind: str, msg: str, *args: Any, exc_info: bool = False) -> None:
        if not self._logger.isEnabledFor(level):
            return
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(kind)
            if seen is not None and now - seen[0] < self._interval:
                seen[1] += 1
                return
            left_out = int(seen[1]) if seen is not None else 0
            if seen is None and len(self._seen) >= self._max_kinds:
                self._seen.clear()  # kinds come from code, so this is a bound that is never reached in practice
            self._seen[kind] = [now, 0]
        if left_out:
            msg += f" ({left_out} more like it in the last {self._interval:g} s not logged)"
        self._logger.log(level, msg, *args, exc_info=exc_info)
