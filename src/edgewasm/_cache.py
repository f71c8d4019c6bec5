"""The on-disk cache of compiled artifacts.

An entry is named by a key that covers everything that makes an artifact valid: the module's sha256, the wasmtime
version, the engine settings and the host (see `_engine.EngineSettings.key`). Entries are written atomically and
verified before use; a bad one is discarded with a warning and rebuilt. Processes filling the cache at once are safe:
each writes its own temporary file and renames it; a lock file only saves them compiling the same module twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import _artifact
from ._errors import ArtifactError
from ._paths import cache_dir

SUFFIX = ".cwasm"


class CacheWarning(UserWarning):
    """A cache entry was unusable and has been discarded."""


def entry_key(module_sha256: str, engine_key_json: str) -> str:
    return hashlib.sha256(f"{module_sha256}\n{engine_key_json}".encode()).hexdigest()[:40]


@dataclasses.dataclass(frozen=True)
class Entry:
    path: Path
    size: int
    meta: dict[str, Any]


class DiskCache:
    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(directory).expanduser() if directory is not None else cache_dir()

    def path_for(self, key: str) -> Path:
        return self.dir / f"{key}{SUFFIX}"

    def lookup(self, key: str, expect: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
        """The verified artifact for `key` and its metadata, or None. A bad one is removed, with a warning."""
        path = self.path_for(key)
        if not path.exists():
            return None
        try:
            meta = _artifact.verify(path)
            for field, value in expect.items():
                if meta.get(field) != value:
                    raise ArtifactError(f"{path}: artifact was built for a different {field}")
        except ArtifactError as e:
            self.discard(path, e.one_line())
            return None
        return path, meta

    def discard(self, path: Path, reason: str) -> None:
        warnings.warn(f"edgewasm: discarding cached artifact: {reason}; it will be rebuilt", CacheWarning, stacklevel=3)
        with contextlib.suppress(OSError):
            path.unlink()

    def store(self, key: str, elf: bytes | bytearray, meta: dict[str, Any]) -> Path:
        path = self.path_for(key)
        _artifact.write_atomic(path, elf, meta)
        return path

    @contextlib.contextmanager
    def compiling(self, key: str) -> Iterator[None]:
        """Hold a per-key lock while compiling, so concurrent processes compile a module once."""
        try:
            import fcntl
        except ImportError:  # not POSIX: correctness does not depend on the lock
            yield
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / f".{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def entries(self) -> list[Entry]:
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.glob(f"*{SUFFIX}")):
            try:
                meta = _artifact.read_meta(path)
            except ArtifactError:
                meta = {}
            out.append(Entry(path, path.stat().st_size, meta))
        return out

    def clear(self) -> int:
        """Remove every entry (and stale temporary and lock files); return how many artifacts went."""
        if not self.dir.is_dir():
            return 0
        count = 0
        for path in self.dir.iterdir():
            if path.suffix == SUFFIX or path.name.endswith((".tmp", ".lock")):
                with contextlib.suppress(OSError):
                    path.unlink()
                    count += path.suffix == SUFFIX
        return count
