"""The compiled-artifact file: wasmtime's ELF image followed by an edgewasm trailer, and how one gets mapped.

An artifact is native code the host maps and runs. wasmtime does not notice a flipped byte (facts: `add(2,3)` became
4) and silently accepts one compiled with other CPU features, so the trailer records what it was compiled for, and:

- an artifact in the cache carries a tag, HMAC-SHA256 under this user's artifact key (`_key`) of every byte before
  the tag: one that this user's edgewasm did not write is never mapped, whoever could write the directory;
- one from `edgewasm compile`, made to be copied elsewhere, carries a zero tag and the sha256 of its image: a
  corruption check only, which is why running one needs an explicit opt-in (`allow_precompiled`).

The bytes verified are the bytes mapped: the file is opened once, verified through that descriptor, and wasmtime
maps the same open file through /proc/self/fd. When others could rewrite the file in place after the check (it is
neither this user's nor root's, or it is writable by others), or there is no /proc, the verified bytes are copied
into memory and wasmtime loads that copy instead. `Module.deserialize_file` ignores bytes past the ELF image.

Layout: ELF image | JSON metadata | u64 LE metadata length | 32-byte tag | b"EDGEWAS2"
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import mmap
import os
import secrets
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

from . import _private
from ._errors import ArtifactError

MAGIC = b"EDGEWAS2"
#: Format 1 (before artifacts were keyed) ended with this magic after a u64 length.
OLD_MAGIC = b"EDGEWASM"
FORMAT = 2
_TAIL = struct.Struct("<Q32s8s")
_TAG_AND_MAGIC = 40  # the tag covers every byte before it
_UNKEYED = bytes(32)
_DOMAIN = b"edgewasm artifact v2\n"
_FD_DIR = "/proc/self/fd"


def _tag(key: bytes, *parts: bytes | bytearray | memoryview) -> bytes:
    mac = hmac.new(key, _DOMAIN, hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def encode_trailer(elf: bytes | bytearray, meta: dict[str, Any], key: bytes | None) -> bytes:
    body = dict(meta, format=FORMAT, elf_size=len(elf), elf_sha256=hashlib.sha256(elf).hexdigest())
    blob = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    length = struct.pack("<Q", len(blob))
    tag = _tag(key, elf, blob, length) if key is not None else _UNKEYED
    return blob + length + tag + MAGIC


def write(dir_fd: int, name: str, elf: bytes | bytearray, meta: dict[str, Any], key: bytes | None) -> None:
    """Write `name` in the directory so that readers see nothing or the whole file: a new 0600 temporary file
    (O_EXCL, O_NOFOLLOW), fsync, rename over the old entry, fsync the directory."""
    trailer = encode_trailer(elf, meta, key)
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = _private.create_file(tmp, dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(elf)
            f.write(trailer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    _private.fsync_directory(dir_fd)


def write_atomic(path: Path, elf: bytes | bytearray, meta: dict[str, Any], key: bytes | None = None) -> None:
    """`write` at a path, for an explicit artifact (`edgewasm compile -o PATH`); unkeyed unless given a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        write(dir_fd, path.name, elf, meta, key)
    finally:
        os.close(dir_fd)


