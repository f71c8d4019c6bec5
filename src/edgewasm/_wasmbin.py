"""The few pieces of the WebAssembly binary format the host reads itself: LEB128 numbers and the section list.

wasmtime-py exposes neither custom sections nor data segments, and the bundler (``models._bundle``) and the
module source (``_source``) both need them. Malformed input raises ``ValueError`` with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Iterator

MAGIC = b"\0asm\x01\0\0\0"
CUSTOM, MEMORY, CODE, DATA, DATACOUNT = 0, 5, 10, 11, 12


def uleb(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned 32-bit LEB128 number at ``pos``: (value, position after it)."""
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise ValueError("malformed module: bad LEB128 number")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def sleb32(data: bytes, pos: int) -> tuple[int, int]:
    """A signed 32-bit LEB128 number at ``pos``: (value, position after it)."""
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise ValueError("malformed module: bad LEB128 number")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos


def enc_uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def enc_sleb32(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        done = (n == 0 and not b & 0x40) or (n == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


def sections(wasm: bytes) -> Iterator[tuple[int, bytes]]:
    """(id, body) of each section in order."""
    if wasm[:8] != MAGIC:
        raise ValueError("not a WebAssembly module (bad magic or version)")
    pos = 8
    while pos < len(wasm):
        sid = wasm[pos]
        size, start = uleb(wasm, pos + 1)
        if start + size > len(wasm):
            raise ValueError("malformed module: a section runs past the end")
        yield sid, wasm[start : start + size]
        pos = start + size


def section(sid: int, body: bytes) -> bytes:
    """One encoded section."""
    return bytes([sid]) + enc_uleb(len(body)) + body


def custom_section(body: bytes) -> tuple[str, bytes]:
    """A custom section's (name, payload)."""
    n, p = uleb(body, 0)
    if p + n > len(body):
        raise ValueError("malformed module: a custom section's name runs past its end")
    return body[p : p + n].decode("utf-8", "replace"), body[p + n :]
