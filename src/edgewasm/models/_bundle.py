"""A per-model module: a classifier guest whose data segment is a packed weight image.

wasmtime lays a module's data segments out as a copy-on-write memory image in the compiled artifact and maps
it at instantiation, so a fresh instance of the bundled module has its weights in linear memory without
reading or copying them (pages are faulted in on first touch). The guest reserves the room itself (a zeroed,
page-aligned static it reports through its ``edge_weights_region`` export) and uses the image in place when
its ``id`` matches the request's model; the bundler adds one active data segment there and a custom section
``edgewasm.bundle`` saying what it holds. Nothing else in the module changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .._errors import BundleError

REGION_EXPORT = "edge_weights_region"
BUNDLE_SECTION = "edgewasm.bundle"
_CUSTOM, _MEMORY, _CODE, _DATA, _DATACOUNT = 0, 5, 10, 11, 12
#: fuel for running the region export at bundle time (it returns a constant)
_FUEL = 1_000_000


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise BundleError("malformed module: bad LEB128 number")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _sleb32(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise BundleError("malformed module: bad LEB128 number")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos


def _enc_uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _enc_sleb32(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        done = (n == 0 and not b & 0x40) or (n == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


def _sections(wasm: bytes) -> list[tuple[int, bytes]]:
    if wasm[:8] != b"\0asm\x01\0\0\0":
        raise BundleError("not a WebAssembly module (bad magic or version)")
    out, pos = [], 8
    while pos < len(wasm):
        sid = wasm[pos]
        size, start = _uleb(wasm, pos + 1)
        if start + size > len(wasm):
            raise BundleError("malformed module: a section runs past the end")
        out.append((sid, wasm[start : start + size]))
        pos = start + size
    return out


def _section(sid: int, body: bytes) -> bytes:
    return bytes([sid]) + _enc_uleb(len(body)) + body


def _custom_name(body: bytes) -> str:
    n, p = _uleb(body, 0)
    return body[p : p + n].decode("utf-8", "replace")


def weights_region(wasm: bytes) -> tuple[int, int]:
    """(address, size) of the guest's weights region, from its ``edge_weights_region`` export, run under a
    fuel budget with no WASI access."""
    import wasmtime

    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.wasm_relaxed_simd = True
    engine = wasmtime.Engine(cfg)
    try:
        module = wasmtime.Module(engine, wasm)
        store = wasmtime.Store(engine)
        store.set_fuel(_FUEL)
        store.set_wasi(wasmtime.WasiConfig())
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        inst = linker.instantiate(store, module)
        func = inst.exports(store).get(REGION_EXPORT)
        if not isinstance(func, wasmtime.Func):
            raise BundleError(f"the module has no {REGION_EXPORT} export: it cannot carry weights")
        value = int(func(store)) & 0xFFFFFFFFFFFFFFFF
    except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
        raise BundleError(f"cannot ask the module for its weights region: {str(exc).splitlines()[0]}") from None
    return value & 0xFFFFFFFF, value >> 32


def _active_segments(body: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the data section's active segments on memory 0."""
    count, p = _uleb(body, 0)
    out = []
    for _ in range(count):
        flags, p = _uleb(body, p)
        if flags == 1:
            n, p = _uleb(body, p)
            p += n
            continue
        if flags == 2:
            mem, p = _uleb(body, p)
            if mem != 0:
                raise BundleError("the module has more than one memory")
        elif flags != 0:
            raise BundleError(f"unexpected data segment kind {flags}")
        if body[p] != 0x41:
            raise BundleError("a data segment's offset is not a constant")
        offset, p = _sleb32(body, p + 1)
        if body[p] != 0x0B:
            raise BundleError("a data segment's offset is not a plain constant")
        n, p = _uleb(body, p + 1)
        out.append((offset & 0xFFFFFFFF, n))
        p += n
    return out


def _memory_min_bytes(body: bytes) -> int:
    count, p = _uleb(body, 0)
    if count != 1:
        raise BundleError("the module must define exactly one memory")
    flags, p = _uleb(body, p)
    pages, p = _uleb(body, p)
    if flags & 0x4:
        raise BundleError("64-bit memories are not supported")
    return int(pages) * 65536


def bundle(wasm: bytes, image: bytes, model_id: str) -> bytes:
    """The module with ``image`` as an active data segment at its weights region."""
    sections = _sections(wasm)
    if any(sid == _CUSTOM and _custom_name(body) == BUNDLE_SECTION for sid, body in sections):
        raise BundleError("the module already carries bundled weights; bundle the plain module")
    addr, size = weights_region(wasm)
    if len(image) > size:
        raise BundleError(f"the weights ({len(image)} bytes) do not fit the module's region ({size} bytes)")
    memories = [body for sid, body in sections if sid == _MEMORY]
    if not memories or _memory_min_bytes(memories[0]) < addr + len(image):
        raise BundleError("the module's initial memory does not cover its weights region")
    data = [body for sid, body in sections if sid == _DATA]
    for off, n in _active_segments(data[0]) if data else []:
        if off < addr + len(image) and addr < off + n:
            raise BundleError("the module's own data overlaps its weights region")
    segment = b"\x00\x41" + _enc_sleb32(addr if addr < 1 << 31 else addr - (1 << 32)) + b"\x0b"
    segment += _enc_uleb(len(image)) + image
    if data:
        count, p = _uleb(data[0], 0)
        new_data = _enc_uleb(count + 1) + data[0][p:] + segment
    else:
        new_data = _enc_uleb(1) + segment
    info = {"model_id": model_id, "bytes": len(image), "sha256": hashlib.sha256(image).hexdigest(), "address": addr}
    name = BUNDLE_SECTION.encode()
    custom = _enc_uleb(len(name)) + name + json.dumps(info, sort_keys=True).encode()
    out = bytearray(wasm[:8])
    placed = False
    for sid, body in sections:
        if sid == _DATACOUNT:
            count, _ = _uleb(body, 0)
            body = _enc_uleb(count + 1)
        if sid == _DATA:
            body = new_data
            placed = True
        out += _section(sid, body)
        if sid == _CODE and not data:  # a module without data: its data section goes right after the code
            out += _section(_DATA, new_data)
            placed = True
    if not placed:
        raise BundleError("the module has no code section")
    out += _section(_CUSTOM, custom)
    return bytes(out)


def bundle_info(wasm: bytes) -> dict[str, Any] | None:
    """What a bundled module carries (its ``edgewasm.bundle`` section), or None for a plain module."""
    try:
        for sid, body in _sections(wasm):
            if sid == _CUSTOM and _custom_name(body) == BUNDLE_SECTION:
                n, p = _uleb(body, 0)
                info: dict[str, Any] = json.loads(body[p + n :])
                return info
    except (BundleError, ValueError):
        return None
    return None


def write(module: Path, image: Path, model_id: str, output: Path) -> dict[str, Any]:
    """Bundle ``image`` into ``module``, writing ``output``; returns the bundle's description."""
    out = bundle(module.read_bytes(), image.read_bytes(), model_id)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_bytes(out)
    tmp.replace(output)
    info = bundle_info(out)
    assert info is not None
    return info
