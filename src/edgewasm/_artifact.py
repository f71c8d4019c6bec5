"""The compiled-artifact file: wasmtime's ELF image followed by an edgewasm trailer.

wasmtime does not notice a flipped byte in an artifact (facts: `add(2,3)` became 4) and silently accepts one
compiled with other CPU features, so the trailer records the sha256 of the ELF image and everything it was
compiled for. `wasmtime.Module.deserialize_file` ignores bytes past the ELF image and still mmaps the file.

Layout: ELF image | JSON metadata | u64 LE metadata length | b"EDGEWASM"
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

from ._errors import ArtifactError

MAGIC = b"EDGEWASM"
FORMAT = 1
_TAIL = struct.Struct("<Q8s")


def encode_trailer(elf: bytes | bytearray, meta: dict[str, Any]) -> bytes:
    body = dict(meta, format=FORMAT, elf_size=len(elf), elf_sha256=hashlib.sha256(elf).hexdigest())
    blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return blob + _TAIL.pack(len(blob), MAGIC)


def write_atomic(path: Path, elf: bytes | bytearray, meta: dict[str, Any]) -> None:
    """Write the artifact so that readers see either nothing or the whole file: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    trailer = encode_trailer(elf, meta)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(elf)
            f.write(trailer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_meta(path: Path) -> dict[str, Any]:
    """The trailer's metadata, without hashing; raises ArtifactError when there is no valid trailer."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size < _TAIL.size:
                raise ArtifactError(f"{path}: truncated artifact ({size} bytes)")
            f.seek(size - _TAIL.size)
            length, magic = _TAIL.unpack(f.read(_TAIL.size))
            if magic != MAGIC or length > size - _TAIL.size:
                raise ArtifactError(
                    f"{path}: not an edgewasm artifact (no trailer); it may be truncated or made by another tool",
                    hint="recompile it with `edgewasm compile`",
                )
            f.seek(size - _TAIL.size - length)
            meta: dict[str, Any] = json.loads(f.read(length))
    except OSError as e:
        raise ArtifactError(f"cannot read artifact {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise ArtifactError(f"{path}: corrupt artifact trailer", hint="recompile it with `edgewasm compile`") from None
    if meta.get("format") != FORMAT or size != int(meta.get("elf_size", -1)) + _TAIL.size + length:
        raise ArtifactError(f"{path}: artifact size does not match its trailer (truncated or appended to)")
    return meta


def verify(path: Path) -> dict[str, Any]:
    """Check the ELF image against its recorded sha256; return the metadata."""
    meta = read_meta(path)
    size = int(meta["elf_size"])
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)
        image = view[:size]
        try:
            digest = hashlib.sha256(image).hexdigest()
        finally:
            image.release()
            view.release()
    if digest != meta.get("elf_sha256"):
        raise ArtifactError(f"{path}: artifact checksum mismatch (corrupt or tampered)")
    return meta
