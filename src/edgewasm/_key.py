"""The per-user secret that authenticates cached artifacts (an HMAC-SHA256 key).

Anyone who can write into a cache directory can recompute a plain checksum; only this user's edgewasm knows this
key, so only artifacts it wrote carry a valid tag. The key lives outside every cache directory (`_paths.key_file`,
by default `artifact.key` in platformdirs' user data directory), in a file only this user may read. It is made the
first time it is needed: written to a new temporary file (O_EXCL, O_NOFOLLOW, 0600), then hard-linked into place,
so no process ever reads a half-written key and two processes racing agree on one.

Format: 64 lowercase hex digits (32 random bytes) and a newline.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from pathlib import Path

from . import _private
from ._paths import key_file

KEY_BYTES = 32


class KeyUnavailable(Exception):
    """The key cannot be read or made; the message says why and what to do."""


def artifact_key(path: Path | None = None) -> bytes:
    """This user's key, read (or made) once per process."""
    return _load(path if path is not None else key_file())


@functools.cache
def _load(path: Path) -> bytes:
    if not _private.SUPPORTED:
        raise KeyUnavailable("the artifact key needs a POSIX system (owners, O_NOFOLLOW)")
    try:
        with _private.open_directory(path.parent, create=True) as dir_fd:
            try:
                return _read(path, dir_fd)
            except FileNotFoundError:
                _create(path.name, dir_fd)
                return _read(path, dir_fd)
    except _private.NotPrivate as e:
        raise KeyUnavailable(
            f"the artifact key {path} (or its directory) is not private: {e}; remove it and a new key is made "
            "(cached artifacts are then rebuilt)"
        ) from None
    except OSError as e:
        raise KeyUnavailable(f"cannot read or create the artifact key {path}: {e.strerror or e}") from None


def _read(path: Path, dir_fd: int) -> bytes:
    try:
        fd = _private.open_file(path.name, dir_fd, secret=True)
    except OSError as e:
        if _private.is_symlink_refusal(e):
            raise _private.NotPrivate("it is a symlink") from None
        raise
    try:
        text = os.read(fd, 4 * KEY_BYTES).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise _private.NotPrivate(f"it does not hold a key ({2 * KEY_BYTES} hex digits)")
    return key


def _create(name: str, dir_fd: int) -> None:
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = _private.create_file(tmp, dir_fd)
    try:
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process made one first: use theirs
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
    _private.fsync_directory(dir_fd)
