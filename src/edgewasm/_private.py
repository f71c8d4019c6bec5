"""Directories and files that only this user can change: where native code and secrets may come from.

A directory is private when this user owns it and nobody else may write into it. Everything inside one is opened
relative to a descriptor of the directory as checked (never by path again), without following symlinks, and is
checked to be a regular file this user owns: a path swapped after the check, a planted symlink or another user's
file is never what gets read, locked or mapped. Root is not exempt: a directory another user owns is theirs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

#: Everything here needs openat(2)-style calls, O_NOFOLLOW and owners: POSIX.
SUPPORTED = hasattr(os, "O_NOFOLLOW") and os.open in os.supports_dir_fd and hasattr(os, "geteuid")

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class NotPrivate(Exception):
    """A path that exists but that others could change; the message says why, in a few words."""


def _uid() -> int:
    return os.geteuid()


def check_directory(st: os.stat_result) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise NotPrivate("it is not a directory")
    if st.st_uid != _uid():
        raise NotPrivate(f"it belongs to uid {st.st_uid}, not to this user (uid {_uid()})")
    if st.st_mode & 0o022:
        raise NotPrivate(f"other users can write into it (mode {stat.S_IMODE(st.st_mode):04o})")


def check_file(st: os.stat_result, *, secret: bool = False) -> None:
    """A regular file this user owns that nobody else may write (nor read, for a secret)."""
    if not stat.S_ISREG(st.st_mode):
        raise NotPrivate("it is not a regular file")
    if st.st_uid != _uid():
        raise NotPrivate(f"it belongs to uid {st.st_uid}, not to this user (uid {_uid()})")
    if st.st_mode & (0o077 if secret else 0o022):
        raise NotPrivate(f"other users can {'access' if secret else 'write'} it (mode {stat.S_IMODE(st.st_mode):04o})")


def make_dirs(path: Path) -> None:
    """Create `path` and any missing parents, each 0700 (what exists already is left as it is)."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue  # another process made it first; open_directory checks whatever is there
        # mkdir's mode went through the umask: set it on what was made, never through a symlink put in its place.
        fd = os.open(d, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
        try:
            if os.fstat(fd).st_uid == _uid():
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


def open_directory_fd(path: Path, *, create: bool) -> int:
    """A descriptor of `path`, checked private. Raises NotPrivate, or OSError (missing, not a directory, ...)."""
    if create:
        make_dirs(path)
    fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        check_directory(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def open_directory(path: Path, *, create: bool) -> Iterator[int]:
    fd = open_directory_fd(path, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def open_file(name: str, dir_fd: int, flags: int = os.O_RDONLY, *, secret: bool = False) -> int:
    """Open `name` inside a private directory without following a symlink; it must be a file this user owns."""
    fd = os.open(name, flags | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        check_file(os.fstat(fd), secret=secret)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_file(name: str, dir_fd: int) -> int:
    """Create a new file, 0600, that did not exist: never an existing file, never through a symlink."""
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=dir_fd)


def is_symlink_refusal(e: OSError) -> bool:
    """O_NOFOLLOW met a symlink (Linux says ELOOP; some systems EMLINK or EFTYPE)."""
    return e.errno in (errno.ELOOP, errno.EMLINK, getattr(errno, "EFTYPE", -1))


def fsync_directory(dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.fsync(dir_fd)
