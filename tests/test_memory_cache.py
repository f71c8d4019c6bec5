"""The in-memory module cache in a long-lived host: bounded (least recently used goes first), so that loading many
distinct modules never runs the process out of file descriptors or memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import edgewasm
from edgewasm import _loader

#: A minimal ABI v1 echo guest; `{i}` makes each one a distinct module (its data segment differs).
DISTINCT = (
    '(module (memory (export "memory") 1) (data (i32.const 0) "module {i}")'
    ' (func (export "edge_alloc") (param i32) (result i32) i32.const 1024)'
    ' (func (export "edge_free") (param i32 i32))'
    ' (func (export "infer") (param i32 i32) (result i64)'
    "  local.get 0 i64.extend_i32_u i64.const 32 i64.shl local.get 1 i64.extend_i32_u i64.or))"
)


def test_least_recently_used_goes_first(wasm_dir: Path, runtime: edgewasm.Runtime) -> None:
    runtime.modules.limit = 2
    a, b, c = (DISTINCT.format(i=i).encode() for i in range(3))
    for module in (a, b):
        assert edgewasm.load(module).origin == "compiled"
    assert edgewasm.load(a).origin == "memory"  # a is now the most recent
    edgewasm.load(c)  # evicts b
    assert len(runtime.modules) == 2
    assert edgewasm.load(a).origin == "memory"
    assert edgewasm.load(b).origin == "disk"
    path = wasm_dir / "echo.wat"
    assert edgewasm.load(path).origin in ("compiled", "disk")
    assert edgewasm.load(path).origin == "memory"  # found by file identity


_MANY_UNDER_ULIMIT = """
import os, resource, sys, tempfile
import edgewasm
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
for i in range(int(sys.argv[1])):
    guest = edgewasm.load(sys.argv[2].format(i=i).encode(), timeout=5.0, cache=sys.argv[3] == "disk")
    assert guest.infer([i]) == [i]
    guest.close()
    del guest
with tempfile.TemporaryFile() as f:  # and the process can still open files
    f.write(b"ok")
print("ok")
"""


@pytest.mark.parametrize("cache", ["disk", "none"])
def test_hundreds_of_distinct_modules_under_ulimit_n_64(cache: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _MANY_UNDER_ULIMIT, "300", DISTINCT, cache],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


_CYCLES = """
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
import edgewasm  # keeps 1024 // 8 = 128 modules

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

def fds():
    return len(os.listdir("/proc/self/fd"))

marks = {}
for i in range(int(sys.argv[1])):
    module = sys.argv[2].format(i=i).encode() if sys.argv[3] == "distinct" else sys.argv[4]
    with edgewasm.load(module, timeout=5.0) as guest:
        assert guest.infer({"i": i}) == {"i": i}
    if i + 1 in (200, int(sys.argv[1])):
        marks[i + 1] = {"rss_kib": rss_kib(), "fds": fds()}
print(json.dumps(marks))
"""


@pytest.mark.parametrize("kind", ["distinct", "same"])
def test_rss_and_descriptors_stay_flat_over_hundreds_of_load_close_cycles(kind: str, wasm_dir: Path) -> None:
    """Once the cache is full (128 modules under `ulimit -n 1024`), 300 more cycles add nothing."""
    import json

    proc = subprocess.run(
        [sys.executable, "-c", _CYCLES, "500", DISTINCT, kind, str(wasm_dir / "echo.wat")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    marks = {int(k): v for k, v in json.loads(proc.stdout).items()}
    early, late = marks[200], marks[500]
    assert late["fds"] <= early["fds"] + 2, marks
    assert late["rss_kib"] - early["rss_kib"] < 16 * 1024, marks  # 300 more modules: well under 16 MiB


def test_the_default_bound_follows_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda which: (64, 64))
    assert _loader.default_memory_limit() == 8
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1 << 20, 1 << 20))
    assert _loader.default_memory_limit() == _loader.MAX_MODULES
