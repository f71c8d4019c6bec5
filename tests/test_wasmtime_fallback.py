"""The suite's core on wasmtime-py's public-API fallback (`edgewasm._wasmtime.public`).

The fallback is what runs when a wasmtime-py release moved an internal the fast route needs; it must then do all a
guest needs, not merely import. A child pytest runs, with EDGEWASM_WASMTIME_PUBLIC=1, the test files that go
through every use edgewasm makes of wasmtime: the infer ABI and its checks (calls, guest memory), guests with fuel,
memory limits and traps, isolation, timeouts (the Python-thread ticker), and the WASI-NN host functions with their
deadlines. The child proves it ran on the fallback, and any failure there fails this test with its summary.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgewasm import _wasmtime

TESTS = Path(__file__).resolve().parent
#: The files of the core run (together they touch every function of `_wasmtime`).
CORE = (
    "test_abi.py",
    "test_guest.py",
    "test_isolation.py",
    "test_timeout.py",
    "test_nn_abi.py",
    "test_nn_deadline.py",
    "test_wasmtime_fallback.py",  # the probe below, in the child
)


def test_the_core_suite_passes_on_the_public_api_fallback(tmp_path: Path) -> None:
    if os.environ.get(_wasmtime.PUBLIC_ENV):
        return  # we are the child (see test_the_child_runs_on_the_fallback)
    env = dict(os.environ, **{_wasmtime.PUBLIC_ENV: "1"})
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    out = subprocess.run(
        [*cmd, *(str(TESTS / f) for f in CORE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    tail = "\n".join(out.stdout.splitlines()[-40:])
    assert out.returncode == 0, f"the core suite fails on wasmtime-py's public API:\n{tail}\n{out.stderr[-2000:]}"
    assert " passed" in tail, tail


def test_the_child_runs_on_the_fallback() -> None:
    """In the child: the environment variable chose the public route (else the core run proved nothing)."""
    route, why = _wasmtime.ROUTE, _wasmtime.FALLBACK
    if os.environ.get(_wasmtime.PUBLIC_ENV):
        assert route == "public" and not _wasmtime.POOLING and not _wasmtime.GIL_FREE_TICKER
        assert why == f"{_wasmtime.PUBLIC_ENV} is set"
    else:  # the fast route wherever its check passes
        assert route == ("public" if _wasmtime.missing() else "private")
