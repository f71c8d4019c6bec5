"""A model's instance pool: a fixed set of worker threads, each owning one instance of the guest, and a bound queue.

`edgewasm.Guest` gives every thread its own instance, so N workers are N instances and, since wasmtime's calls
through ctypes release the GIL, N cores. A request first takes a place (at most `instances + queue` at once, else
`QueueFull`), then waits for a worker; one that is still waiting when its deadline passes is answered 504 and
never reaches the guest. A guest that traps loses its instance and the worker's next call gets a fresh one.

A worker whose guest ran until its deadline interrupted it (a spin: a whole core for the whole timeout) is lowered
to `DEMOTED_NICE` for good, so that on a machine with few cores such a model's calls take CPU from other models'
requests only when nothing else wants it (Linux schedules threads, so the nice value is the worker thread's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .._errors import GuestTimeout, GuestTrap
from .._guest import Guest
from .errors import DeadlineExceeded, QueueFull
from .inline import MAX_BODY, MIN_REMAINING, InlineLane, Overrun

Job = Callable[[Guest], Any]

#: The nice value of a worker whose guest has run past a deadline (the others keep the server's, usually 0).
DEMOTED_NICE = 10


class _Item:
    __slots__ = ("deadline", "enqueued", "fn", "future", "loop", "seconds", "started")

    def __init__(self, fn: Job, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], deadline: float) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future
        self.deadline = deadline
        self.enqueued = time.monotonic()
        self.started = 0.0
        self.seconds = float("inf")  # how long the call took, once it succeeded


_local = threading.local()  # per worker thread: `demoted`


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the request gave up (its deadline passed, or the client went away)
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _expire(future: asyncio.Future[Any], name: str) -> None:
    if not future.done():
        future.set_exception(
            DeadlineExceeded(
                f"{name}: no answer within the request's deadline",
                hint="raise the model's timeout, or send less work per request",
            )
        )


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: the server is gone, nobody waits for this
        loop.call_soon_threadsafe(fn, *args)


def warm(guest: Guest) -> None:
    """Make this thread's instance now, so the first request does not pay for it (uses `Guest._reactor`)."""
    guest._reactor()


class InstancePool:
    """Worker threads serving one guest. `submit` is called on the event loop; the rest runs on the workers."""

    def __init__(
        self,
        name: str,
        guest: Guest,
        instances: int,
        queue_size: int,
        on_queued: Callable[[float], None] | None = None,
        on_trap: Callable[[], None] | None = None,
        on_busy: Callable[[int], None] | None = None,
        inline: InlineLane | None = None,
    ) -> None:
        self.name = name
        self.guest = guest
        self.instances = instances
        self.capacity = instances + queue_size
        self.pending = 0  # requests holding a place (queued or running); touched only on the event loop
        self.busy = 0  # workers inside a call
        self._busy_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._on_queued = on_queued
        self._on_trap = on_trap
        self._on_busy = on_busy
        self.inline = inline
        self._threads: list[threading.Thread] = []
        self.demoted = 0  # workers lowered to DEMOTED_NICE
        self._started = threading.Barrier(instances + 1)
        self._start_errors: list[BaseException] = []

    # -- life ----------------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers; returns once each has instantiated its guest (or raises the first failure)."""
        for i in range(self.instances):
            t = threading.Thread(target=self._work, name=f"edgewasm-{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._started.wait()
        if self._start_errors:
            self.stop(0)
            raise self._start_errors[0]

    def stop(self, timeout: float | None) -> None:
        """Let the workers finish what is queued, then end them and close the guest."""
        for _ in self._threads:
            self._queue.put(None)
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if end is None else max(0.0, end - time.monotonic()))
        self.guest.close()
        if self.inline is not None:
            self.inline.close()

    def _work(self) -> None:
        try:
            warm(self.guest)
        except BaseException as e:
            self._start_errors.append(e)
        finally:
            self._started.wait()
        if self._start_errors:
            return
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._run(item)

    def _run(self, item: _Item) -> None:
        outcome: tuple[bool, Any] = (False, None)
        try:
            outcome = self._call(item)
        finally:  # one wake-up of the loop: release the place and settle the request
            _post(item.loop, self._finish, item, *outcome)

    def _finish(self, item: _Item, ok: bool, value: Any) -> None:
        future = item.future
        self.pending -= 1
        if ok and self.inline is not None:
            self.inline.observe(item.seconds)
        if ok or value is not None:  # (False, None): the request was abandoned, nobody waits for it
            _settle(future, ok, value)

    def _call(self, item: _Item) -> tuple[bool, Any]:
        item.started = time.monotonic()
        if self._on_queued is not None:
            self._on_queued(item.started - item.enqueued)
        if item.future.done():
            return False, None  # abandoned while queued
        if item.started >= item.deadline:
            return False, DeadlineExceeded(f"{self.name}: the request's deadline passed while it was queued")
        self._count_busy(+1)
        try:
            value = item.fn(self.guest)
            item.seconds = time.monotonic() - item.started
            return True, value
        except BaseException as e:  # handed to the request, which turns it into a status
            if isinstance(e, GuestTrap) and self._on_trap is not None:
                self._on_trap()
            if isinstance(e, GuestTimeout):
                self._demote()
            return False, e
        finally:
            self._count_busy(-1)

    def _demote(self) -> None:
        """Lower this worker thread's CPU priority (once; a thread may not raise it again unprivileged)."""
        if getattr(_local, "demoted", False) or not hasattr(os, "setpriority"):
            return
        _local.demoted = True
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), DEMOTED_NICE))
        except OSError:  # not permitted here: the worker keeps its priority
            return
        with self._busy_lock:
            self.demoted += 1

    def _count_busy(self, delta: int) -> None:
        with self._busy_lock:
            self.busy += delta
            busy = self.busy
        if self._on_busy is not None:
            self._on_busy(busy)

    # -- requests ------------------------------------------------------------------------------------------------------

    async def submit(self, fn: Job, deadline: float, size: int = 0) -> Any:
        """Run `fn(guest)` on a worker, by `deadline` (time.monotonic()); QueueFull or DeadlineExceeded otherwise.

        `size` is the request body's: a small request to a model whose lane is open, with nothing of the model queued
        or running (so it jumps no queue), runs inline on this thread instead (`inline.py` says why that is safe).
        """
        lane = self.inline
        if (
            lane is not None
            and lane.open
            and self.pending == 0
            and size <= MAX_BODY
            and deadline - time.monotonic() >= MIN_REMAINING
        ):
            try:  # (it waited 0 s: nothing for the queue-time counter)
                return lane.run(fn)
            except Overrun:
                pass  # the lane is off now; the request goes to a worker with the model's full timeout
            except GuestTrap:
                if self._on_trap is not None:
                    self._on_trap()
                raise
        if self.pending >= self.capacity:
            raise QueueFull(
                f"{self.name}: all {self.instances} instances are busy and {self.capacity - self.instances} "
                "requests are waiting",
                hint="retry after the Retry-After seconds, or raise the model's instances/queue",
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending += 1  # released by the worker when the item is done, so a call past its deadline holds it
        self._queue.put(_Item(fn, loop, future, deadline))
        # A timer, not asyncio.wait_for (a task and a shield per request): it fails the future at the deadline; the
        # worker then skips the item if it has not started, or its late answer is dropped.
        timer = None
        if deadline != float("inf"):
            delay = max(deadline - time.monotonic(), 0.0)
            timer = loop.call_later(delay, _expire, future, self.name)
        try:
            return await future
        finally:
            if timer is not None:
                timer.cancel()
