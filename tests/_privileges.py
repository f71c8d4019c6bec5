"""Acting as another user (`nobody`), and making a directory read-only for real: for tests of what other users can
do to us and of caches we cannot write. What needs root skips with the reason without it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

try:
    import pwd

    NOBODY = pwd.getpwnam("nobody").pw_uid
except (ImportError, KeyError):
    NOBODY = -1

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or NOBODY < 0,
    reason="needs root and a `nobody` user, to act as another user",
)


def as_nobody() -> None:
    """A `preexec_fn`: the child gives up root for good before it runs anything."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that nobody can reach too (pytest's own tmp_path is root's alone, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="edgewasm-shared-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_read_only() -> Iterator[Callable[[Path], None]]:
    """Make a directory read-only for real: a read-only bind mount as root (whom modes do not stop), else chmod."""
    mounted: list[Path] = []
    chmodded: list[Path] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(0o500)
            chmodded.append(path)
            return
        for argv in (["mount", "--bind", str(path), str(path)], ["mount", "-o", "remount,bind,ro", str(path)]):
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                if mounted or argv[1] == "-o":
                    subprocess.run(["umount", str(path)], capture_output=True, check=False)
                pytest.skip(f"cannot make a read-only mount here: {proc.stderr.strip()}")
            if argv[1] == "--bind":
                mounted.append(path)

    yield make
    for path in mounted:
        subprocess.run(["umount", str(path)], capture_output=True, check=False)
    for path in chmodded:
        path.chmod(0o700)
