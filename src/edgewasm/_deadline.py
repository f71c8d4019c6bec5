"""The wall-clock deadline of the guest call running on this thread, for host code that runs outside wasm.

The epoch interrupt stops wasm code only: a host function (a WASI-NN `compute`) runs outside it for as long as it
likes. `Instance` sets the deadline around each call of a sandbox that has a timeout, in guests that import WASI-NN
(the only host functions that read it); they cancel their work (`remaining`) and, once it has passed, return a trap
and `stop` the call, which `Instance` then reports as `GuestTimeout`. Other calls set nothing and pay nothing.
"""

from __future__ import annotations

import threading
import time

_local = threading.local()


class Stopped(BaseException):
    """Raised by a host function registered through wasmtime-py's `define_func` to trap (its only way to), after
    `stop`. A BaseException, so that no `except Exception` on the way turns it into an errno."""


class _Call:
    __slots__ = ("at", "stopped_in")

    def __init__(self, at: float) -> None:
        self.at = at
        self.stopped_in: str | None = None


def enter(seconds: float) -> object:
    """Start a call that must end within `seconds`; returns what `leave` restores (the enclosing call, if any)."""
    outer = getattr(_local, "call", None)
    _local.call = _Call(time.monotonic() + seconds)
    return outer


def leave(outer: object) -> str | None:
    """End the current call; the host function that stopped it for its deadline, or None."""
    call: _Call | None = getattr(_local, "call", None)
    _local.call = outer
    return call.stopped_in if call is not None else None


def remaining() -> float | None:
    """Seconds left before the current call's deadline (<= 0 once passed); None when it has none."""
    call: _Call | None = getattr(_local, "call", None)
    return None if call is None else call.at - time.monotonic()


def deadline() -> float | None:
    """The current call's deadline on `time.monotonic()`'s clock, or None."""
    call: _Call | None = getattr(_local, "call", None)
    return None if call is None else call.at


def expired() -> bool:
    call: _Call | None = getattr(_local, "call", None)
    return call is not None and time.monotonic() >= call.at


def stop(where: str) -> None:
    """Record that the host function `where` stopped the current call for its deadline (it then returns a trap)."""
    call: _Call | None = getattr(_local, "call", None)
    if call is not None and call.stopped_in is None:
        call.stopped_in = where
