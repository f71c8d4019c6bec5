"""Bounds-checked access to a guest's linear memory during one host call.

A `GuestMemory` is made per callback (the base address can move when memory grows), masks every
guest address to u32, and checks every range against the memory's current length before touching it.
"""

from __future__ import annotations

import ctypes
import struct

import numpy as np
import wasmtime

from .. import _wasmtime
from ._enums import NnErrno, NnError

U32 = 0xFFFFFFFF

#: Whole-memory uint8 views by (base, length): `view` slices one instead of building a ctypes array type and a numpy
#: array per call (~10 us). The views own nothing; a key is only ever used with the base and length the calling
#: instance's memory has now, so a stale entry of a freed memory can at worst be a view of the same valid range.
_WHOLE: dict[tuple[int, int], np.ndarray] = {}
_WHOLE_MAX = 16


def u32(value: int) -> int:
    """i32 arguments reach Python signed; the ABI means unsigned."""
    return value & U32


class GuestMemory:
    """The calling instance's exported `memory`, as a base address and a length."""

    __slots__ = ("base", "length")

    def __init__(self, caller: wasmtime.Caller) -> None:
        # One C lookup on the fast route: made three times an inference (set_input, compute, get_output).
        found = _wasmtime.caller_memory(caller)
        if found is None:
            raise NnError(NnErrno.MISSING_MEMORY, "the guest exports no memory named 'memory'")
        self.base: int = found[0]
        self.length: int = found[1]

    def check(self, ptr: int, size: int, what: str) -> int:
        """The absolute host address of guest range [ptr, ptr+size), or invalid_argument."""
        ptr = u32(ptr)
        if size < 0 or ptr + size > self.length:
            raise NnError(
                NnErrno.INVALID_ARGUMENT,
                f"{what} [{ptr:#x}, +{size}) is outside guest memory ({self.length} bytes)",
            )
        return self.base + ptr

    def read_bytes(self, ptr: int, size: int, what: str) -> bytes:
        """A copy of guest bytes (for model blobs and names, which must outlive the call)."""
        addr = self.check(ptr, size, what)
        return ctypes.string_at(addr, size) if size else b""

    def read_u32s(self, ptr: int, count: int, what: str) -> tuple[int, ...]:
        addr = self.check(ptr, 4 * count, what)
        return struct.unpack(f"<{count}I", ctypes.string_at(addr, 4 * count)) if count else ()

    def view(self, ptr: int, size: int, what: str) -> np.ndarray:
        """A zero-copy writable uint8 view; valid only until the guest runs again."""
        addr = self.check(ptr, size, what)
        if size == 0:
            return np.empty(0, dtype=np.uint8)
        key = (self.base, self.length)
        whole = _WHOLE.get(key)
        if whole is None:
            if len(_WHOLE) >= _WHOLE_MAX:
                _WHOLE.clear()
            whole = _WHOLE[key] = np.ctypeslib.as_array((ctypes.c_uint8 * self.length).from_address(self.base))
        start = addr - self.base
        return whole[start : start + size]

    def write_u32(self, ptr: int, value: int, what: str) -> None:
        addr = self.check(ptr, 4, what)
        ctypes.memmove(addr, struct.pack("<I", value & U32), 4)

    def write_array(self, ptr: int, array: np.ndarray, what: str) -> None:
        """Copy a C-contiguous array's bytes into guest memory with one memmove."""
        addr = self.check(ptr, array.nbytes, what)
        if array.nbytes:
            ctypes.memmove(addr, array.ctypes.data, array.nbytes)
