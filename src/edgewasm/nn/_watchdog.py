"""Cancelling a backend's run at the guest call's deadline: one thread that calls a function at a given time.

Only calls that have a deadline (`edgewasm._deadline`) schedule anything; one shared thread serves them all, so a
timed `compute` costs a heap push under a lock, not a thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _deadline

log = logging.getLogger("edgewasm.nn")


class _Watchdog:
    """A heap of [when, seq, fn] entries (lists: cheaper than ordered dataclasses; fn is None once cancelled or
    fired) and the thread that fires them.

    The thread sleeps until the earliest entry, cancelled or not, and `schedule` wakes it only for an entry due
    before that: a guest computing again and again with the same timeout schedules later and later entries, so
    the common call costs a heap push and a lock, not a thread switch.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._live = 0
        self._wake_at = math.inf  # when the thread next looks at the heap by itself
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, fn: Callable[[], None]) -> Callable[[], None]:
        """Call `fn` once `time.monotonic() >= when` (on the watchdog thread); returns the function that cancels it."""
        entry: list[Any] = [when, next(self._seq), fn]
        with self._cond:
            heapq.heappush(self._heap, entry)
            self._live += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="edgewasm-nn-watchdog", daemon=True)
                self._thread.start()
            if when < self._wake_at:
                self._wake_at = when  # the thread re-reads it when it wakes
                self._cond.notify()

        def cancel() -> None:
            with self._cond:
                if entry[2] is not None:
                    entry[2] = None
                    self._live -= 1
                    if len(self._heap) > 2 * self._live + 64:  # cancelled entries far in the future pile up
                        self._heap = [e for e in self._heap if e[2] is not None]
                        heapq.heapify(self._heap)

        return cancel

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._heap:
                    self._wake_at = math.inf
                    self._cond.wait()
                    continue
                entry = self._heap[0]
                fn = entry[2]
                if fn is None:
                    heapq.heappop(self._heap)
                    continue
                delay = entry[0] - time.monotonic()
                if delay > 0:
                    self._wake_at = entry[0]
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                entry[2] = None  # fired: a later cancel() is a no-op
                self._live -= 1
            try:
                fn()
            except Exception:  # a cancel hook that fails must not stop the watchdog
                log.exception("wasi-nn: cancelling a backend run failed")


_watchdog = _Watchdog()


class _Armed:
    """`at_deadline`'s context manager (a class: a generator-based one costs a few microseconds a call)."""

    __slots__ = ("_cancel", "_unschedule")

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel = cancel
        self._unschedule: Callable[[], None] | None = None

    def __enter__(self) -> bool:
        when = _deadline.deadline()
        if when is None:
            return False
        self._unschedule = _watchdog.schedule(when, self._cancel)
        return True

    def __exit__(self, *exc: object) -> None:
        if self._unschedule is not None:
            self._unschedule()
            self._unschedule = None


def at_deadline(cancel: Callable[[], None]) -> _Armed:
    """Run `cancel` (on another thread) if the current guest call's deadline passes inside the `with` block.

    The block gets whether the call has a deadline, so a backend can choose its cancellable path only when it
    matters.
    """
    return _Armed(cancel)
