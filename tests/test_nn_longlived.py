"""A long-lived host: hundreds of WASI-NN guests loaded, used and closed leave nothing behind.

Before, every WASI-NN `Guest` leaked its `WasiNN` and its callbacks (a module-level keep-alive list): host RSS grew
by ~5.6 MiB per 300 cycles, forever. Now the callbacks are freed by wasmtime's finalizer, `close()` releases the
WASI-NN state, and the preload cache is bounded. Checked exactly (live definitions, collected objects) and, with
a generous bound, on RSS and open descriptors after a warm-up.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

import edgewasm
from _model_fixtures import model_entry, model_store  # noqa: F401  (fixtures)
from _nn_script import GUEST, INIT, LOAD, ONNX, Script
from _nn_support import WASM, tiny_onnx
from edgewasm import _wasmtime
from edgewasm.nn import _graphcache

WARMUP, CYCLES = 50, 300
#: RSS may wander with the allocator; the leak was ~5.5 MiB over these 250 cycles.
RSS_SLACK_MIB = 3.0


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


#: Set in the child process that runs an RSS test on its own (see `_in_own_process`).
_CHILD = "EDGEWASM_LONGLIVED_CHILD"


def _in_own_process(request: pytest.FixtureRequest) -> bool:
    """Run this test again in a fresh interpreter, which is what a long-lived host is, and say so; False when this
    already is that interpreter. RSS over cycles is a property of one process's history: after hundreds of other
    tests in the same process, the allocator's state alone moved it by more than the bound."""
    if os.environ.get(_CHILD) == "1":
        return False
    root = Path(__file__).resolve().parent.parent
    node = f"tests/{Path(__file__).name}::{request.node.name}"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node], cwd=root,
                          env={**os.environ, _CHILD: "1"}, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return True


def _cycles(one: object) -> tuple[float, int]:
    """RSS (MiB) and descriptor growth from after the warm-up to the end."""
    assert callable(one)
    for _ in range(WARMUP):
        one()
    gc.collect()
    rss, fds = _rss_mib(), _fds()
    for _ in range(CYCLES - WARMUP):
        one()
    gc.collect()
    return _rss_mib() - rss, _fds() - fds


def test_classifier_guests_with_a_preload(
    request: pytest.FixtureRequest,
    model_store: Path,  # noqa: F811
    model_entry: Path,  # noqa: F811
) -> None:
    if _in_own_process(request):
        return
    spec = f"efficientnet-lite0:ONNX:CPU:{model_entry / 'model.onnx'}"
    tensor = np.zeros((224, 224, 3), np.float32)
    gc.collect()  # what earlier tests left for the cycle collector
    defined = _wasmtime.live_host_functions()

    def one() -> None:
        guest = edgewasm.load(WASM / "wasinn_classifier.wasm", models=str(model_store), nn_preload=[spec])
        assert "label" in guest.infer({"tensor": tensor})
        guest.close()

    rss, fds = _cycles(one)
    assert _wasmtime.live_host_functions() <= defined  # every guest's nine callbacks are gone
    assert fds <= 0, f"{fds} descriptors more after {CYCLES - WARMUP} cycles"
    assert rss < RSS_SLACK_MIB, f"RSS grew {rss:.1f} MiB over {CYCLES - WARMUP} cycles"


def test_guests_loading_models_from_their_memory(request: pytest.FixtureRequest) -> None:
    if _in_own_process(request):
        return
    s = Script()
    arr, n = s.builders([tiny_onnx()])
    s.call(LOAD, arr, n, ONNX, 0, s.space(4))
    s.call(INIT, 0, s.space(4))
    stdin = s.encode()
    gc.collect()  # what earlier tests left for the cycle collector
    defined = _wasmtime.live_host_functions()

    def one() -> None:
        guest = edgewasm.load(GUEST)
        assert s.decode(guest.run(stdin).stdout)[0] == [0, 0]
        guest.close()

    rss, fds = _cycles(one)
    assert _wasmtime.live_host_functions() <= defined
    assert fds <= 0 and rss < RSS_SLACK_MIB, (rss, fds)


def test_a_dropped_guest_frees_its_wasinn() -> None:
    guest = edgewasm.load(GUEST)
    nn = weakref.ref(guest.nn)
    guest.close()
    del guest
    gc.collect()
    assert nn() is None


def test_close_releases_wasi_nn_state_at_once(
    model_store: Path,  # noqa: F811
    model_entry: Path,  # noqa: F811
) -> None:
    """The guest object may live on (a host that keeps it around); its graphs and contexts go at close()."""
    spec = f"efficientnet-lite0:ONNX:CPU:{model_entry / 'model.onnx'}"
    guest = edgewasm.load(WASM / "wasinn_classifier.wasm", models=str(model_store), nn_preload=[spec])
    guest.infer({"tensor": np.zeros((224, 224, 3), np.float32)})
    assert guest.nn.live_stores == 1  # the reactor's instance holds a graph and a context
    guest.close()
    assert guest.nn.live_stores == 0


def test_the_preload_cache_is_bounded(tmp_path: Path) -> None:
    blob = tiny_onnx()
    specs = []
    for i in range(_graphcache.MAX_ENTRIES + 8):
        path = tmp_path / f"m{i}.onnx"
        path.write_bytes(blob)
        specs.append(f"m{i}:ONNX:CPU:{path}")
    s = Script()
    for i in range(len(specs)):
        name = f"m{i}".encode()
        s.call(1, s.put(name), len(name), s.space(4))
    with edgewasm.Runtime() as runtime, runtime.load(GUEST, nn_preload=specs) as guest:
        results, _ = s.decode(guest.run(s.encode()).stdout)
        assert results == [0] * len(specs)
        assert runtime.graphs.cached() == _graphcache.MAX_ENTRIES
    assert runtime.graphs.cached() == 0  # closing the runtime dropped them