def _parse(view: memoryview, name: str, key: bytes | None) -> dict[str, Any]:
    """Check the trailer (and the tag, or the image's sha256 when unkeyed); return the metadata."""
    size = len(view)
    if size < _TAIL.size:
        raise ArtifactError(f"{name}: truncated artifact ({size} bytes)", hint="recompile it with `edgewasm compile`")
    length, tag, magic = _TAIL.unpack(view[size - _TAIL.size :])
    if magic != MAGIC:
        if view[size - len(OLD_MAGIC) :] == OLD_MAGIC:
            raise ArtifactError(
                f"{name}: made by an older edgewasm (artifact format 1)", hint="recompile it with `edgewasm compile`"
            )
        raise ArtifactError(
            f"{name}: not an edgewasm artifact (no trailer); it may be truncated or made by another tool",
            hint="recompile it with `edgewasm compile`",
        )
    if length > size - _TAIL.size:
        raise ArtifactError(f"{name}: corrupt artifact trailer", hint="recompile it with `edgewasm compile`")
    body_end = size - _TAG_AND_MAGIC
    if key is not None and not hmac.compare_digest(_tag(key, view[:body_end]), tag):
        # Checked before anything else of the file is believed, its metadata included.
        raise ArtifactError(f"{name}: not written by this user's edgewasm (its MAC does not match): forged or damaged")
    try:
        meta: dict[str, Any] = json.loads(bytes(view[size - _TAIL.size - length : size - _TAIL.size]))
        elf_size = int(meta["elf_size"])
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise ArtifactError(f"{name}: corrupt artifact trailer", hint="recompile it with `edgewasm compile`") from None
    if meta.get("format") != FORMAT or size != elf_size + _TAIL.size + length:
        raise ArtifactError(f"{name}: artifact size does not match its trailer (truncated or appended to)")
    if key is None and hashlib.sha256(view[:elf_size]).hexdigest() != meta.get("elf_sha256"):
        raise ArtifactError(f"{name}: artifact checksum mismatch (corrupt or tampered)")
    return meta


def verify_fd(fd: int, name: str, key: bytes | None = None) -> dict[str, Any]:
    """Verify the open artifact; return its metadata. `key`: the artifact key (cache entries) or None."""
    if os.fstat(fd).st_size == 0:
        raise ArtifactError(f"{name}: truncated artifact (0 bytes)", hint="recompile it with `edgewasm compile`")
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as m, memoryview(m) as view:
        return _parse(view, name, key)


def verify(path: Path, key: bytes | None = None) -> dict[str, Any]:
    """`verify_fd` by path (for tests and tools; what gets mapped goes through `load`)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ArtifactError(f"cannot read artifact {path}: {e.strerror}") from None
    try:
        return verify_fd(fd, str(path), key)
    finally:
        os.close(fd)


def read_meta(path: Path) -> dict[str, Any]:
    """The metadata of an artifact whose image is not checked (listing, tests); raises ArtifactError."""
    return verify(path, None)


def _mappable_in_place(st: os.stat_result) -> bool:
    """Nobody but this user and root can change the file's bytes after they are checked."""
    uid = os.geteuid() if hasattr(os, "geteuid") else -1
    return st.st_uid in (uid, 0) and not st.st_mode & 0o022 and os.path.isdir(_FD_DIR)


def load(
    fd: int,
    name: str,
    engine_for: Callable[[dict[str, Any]], wasmtime.Engine],
    key: bytes | None,
) -> tuple[wasmtime.Module, dict[str, Any]]:
    """Verify the open artifact and map exactly the bytes verified.

    `engine_for(meta)` runs after verification and before mapping: it refuses (raises) an artifact that was not
    built for this host and settings, and returns the engine to load it into.
    """
    st = os.fstat(fd)
    if _mappable_in_place(st):
        meta = verify_fd(fd, name, key)
        engine = engine_for(meta)
        return _wasmtime(lambda: wasmtime.Module.deserialize_file(engine, f"{_FD_DIR}/{fd}"), name), meta
    data = bytearray(st.st_size)
    with memoryview(data) as view:
        got = 0
        while got < len(data):
            n = os.preadv(fd, [view[got:]], got) if hasattr(os, "preadv") else os.readv(fd, [view[got:]])
            if n <= 0:
                break
            got += n
        meta = _parse(view[:got], name, key)
    engine = engine_for(meta)
    image = bytes(data[: int(meta["elf_size"])])
    return _wasmtime(lambda: wasmtime.Module.deserialize(engine, image), name), meta


def _wasmtime(make: Callable[[], wasmtime.Module], name: str) -> wasmtime.Module:
    try:
        return make()
    except wasmtime.WasmtimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "refused"
        raise ArtifactError(f"{name}: wasmtime refused the artifact: {first}") from None
