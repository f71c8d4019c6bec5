"""The timeout holds across WASI-NN host calls: a guest inside `compute` is stopped at its deadline.

Before, the epoch deadline was checked only in wasm code, so a guest that spent its time in a host call ran to the
end and returned success. Now a host function traps once the deadline has passed (the call raises GuestTimeout and
its instance is discarded), ONNX Runtime's run is terminated and OpenVINO's request cancelled at the deadline;
LiteRT cannot be cancelled, so its call stops when the host function returns. No timings are asserted: the models
take seconds, and what is checked is the outcome and, for the backends that can, that the cancel happened.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import edgewasm
from _model_fixtures import model_store  # noqa: F401  (fixture)
from _nn_script import COMPUTE, F32, GROW, GUEST, INIT, LOAD, LOAD_BY_NAME, ONNX, SET_INPUT, TFLITE, Script
from _nn_slow import COLS, INPUT_DIMS, ROWS, slow_onnx, slow_openvino, slow_tflite
from _nn_support import WASM
from edgewasm import GuestTimeout, _deadline, _wasmtime
from edgewasm.nn import NnLimits, WasiNN

NODES = 150  # several seconds of compute on each backend; the timeout is a fraction of that
TIMEOUT = 1.0


def _preloaded(spec: str) -> str:
    """A preload spec whose graph is already in the default runtime's cache (the test's, see conftest), so that a
    timed call spends its time in compute, not in building the backend's session."""
    nn = WasiNN([spec])
    nn._graphs.get_or_load(nn.preloads[0], nn._backend, nn._options)
    return spec


def _compute_script(dims: tuple[int, ...], blobs: list[bytes] | None = None, encoding: int = ONNX) -> Script:
    """load (from `blobs`) or load_by_name("default"), init, set_input(ones), compute."""
    s = Script()
    if blobs is None:
        s.call(LOAD_BY_NAME, s.put(b"default"), 7, s.space(4))
    else:
        arr, n = s.builders(blobs)
        s.call(LOAD, arr, n, encoding, 0, s.space(4))
    x = s.tensor(dims, F32, np.ones(dims, np.float32).tobytes())
    s.call(INIT, 0, s.space(4))
    s.call(SET_INPUT, 0, 0, x)
    s.call(COMPUTE, 0)
    return s


def _still_serves(guest: edgewasm.Guest) -> None:
    quick = Script()
    quick.call(GROW, 0)
    results, _ = quick.decode(guest.run(quick.encode()).stdout)
    assert results[0] > 0  # memory.grow(0): the current size in pages


def _stopped(guest: edgewasm.Guest, script: Script, caplog: pytest.LogCaptureFixture) -> GuestTimeout:
    with caplog.at_level(logging.DEBUG, logger="edgewasm.nn"), pytest.raises(GuestTimeout) as err:
        guest.run(script.encode())
    assert "wasi_ephemeral_nn." in str(err.value) and err.value.trap_code == "INTERRUPT"
    assert _deadline.remaining() is None  # the deadline ends with the call
    _still_serves(guest)
    return err.value


@pytest.mark.parametrize("fast", [True, False], ids=["unchecked-calls", "define_func"])
def test_onnxruntime_run_is_terminated_at_the_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    """Both ways of registering the host functions trap at the deadline; wasmtime-py's define_func can trap only
    by raising, and that exception must not linger in its global slot for the next caller."""
    import wasmtime

    if not fast:
        monkeypatch.setattr(_wasmtime, "define_host_function", _wasmtime.define_checked_host_function)
    model = tmp_path / "slow.onnx"
    model.write_bytes(slow_onnx(NODES))
    spec = _preloaded(f"default:ONNX:CPU:{model}")
    script = _compute_script(INPUT_DIMS)
    with edgewasm.load(GUEST, timeout=TIMEOUT, nn_preload=[spec]) as guest:
        err = _stopped(guest, script, caplog)
    assert "compute" in str(err)
    assert any("terminate flag" in r.getMessage() for r in caplog.records), "ONNX Runtime was not told to stop"
    assert wasmtime._func.LAST_EXCEPTION is None


def test_openvino_request_is_cancelled_at_the_deadline(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("openvino")
    xml, weights = slow_openvino(NODES, tmp_path)
    spec = _preloaded(f"default:OpenVINO:CPU:{xml}:{weights}")
    script = _compute_script(INPUT_DIMS)
    with edgewasm.load(GUEST, timeout=TIMEOUT, nn_preload=[spec]) as guest:
        err = _stopped(guest, script, caplog)
    assert "compute" in str(err)
    assert any("cancelled at the call's deadline" in r.getMessage() for r in caplog.records)


def test_litert_call_stops_when_the_host_function_returns(caplog: pytest.LogCaptureFixture) -> None:
    """LiteRT has no way to cancel an invoke (nor an interpreter's set-up, which packs the weights): the call stops
    as the host function returns past the deadline, in whichever of them it passed. From guest bytes, so the
    load (which builds a first interpreter) may be where it passes, too."""
    pytest.importorskip("ai_edge_litert")
    script = _compute_script((ROWS, COLS), [slow_tflite(NODES)], TFLITE)
    # each op packs the shared weight again: a context costs NODES times it, past the default model budget
    limits = NnLimits(model_bytes=2 << 30)
    with edgewasm.load(GUEST, timeout=TIMEOUT, nn_limits=limits) as guest:
        err = _stopped(guest, script, caplog)
    assert any(f"wasi_ephemeral_nn.{f}" in str(err) for f in ("load", "init_execution_context", "compute"))


def test_a_short_run_under_a_timeout_succeeds() -> None:
    """A short run under a timeout completes: a deadline that does not pass changes nothing."""
    script = _compute_script(INPUT_DIMS, [slow_onnx(4)], ONNX)
    with edgewasm.load(GUEST, timeout=60) as guest:
        results, _ = script.decode(guest.run(script.encode()).stdout)
    assert results == [0, 0, 0, 0]


def test_a_reactor_is_discarded_after_a_timeout_in_compute(
    model_store: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The classifier guest with a preload that computes for seconds: infer raises GuestTimeout, the instance is
    discarded, and the next call runs on a fresh one."""
    model = tmp_path / "slow.onnx"
    model.write_bytes(slow_onnx(NODES))
    guest = edgewasm.load(
        WASM / "wasinn_classifier.wasm",
        timeout=TIMEOUT,
        models=str(model_store),
        nn_preload=[_preloaded(f"efficientnet-lite0:ONNX:CPU:{model}")],
    )
    tensor = np.zeros((224, 224, 3), np.float32)
    try:
        first = guest._reactor()
        with pytest.raises(GuestTimeout, match=r"stopped in wasi_ephemeral_nn\.compute"):
            guest.infer({"tensor": tensor})
        assert first.broken
        with pytest.raises(GuestTimeout):
            guest.infer({"tensor": tensor})
        assert guest._local.inst is not first
    finally:
        guest.close()
