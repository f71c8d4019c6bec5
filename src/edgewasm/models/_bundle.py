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

from .. import _wasmbin
from .._errors import BundleError
from .._wasmbin import CODE, CUSTOM, DATA, DATACOUNT, MEMORY, enc_sleb32, enc_uleb, section, sleb32, uleb

REGION_EXPORT = "edge_weights_region"
BUNDLE_SECTION = "edgewasm.bundle"
#: fuel for running the region export at bundle time (it returns a constant)
_FUEL = 1_000_000


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
    count, p = uleb(body, 0)
    out = []
    for _ in range(count):
        flags, p = uleb(body, p)
        if flags == 1:
            n, p = uleb(body, p)
            p += n
            continue
        if flags == 2:
            mem, p = uleb(body, p)
            if mem != 0:
                raise BundleError("the module has more than one memory")
        elif flags != 0:
            raise BundleError(f"unexpected data segment kind {flags}")
        if body[p] != 0x41:
            raise BundleError("a data segment's offset is not a constant")
        offset, p = sleb32(body, p + 1)
        if body[p] != 0x0B:
            raise BundleError("a data segment's offset is not a plain constant")
        n, p = uleb(body, p + 1)
        out.append((offset & 0xFFFFFFFF, n))
        p += n
    return out


def _memory_min_bytes(body: bytes) -> int:
    count, p = uleb(body, 0)
    if count != 1:
        raise BundleError("the module must define exactly one memory")
    flags, p = uleb(body, p)
    pages, p = uleb(body, p)
    if flags & 0x4:
        raise BundleError("64-bit memories are not supported")
    return int(pages) * 65536


def bundle(wasm: bytes, image: bytes, model_id: str) -> bytes:
    """The module with ``image`` as an active data segment at its weights region."""
    try:
        return _bundle(wasm, image, model_id)
    except (ValueError, IndexError) as exc:  # the binary reader's faults
        raise BundleError(str(exc) if isinstance(exc, ValueError) else "malformed module: it ends early") from None


def _is_bundle_section(sid: int, body: bytes) -> bool:
    return sid == CUSTOM and _wasmbin.custom_section(body)[0] == BUNDLE_SECTION


def _bundle(wasm: bytes, image: bytes, model_id: str) -> bytes:
    sections = list(_wasmbin.sections(wasm))
    if any(_is_bundle_section(sid, body) for sid, body in sections):
        raise BundleError("the module already carries bundled weights; bundle the plain module")
    addr, size = weights_region(wasm)
    if len(image) > size:
        raise BundleError(f"the weights ({len(image)} bytes) do not fit the module's region ({size} bytes)")
    memories = [body for sid, body in sections if sid == MEMORY]
    if not memories or _memory_min_bytes(memories[0]) < addr + len(image):
        raise BundleError("the module's initial memory does not cover its weights region")
    data = [body for sid, body in sections if sid == DATA]
    for off, n in _active_segments(data[0]) if data else []:
        if off < addr + len(image) and addr < off + n:
            raise BundleError("the module's own data overlaps its weights region")
    segment = b"\x00\x41" + enc_sleb32(addr if addr < 1 << 31 else addr - (1 << 32)) + b"\x0b"
    segment += enc_uleb(len(image)) + image
    if data:
        count, p = uleb(data[0], 0)
        new_data = enc_uleb(count + 1) + data[0][p:] + segment
    else:
        new_data = enc_uleb(1) + segment
    info = {"model_id": model_id, "bytes": len(image), "sha256": hashlib.sha256(image).hexdigest(), "address": addr}
    name = BUNDLE_SECTION.encode()
    custom = enc_uleb(len(name)) + name + json.dumps(info, sort_keys=True).encode()
    out = bytearray(wasm[:8])
    placed = False
    for sid, body in sections:
        if sid == DATACOUNT:
            count, _ = uleb(body, 0)
            body = enc_uleb(count + 1)
        if sid == DATA:
            body = new_data
            placed = True
        out += section(sid, body)
        if sid == CODE and not data:  # a module without data: its data section goes right after the code
            out += section(DATA, new_data)
            placed = True
    if not placed:
        raise BundleError("the module has no code section")
    out += section(CUSTOM, custom)
    return bytes(out)


def bundle_info(wasm: bytes) -> dict[str, Any] | None:
    """What a bundled module carries (its ``edgewasm.bundle`` section), or None for a plain module."""
    try:
        for sid, body in _wasmbin.sections(wasm):
            if _is_bundle_section(sid, body):
                info: dict[str, Any] = json.loads(_wasmbin.custom_section(body)[1])
                return info
    except (ValueError, IndexError):
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
