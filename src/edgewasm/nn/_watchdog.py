"""Cancelling a backend's run at the guest call's deadline: one thread that calls a function at a given time.

Only calls that have a deadline (`edgewasm._deadline`) schedule anything; one shared thread serves them all, so a
timed `compute` costs a heap push and a notify, not a thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator

from .. import _deadline

log = logging.getLogger("edgewasm.nn")


@dataclasses.dataclass(order=True)
class _Entry:
    when: float
    seq: int
    fn: Callable[[], None] | None = dataclasses.field(compare=False)  # None once cancelled or fired


class _Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._live = 0
        self._thread: threading.Thread | None = None

    def schedule(self, when: float, fn: Callable[[], None]) -> Callable[[], None]:
        """Call `fn` once `time.monotonic() >= when` (on the watchdog thread); returns the function that cancels it."""
        entry = _Entry(when, next(self._seq), fn)
        with self._cond:
            heapq.heappush(self._heap, entry)
            self._live += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="edgewasm-nn-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0] is entry:
                self._cond.notify()

        def cancel() -> None:
            with self._cond:
                if entry.fn is not None:
                    entry.fn = None
                    self._live -= 1
                    if len(self._heap) > 2 * self._live + 64:  # cancelled entries far in the future pile up
                        self._heap = [e for e in self._heap if e.fn is not None]
                        heapq.heapify(self._heap)

        return cancel

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                entry = self._heap[0]
                fn = entry.fn
                if fn is None:
                    heapq.heappop(self._heap)
                    continue
                delay = entry.when - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                entry.fn = None  # fired: a later cancel() is a no-op
                self._live -= 1
            try:
                fn()
            except Exception:  # a cancel hook that fails must not stop the watchdog
                log.exception("wasi-nn: cancelling a backend run failed")


_watchdog = _Watchdog()


@contextlib.contextmanager
def at_deadline(cancel: Callable[[], None]) -> Iterator[bool]:
    """Run `cancel` (on another thread) if the current guest call's deadline passes inside the block.

    Yields whether the call has a deadline, so a backend can choose its cancellable path only when it matters.
    """
    when = _deadline.deadline()
    if when is None:
        yield False
        return
    unschedule = _watchdog.schedule(when, cancel)
    try:
        yield True
    finally:
        unschedule()
