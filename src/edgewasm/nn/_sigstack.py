"""Keeping a thread's alternate signal stack across a native call that replaces it.

wasmtime turns a guest's trap into an error with signal handlers that run on the thread's alternate signal stack,
which it installs the first time the thread runs wasm. OpenVINO's CPU plugin installs a small one of its own on the
thread that creates a plugin engine and puts back what it saved when the engine goes; with two engines released in
the order they were made, the thread is left pointing at freed memory, and the next trap in any guest on that thread
kills the process. So every OpenVINO call is made inside `kept()`, which puts the thread's stack back as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator


class _Stack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc_sigaltstack() -> object | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sigaltstack
    except (OSError, AttributeError):  # no sigaltstack here (Windows): nothing to keep
        return None
    fn.argtypes = [ctypes.POINTER(_Stack), ctypes.POINTER(_Stack)]
    fn.restype = ctypes.c_int
    return fn


_sigaltstack = _libc_sigaltstack()


def current() -> tuple[int, int, int] | None:
    """This thread's alternate signal stack as (address, size, flags); None where there is no such thing."""
    if _sigaltstack is None:
        return None
    now = _Stack()
    if _sigaltstack(None, ctypes.byref(now)) != 0:  # type: ignore[operator]
        return None
    return (now.ss_sp or 0, now.ss_size, now.ss_flags)


@contextlib.contextmanager
def kept() -> Iterator[None]:
    """Run the block, then give this thread back the alternate signal stack it had before (if it changed)."""
    if _sigaltstack is None:
        yield
        return
    before = _Stack()
    _sigaltstack(None, ctypes.byref(before))  # type: ignore[operator]
    try:
        yield
    finally:
        after = _Stack()
        _sigaltstack(None, ctypes.byref(after))  # type: ignore[operator]
        if (after.ss_sp, after.ss_size, after.ss_flags) != (before.ss_sp, before.ss_size, before.ss_flags):
            _sigaltstack(ctypes.byref(before), None)  # type: ignore[operator]
