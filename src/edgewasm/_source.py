"""Where a module comes from: a `.wasm` binary, `.wat` text, or a compiled `.cwasm` artifact."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Literal

import wasmtime

from . import _wasmbin
from ._errors import ModuleLoadError

WASM_MAGIC = b"\0asm"
ELF_MAGIC = b"\x7fELF"

Kind = Literal["wasm", "cwasm"]

#: The custom section in which a guest asks for host resources (one word a line, e.g. `models`).
NEEDS_SECTION = "edgewasm.needs"


@dataclasses.dataclass(frozen=True)
class Source:
    """A module's bytes and identity. For a `.cwasm`, `wasm` is empty and `path` is the artifact."""

    name: str
    kind: Kind
    wasm: bytes
    path: Path | None
    sha256: str

    @property
    def needs(self) -> frozenset[str]:
        return custom_needs(self.wasm) if self.kind == "wasm" else frozenset()


def open_source(module: str | os.PathLike[str] | bytes) -> Source:
    """Read a module given as a path or as bytes; WAT is converted to binary here, once."""
    if isinstance(module, (bytes, bytearray, memoryview)):
        return _from_bytes("<bytes>", bytes(module), None)
    path = Path(module)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModuleLoadError(
            f"no such module file: {path}", hint="check the path; edgewasm runs .wasm, .wat and .cwasm files"
        ) from None
    except IsADirectoryError:
        raise ModuleLoadError(f"{path} is a directory, not a module file") from None
    except OSError as e:
        raise ModuleLoadError(f"cannot read {path}: {e.strerror}") from None
    return _from_bytes(str(path), data, path)


def _from_bytes(name: str, data: bytes, path: Path | None) -> Source:
    if not data:
        raise ModuleLoadError(f"{name} is empty", hint="rebuild the module; it may have been cut short")
    if data.startswith(ELF_MAGIC):
        return Source(name, "cwasm", b"", path, hashlib.sha256(data).hexdigest())
    if not data.startswith(WASM_MAGIC):
        if path is not None and path.suffix.lower() == ".wasm":
            # Text in a .wasm file is a mistake (a renamed file, a download that saved an error page), not WAT.
            raise ModuleLoadError(
                f"{name} is neither WebAssembly (no \\0asm magic at its start) nor a compiled artifact: a .wasm "
                "file must hold a binary module",
                hint="rebuild it; WebAssembly text belongs in a .wat file",
            )
        data = _wat_to_wasm(name, data)
    if len(data) < 8:
        raise ModuleLoadError(f"{name}: unexpected EOF in the module header", hint="the file is truncated")
    return Source(name, "wasm", data, path, hashlib.sha256(data).hexdigest())


def _wat_to_wasm(name: str, data: bytes) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModuleLoadError(
            f"{name} is neither WebAssembly (no \\0asm magic), WAT text nor a compiled artifact",
            hint="pass a .wasm, .wat or .cwasm file",
        ) from None
    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "parse error"
        raise ModuleLoadError(f"{name}: invalid WAT: {first}", hint="fix the text format error") from None


def custom_sections(wasm: bytes) -> dict[str, bytes]:
    """The module's custom sections by name (wasmtime-py does not expose them). Malformed input gives those
    before the fault (wasmtime refuses such a module anyway)."""
    out: dict[str, bytes] = {}
    try:
        for sid, body in _wasmbin.sections(wasm):
            if sid == _wasmbin.CUSTOM:
                name, payload = _wasmbin.custom_section(body)
                out[name] = payload
    except (ValueError, IndexError):
        return out
    return out


def custom_needs(wasm: bytes) -> frozenset[str]:
    raw = custom_sections(wasm).get(NEEDS_SECTION, b"")
    return frozenset(raw.decode("utf-8", "replace").split())
