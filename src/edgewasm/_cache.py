"""The on-disk cache of compiled artifacts: native code, so only what this user's edgewasm wrote is ever mapped.

An entry is named by a key that covers everything that makes an artifact valid: the module's sha256, the wasmtime
version, the engine settings and the host (see `_engine.EngineSettings.key`). The directory must be private (this
user's, writable by nobody else; edgewasm creates it 0700): one that is not is never read nor written, with one
warning. Entries carry a MAC under this user's artifact key (`_key`), are written atomically and verified through
the descriptor that is mapped (`_artifact.load`); a bad one is discarded with a warning and rebuilt. Everything in
the directory is opened relative to the checked directory, without following symlinks. Processes filling the cache
at once are safe: each writes its own temporary file and renames it; a lock file only saves them compiling the same
module twice. A cache that cannot be used or written slows start-up and never fails a load: it is said once per
process, in one line (`edgewasm: warning: ...`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import wasmtime

from . import _artifact, _key, _private
from ._errors import ArtifactError, CacheError, CacheWarning
from ._paths import cache_dir

SUFFIX = ".cwasm"
_HINT = "set --cache-dir or EDGEWASM_CACHE_DIR to a directory of your own, or pass --no-cache (cache=False)"


def entry_key(module_sha256: str, engine_key_json: str) -> str:
    return hashlib.sha256(f"{module_sha256}\n{engine_key_json}".encode()).hexdigest()[:40]


@dataclasses.dataclass(frozen=True)
class Entry:
    path: Path
    size: int
    meta: dict[str, Any]


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn(message: str, *, once_for: tuple[str, str] | None = None) -> None:
    if once_for is not None:
        with _warned_lock:
            if once_for in _warned:
                return
            _warned.add(once_for)
    warnings.warn(message, CacheWarning, stacklevel=4)


class DiskCache:
    """The artifact cache in one directory (default: the user's cache dir): entries keyed by module and engine,
    MAC-checked on every read; a directory that is not private to this user is not used (docs/cache.md)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(directory).expanduser() if directory is not None else cache_dir()

    def path_for(self, key: str) -> Path:
        """Where the artifact of cache key `key` is (or would be) stored."""
        return self.dir / f"{key}{SUFFIX}"

    # -- the directory -----------------------------------------------------------------------------------------------

    def _not_used(self, why: str, kind: str) -> None:
        _warn(
            f"not using the artifact cache {self.dir}: {why}; modules are compiled at every start (hint: {_HINT})",
            once_for=(str(self.dir), kind),
        )

    def _unwritable(self, e: OSError) -> None:
        _warn(
            f"cannot write the artifact cache {self.dir}: {e.strerror or e}; modules are compiled at every start "
            f"(hint: make it a writable directory with free space, or {_HINT})",
            once_for=(str(self.dir), "unwritable"),
        )

    def _key(self) -> bytes | None:
        try:
            return _key.artifact_key()
        except _key.KeyUnavailable as e:
            self._not_used(str(e), "key")
            return None

    def _open(self, *, create: bool) -> int | None:
        """The checked directory's descriptor, or None when it must not be used (said once) or does not exist."""
        if not _private.SUPPORTED:
            self._not_used("it needs a POSIX system (owners, O_NOFOLLOW)", "posix")
            return None
        try:
            return _private.open_directory_fd(self.dir, create=create)
        except FileNotFoundError:
            if create:
                self._unwritable(FileNotFoundError(2, "a parent directory vanished"))
            return None
        except _private.NotPrivate as e:
            self._not_used(str(e), "unsafe")
        except OSError as e:
            self._unwritable(e)
        return None

    @contextlib.contextmanager
    def _directory(self, *, create: bool) -> Iterator[int | None]:
        fd = self._open(create=create)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    # -- entries -----------------------------------------------------------------------------------------------------

    def lookup(
        self, key: str, accept: Callable[[dict[str, Any]], wasmtime.Engine]
    ) -> tuple[wasmtime.Module, Path, dict[str, Any]] | None:
        """The entry for `key`, verified and mapped, or None. A bad one is removed, with a warning.

        `accept(meta)` checks the entry's metadata against what the caller needs (raising ArtifactError) and
        returns the engine to map it into; it runs after the MAC is verified and before anything is mapped.
        """
        secret = self._key()
        if secret is None:
            return None
        name = f"{key}{SUFFIX}"
        with self._directory(create=False) as dir_fd:
            if dir_fd is None:
                return None
            try:
                fd = _private.open_file(name, dir_fd)
            except FileNotFoundError:
                return None
            except _private.NotPrivate as e:
                self._discard(dir_fd, name, f"{self.dir / name}: {e}")
                return None
            except OSError as e:
                self._discard(dir_fd, name, f"{self.dir / name}: {e.strerror or e}")
                return None
            try:
                module, meta = _artifact.load(fd, str(self.dir / name), accept, secret)
            except ArtifactError as e:
                self._discard(dir_fd, name, e.one_line())
                return None
            finally:
                os.close(fd)
        return module, self.dir / name, meta

    def _discard(self, dir_fd: int, name: str, reason: str) -> None:
        _warn(f"discarding cached artifact: {reason}; it will be rebuilt")
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)  # unlink never follows a symlink

    def discard(self, path: Path, reason: str) -> None:
        """Remove an entry that turned out unusable after it was mapped (its metadata, say)."""
        with self._directory(create=False) as dir_fd:
            if dir_fd is not None:
                self._discard(dir_fd, path.name, reason)

    def store(self, key: str, elf: bytes | bytearray, meta: dict[str, Any]) -> Path | None:
        """Write the entry, with this user's MAC; None (said once) when the cache cannot take it."""
        secret = self._key()
        if secret is None:
            return None
        with self._directory(create=True) as dir_fd:
            if dir_fd is None:
                return None
            try:
                _artifact.write(dir_fd, f"{key}{SUFFIX}", elf, meta, secret)
            except OSError as e:
                self._unwritable(e)
                return None
        return self.path_for(key)

    @contextlib.contextmanager
    def compiling(self, key: str) -> Iterator[None]:
        """Hold a per-key lock while compiling, so concurrent processes compile a module once.

        Correctness does not depend on it: without a lock (no fcntl, an unusable directory, or something other
        than this user's regular file at the lock's name, which is left alone) two processes may both compile."""
        try:
            import fcntl
        except ImportError:
            yield
            return
        fd = None
        with self._directory(create=True) as dir_fd:
            if dir_fd is not None and self._key() is not None:
                with contextlib.suppress(OSError, _private.NotPrivate):
                    fd = _private.open_file(f".{key}.lock", dir_fd, os.O_RDWR | os.O_CREAT)
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- listing and clearing (`edgewasm cache`) ---------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """The cache's artifacts with their sizes and metadata (what `edgewasm cache list` shows)."""
        out: list[Entry] = []
        with self._directory(create=False) as dir_fd:
            if dir_fd is None:
                return out
            for name in sorted(os.listdir(dir_fd)):
                if not name.endswith(SUFFIX):
                    continue
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
                except OSError:
                    continue
                try:
                    size = os.fstat(fd).st_size
                    try:
                        meta = _artifact.verify_fd(fd, name)
                    except (ArtifactError, OSError, ValueError):
                        meta = {}
                finally:
                    os.close(fd)
                out.append(Entry(self.dir / name, size, meta))
        return out

    def clear(self) -> int:
        """Remove every entry (and stale temporary and lock files); return how many artifacts went.

        Raises CacheError when something could not be removed, or the directory cannot be cleared at all."""
        try:
            dir_fd = _private.open_directory_fd(self.dir, create=False)
        except FileNotFoundError:
            return 0
        except _private.NotPrivate as e:
            raise CacheError(
                f"not clearing {self.dir}: {e}; edgewasm never uses such a directory",
                hint="remove it yourself if it is yours",
            ) from None
        except OSError as e:
            raise CacheError(f"cannot clear {self.dir}: {e.strerror or e}", hint="check the path") from None
        count, left, why = 0, 0, ""
        try:
            for name in os.listdir(dir_fd):
                if not name.endswith((SUFFIX, ".tmp", ".lock")):
                    continue
                try:
                    os.unlink(name, dir_fd=dir_fd)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    left += 1
                    why = e.strerror or str(e)
                    continue
                count += name.endswith(SUFFIX)
        finally:
            os.close(dir_fd)
        if left:
            raise CacheError(
                f"cannot clear {self.dir}: {why} ({left} files left, {count} artifacts removed)",
                hint=f"check the permissions of {self.dir}, or remove it as its owner",
            )
        return count


_previous_format = warnings.formatwarning


def _format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """Cache warnings read as one line, like the command line's errors (no Python source line after them)."""
    if issubclass(category, CacheWarning):
        return f"edgewasm: warning: {message}\n"
    return _previous_format(message, category, filename, lineno, line)


# formatwarning, unlike showwarning, is left alone by warnings.catch_warnings and by recorders (pytest).
warnings.formatwarning = _format_warning
