"""The cache as the command line shows it: one clean warning line, a precompiled artifact only on request, and a
`cache clear` that fails when it cannot clear."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from _privileges import NOBODY, make_read_only, needs_root, shared_dir  # noqa: F401  (fixtures)

EXE = [sys.executable, "-m", "edgewasm"]


def edgewasm(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*EXE, *args], input=stdin, capture_output=True, timeout=120, env=env, check=False)


def one_line(proc: subprocess.CompletedProcess[bytes], prefix: str) -> str:
    err = proc.stderr.decode()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err and ".py:" not in err, err
    return lines[0]


def test_a_cache_others_can_write_gets_one_clean_warning_and_the_run_goes_on(wasm_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "open"
    cache.mkdir()
    cache.chmod(0o777)
    proc = edgewasm("--cache-dir", str(cache), "run", str(wasm_dir / "echo.wat"), stdin=b'{"a": 1}')
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"a": 1}
    line = one_line(proc, f"edgewasm: warning: not using the artifact cache {cache}: other users can write into it")
    assert "(hint: " in line
    assert list(cache.iterdir()) == []


def test_an_unwritable_cache_gets_one_clean_warning(wasm_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = edgewasm("--cache-dir", str(blocker / "c"), "run", str(wasm_dir / "echo.wat"), stdin=b"[1]")
    assert proc.returncode == 0 and json.loads(proc.stdout) == [1]
    one_line(proc, f"edgewasm: warning: cannot write the artifact cache {blocker / 'c'}: Not a directory")


def test_running_a_cwasm_needs_allow_precompiled(wasm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "echo.cwasm"
    made = edgewasm("compile", str(wasm_dir / "echo.wat"), "-o", str(out))
    assert made.returncode == 0 and b"--allow-precompiled" in made.stdout, made.stderr
    refused = edgewasm("run", str(out), stdin=b"[2]")
    assert refused.returncode == 2 and refused.stdout == b""
    line = one_line(refused, "edgewasm: error: ")
    assert "precompiled native code" in line and "--allow-precompiled" in line
    allowed = edgewasm("run", "--allow-precompiled", str(out), stdin=b"[2]")
    assert allowed.returncode == 0 and json.loads(allowed.stdout) == [2], allowed.stderr


def test_cache_clear_that_cannot_clear_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = edgewasm("--cache-dir", str(blocker / "c"), "cache", "clear")
    assert proc.returncode != 0 and proc.stdout == b""
    one_line(proc, f"edgewasm: error: cannot clear {blocker / 'c'}: Not a directory")


@needs_root
def test_cache_clear_refuses_another_users_directory(
    wasm_dir: Path,
    shared_dir: Path,  # noqa: F811
) -> None:
    cache = shared_dir / "theirs"
    assert edgewasm("--cache-dir", str(cache), "run", str(wasm_dir / "echo.wat"), stdin=b"1").returncode == 0
    os.chown(cache, NOBODY, NOBODY)
    proc = edgewasm("--cache-dir", str(cache), "cache", "clear")
    assert proc.returncode != 0
    one_line(proc, f"edgewasm: error: not clearing {cache}: it belongs to uid {NOBODY}")
    assert list(cache.glob("*.cwasm"))


def test_cache_clear_that_removes_nothing_fails(
    wasm_dir: Path, tmp_path: Path, make_read_only: Callable[[Path], None]  # noqa: F811
) -> None:
    cache = tmp_path / "ro"
    assert edgewasm("--cache-dir", str(cache), "run", str(wasm_dir / "echo.wat"), stdin=b"1").returncode == 0
    make_read_only(cache)
    proc = edgewasm("--cache-dir", str(cache), "cache", "clear")
    assert proc.returncode == 1 and proc.stdout == b"", proc.stderr
    line = one_line(proc, f"edgewasm: error: cannot clear {cache}: ")
    assert "(2 files left, 0 artifacts removed)" in line
    assert list(cache.glob("*.cwasm"))
