"""The test session never writes into the user's real HOME, and edgewasm never lets OpenVINO write `~/intel`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REAL_HOME, TEST_HOME, require

ROOT = Path(__file__).resolve().parent.parent
#: What the suite (or the libraries it drives) would write under a HOME: caches, data, telemetry, font caches.
WATCHED = [".cache/edgewasm", ".local/share/edgewasm", "intel", ".cache/wasmtime", ".cache/matplotlib", ".hypothesis"]


def _snapshot(home: Path) -> dict[str, list[tuple[str, int]]]:
    out = {}
    for rel in WATCHED:
        root = home / rel
        files = root.rglob("*") if root.exists() else []
        out[rel] = sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in files)
    return out


#: The real HOME as it was when this module was imported (collection, before any test ran).
AT_START = _snapshot(REAL_HOME)


def test_the_session_runs_in_a_temporary_home() -> None:
    assert Path(os.environ["HOME"]) == TEST_HOME != REAL_HOME
    for name in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        assert Path(os.environ[name]).is_relative_to(TEST_HOME)
    assert Path(os.path.expanduser("~")) == TEST_HOME


def test_the_real_home_is_untouched(wasm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A subprocess that uses every default location (the artifact cache, the model store, wasmtime's own cache)
    writes into the session's HOME; the real HOME is as the session found it."""
    monkeypatch.delenv("EDGEWASM_CACHE_DIR")  # the default cache, as a user has it
    script = (
        "import edgewasm, wasmtime\n"
        f"edgewasm.load({str(wasm_dir / 'echo.wat')!r}).infer({{'x': 1}})\n"
        "cfg = wasmtime.Config(); cfg.cache = True\n"
        f"wasmtime.Module.from_file(wasmtime.Engine(cfg), {str(wasm_dir / 'cat.wat')!r})\n"
        "from edgewasm.models import list_models; list_models()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert list((TEST_HOME / ".cache" / "edgewasm" / "artifacts").glob("*.cwasm"))
    assert _snapshot(REAL_HOME) == AT_START


def test_openvino_writes_no_telemetry_into_home(tmp_path: Path) -> None:
    """`import openvino` alone writes a client id into ~/intel; edgewasm imports it with its telemetry stubbed,
    for the conversion and for the WASI-NN backend."""
    require("openvino")
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    env.pop("CI", None)  # OpenVINO stays quiet in CI; a user's machine is not CI
    bare = subprocess.run([sys.executable, "-c", "import openvino"], env=env, timeout=120)
    assert bare.returncode == 0 and (home / "intel").exists(), "the premise: plain openvino writes ~/intel"
    shutil.rmtree(home / "intel")
    code = (
        "from edgewasm.models import _convert; assert _convert.openvino_available()\n"
        "from edgewasm.nn.backends import openvino as backend\n"
        "import openvino, openvino_telemetry\n"  # a later import of the package itself still works
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (home / "intel").exists()
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "edgewasm", "models", "install", "--store", str(store)], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "is missing" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    assert (store / "efficientnet-lite0" / "openvino" / "model.xml").exists()
    assert not (home / "intel").exists()
