"""Epoch tickers: what advances an engine's epoch, so that a guest past its deadline is interrupted.

A ticker that needs the GIL stops while another thread holds it (a C extension that does not release it, a long
computation in one bytecode): a 0.2 s timeout then lasts as long as the GIL is held. On Linux the ticker is a POSIX
timer (`timer_create`, SIGEV_THREAD) whose notify function is wasmtime's own C function
`wasmtime_engine_increment_epoch(wasm_engine_t *)`, with the engine pointer as its sigval: the C library runs it on
a thread of its own (glibc: a new short-lived thread per expiry, every signal blocked; musl: one thread per timer),
with no Python and no GIL. Elsewhere, if the timer cannot be made, in a forked child (see `_forked`), or on
wasmtime-py's public-API fallback (`_wasmtime.GIL_FREE_TICKER`), a Python thread does the same.

The engine's lifetime: the timer holds its own reference to the engine (`wasmtime_engine_clone`), so the Python
`Engine` may go whenever Python likes. `timer_delete` stops new expiries, but a notify thread that glibc started
just before may still be about to run; the reference is released only a grace period later, and never at exit (the
process is ending: the operating system takes it back).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Any, Protocol

import wasmtime

from . import _wasmtime

#: How long after `timer_delete` the engine reference is released: far longer than a notify thread takes to run.
GRACE_SECONDS = 1.0

_CLOCK_MONOTONIC = 1
_SIGEV_THREAD = 2


class Ticker(Protocol):
    kind: str

    def stop(self) -> None:
        """Stop ticking; idempotent. A guest of this engine that is still running loses its timeout."""


class ThreadTicker:
    """The portable ticker: a Python thread. It ticks only when it gets the GIL."""

    kind = "thread"

    def __init__(self, engine: wasmtime.Engine, period: float) -> None:
        self._stopping = threading.Event()

        def tick() -> None:
            while not self._stopping.wait(period):
                engine.increment_epoch()

        self._thread = threading.Thread(target=tick, name="edgewasm-epoch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()


class _SigEvent(ctypes.Structure):
    """`struct sigevent` of Linux (glibc and musl): 64 bytes, the SIGEV_THREAD fields at the front of the union."""

    _fields_ = (
        ("sigev_value", ctypes.c_void_p),
        ("sigev_signo", ctypes.c_int),
        ("sigev_notify", ctypes.c_int),
        ("sigev_notify_function", ctypes.c_void_p),
        ("sigev_notify_attributes", ctypes.c_void_p),
        ("_pad", ctypes.c_byte * 32),
    )


class _TimeSpec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _ITimerSpec(ctypes.Structure):
    _fields_ = (("it_interval", _TimeSpec), ("it_value", _TimeSpec))


class _Rt:
    """The POSIX timer functions: in libc since glibc 2.34, in librt before."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(None, use_errno=True)
        if not hasattr(lib, "timer_create"):
            lib = ctypes.CDLL(ctypes.util.find_library("rt") or "librt.so.1", use_errno=True)
        self.create = lib.timer_create
        self.create.argtypes = (ctypes.c_int, ctypes.POINTER(_SigEvent), ctypes.POINTER(ctypes.c_void_p))
        self.create.restype = ctypes.c_int
        self.settime = lib.timer_settime
        self.settime.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_ITimerSpec), ctypes.c_void_p)
        self.settime.restype = ctypes.c_int
        self.delete = lib.timer_delete
        self.delete.argtypes = (ctypes.c_void_p,)
        self.delete.restype = ctypes.c_int
        self.increment_epoch = _wasmtime.INCREMENT_EPOCH


_rt: _Rt | None = None
_exiting = False
#: In a child of fork(): glibc's timer_create may deadlock there (its list lock can be inherited held by the
#: helper thread, which takes it at every expiry), so a forked process never makes a POSIX timer.
_forked = False


def _oserror(what: str) -> OSError:
    errno = ctypes.get_errno()
    return OSError(errno, f"{what}: {os.strerror(errno)}")


class PosixTimerTicker:
    """wasmtime's epoch increment, run by the C library on a timer: ticks whatever Python is doing."""

    kind = "posix-timer"

    def __init__(self, engine: wasmtime.Engine, period: float) -> None:
        global _rt
        if _rt is None:
            _rt = _Rt()
        self._timer: int | None = None
        self._engine_ref: Any = _wasmtime.engine_clone(engine)
        event = _SigEvent()
        event.sigev_notify = _SIGEV_THREAD
        event.sigev_value = ctypes.cast(self._engine_ref, ctypes.c_void_p).value
        event.sigev_notify_function = _rt.increment_epoch
        timer = ctypes.c_void_p()
        if _rt.create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
            error = _oserror("timer_create")
            _wasmtime.engine_delete(self._engine_ref)
            raise error
        self._timer = timer.value or 0
        seconds, fraction = divmod(period, 1.0)
        step = _TimeSpec(int(seconds), int(fraction * 1e9))
        if _rt.settime(self._timer, 0, ctypes.byref(_ITimerSpec(step, step)), None) != 0:
            error = _oserror("timer_settime")
            self.stop()
            raise error

    def stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is None or _rt is None:
            return
        _rt.delete(timer)
        ref, self._engine_ref = self._engine_ref, None
        if ref is not None and not _exiting:
            release = threading.Timer(GRACE_SECONDS, _wasmtime.engine_delete, (ref,))
            release.daemon = True
            release.start()

    def abandon(self) -> None:
        """In a forked child: the timer was not inherited and its id may be reused; forget it, free nothing."""
        self._timer = None
        self._engine_ref = None


def start(engine: wasmtime.Engine, period: float, *, prefer_thread: bool = False) -> Ticker:
    """The best ticker this platform offers for `engine`."""
    if sys.platform.startswith("linux") and _wasmtime.GIL_FREE_TICKER and not prefer_thread and not _forked:
        with contextlib.suppress(OSError, AttributeError):
            return PosixTimerTicker(engine, period)
    return ThreadTicker(engine, period)


def forked() -> None:
    """Called in a forked child before any ticker starts there (see `_forked`)."""
    global _forked
    _forked = True


def shutdown() -> None:
    """The process is exiting: tickers stopped from now on keep their engine reference (see the module doc)."""
    global _exiting
    _exiting = True
