"""Host memory a guest spends through WASI-NN is budgeted (`NnLimits`), per instance, with safe defaults.

Before, `memory_limit` bounded only the guest: 64 graphs a store, no bound on model or output bytes, and a guest
with 64 MiB of memory drove the host past 4 GiB. Each budget here is driven past its end by a real guest
(wasm/nn_script.wat) with real models; the guest gets its errno, the host logs one debug line naming the option,
and the guest keeps working once it lets go of something.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgewasm
from _nn_script import (
    COMPUTE,
    F32,
    FINALIZE,
    GET_OUTPUT,
    GUEST,
    INIT,
    LOAD,
    ONNX,
    SET_INPUT,
    TFLITE,
    UNLOAD,
    Script,
)
from _nn_support import tiny_onnx
from edgewasm.nn import NnErrno, NnLimits

E = NnErrno
ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def big_output_onnx(n_floats: int) -> bytes:
    """y = W + x: a model of about 4*n bytes whose output (4*n bytes) the host keeps until get_output."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("W", TensorProto.FLOAT, [n_floats], np.ones(n_floats, np.float32).tobytes(), raw=True)
    g = helper.make_graph(
        [helper.make_node("Add", ["W", "x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n_floats])],
        [w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return bytes(m.SerializeToString())


def _run(script: Script, **kw: object) -> list[int]:
    with edgewasm.load(GUEST, **kw) as guest:  # type: ignore[arg-type]
        results, _ = script.decode(guest.run(script.encode()).stdout)
    return results


def test_live_graphs_are_bounded_and_unload_frees_one() -> None:
    s = Script()
    arr, n = s.builders([tiny_onnx()])
    out = s.space(4)
    for _ in range(5):
        s.call(LOAD, arr, n, ONNX, 0, out)
    s.call(UNLOAD, 0)
    s.call(LOAD, arr, n, ONNX, 0, out)
    assert _run(s) == [0, 0, 0, 0, E.RUNTIME_ERROR, 0, 0]  # the default: 4 graphs from guest memory


def test_a_context_keeps_its_graph_charged_after_unload() -> None:
    """unload + init loops cannot pile up sessions: a graph stays charged while a context made from it lives."""
    s = Script()
    arr, n = s.builders([tiny_onnx()])
    out = s.space(4)
    for g in range(3):
        s.call(LOAD, arr, n, ONNX, 0, out)
        s.call(INIT, g, out)
        s.call(UNLOAD, g)
    assert _run(s, nn_limits=NnLimits(graphs=2)) == [0, 0, 0, 0, 0, 0, E.RUNTIME_ERROR, E.INVALID_ARGUMENT, 1]
    # (the third load is refused; init and unload of the graph handle it never got fail as bad handles)


def test_model_bytes_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """Past the default model budget (64 MiB of live models) a load is too_large, before any session is built."""
    blob = big_output_onnx(9 * MiB // 4 * 4)  # ~36 MiB: one fits, two do not
    s = Script()
    arr, n = s.builders([blob])
    out = s.space(4)
    s.call(LOAD, arr, n, ONNX, 0, out)
    s.call(LOAD, arr, n, ONNX, 0, out)
    s.call(UNLOAD, 0)
    s.call(LOAD, arr, n, ONNX, 0, out)
    with caplog.at_level(logging.DEBUG, logger="edgewasm.nn"):
        assert _run(s) == [0, E.TOO_LARGE, 0, 0]
    refusals = [r.getMessage() for r in caplog.records if "model budget" in r.getMessage()]
    assert len(refusals) == 1 and "--nn-limit model-bytes=" in refusals[0]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _run(s, nn_limits=NnLimits(model_bytes=128 * MiB)) == [0, 0, 0, 0]  # raised: both fit


def _compute_contexts(s: Script, k: int, n_floats: int) -> None:
    arr, n = s.builders([big_output_onnx(n_floats)])
    x = s.tensor([1], F32, np.ones(1, np.float32).tobytes())
    out = s.space(4)
    s.call(LOAD, arr, n, ONNX, 0, out)
    for c in range(k):
        s.call(INIT, 0, out)
        s.call(SET_INPUT, c, 0, x)
        s.call(COMPUTE, c)


def test_outputs_held_for_the_guest_are_bounded() -> None:
    """Each compute leaves 4 MiB of output on the host; the budget allows two, a third is too_large (and holds
    nothing); finalizing a context gives its share back."""
    s = Script()
    _compute_contexts(s, 3, MiB)
    s.call(FINALIZE, 0)
    s.call(COMPUTE, 2)
    buf, written = s.space(4 * MiB), s.space(4)
    s.call(GET_OUTPUT, 2, 0, buf, 4 * MiB, written)
    results = _run(s, nn_limits=NnLimits(tensor_bytes=10 * MiB))
    assert results == [0, 0, 0, 0, 0, 0, 0, 0, 0, E.TOO_LARGE, 0, 0, 0]


def test_copied_inputs_count_as_held_tensors(tmp_path: Path) -> None:
    from _nn_support import RawGuest
    from edgewasm.nn import WasiNN

    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_onnx())
    nn = WasiNN([f"default:ONNX:CPU:{model}"], copy_inputs=True, limits=NnLimits(tensor_bytes=20))
    g = RawGuest(nn, "nn_probe.wat")
    g.write(b"default", 0)
    assert g.call("load_by_name", 0, 7, 0x100) == 0
    for _ in range(2):
        assert g.call("init_execution_context", 0, 0x104) == 0
    g.write(np.array([1, 4], "<u4").tobytes(), 0x200)
    g.write(np.arange(4, dtype=np.float32).tobytes(), 0x1000)
    g.write(np.array([0x200, 2, 1, 0x1000, 16], "<u4").tobytes(), 0x300)
    assert g.call("set_input", 0, 0, 0x300) == 0  # 16 bytes copied
    assert g.call("set_input", 1, 0, 0x300) == E.TOO_LARGE  # 32 > 20
    assert g.call("set_input", 0, 0, 0x300) == 0  # replacing its own input is not more
    assert g.call("finalize_execution_context", 0) == 0
    assert g.call("set_input", 1, 0, 0x300) == 0


def test_litert_contexts_are_charged_for_their_packed_weights() -> None:
    """LiteRT's XNNPACK packs each op's constant inputs per interpreter (a context): a model whose ops share one
    4 MiB weight costs that once per op and context. The second context is past the default model budget."""
    pytest.importorskip("ai_edge_litert")
    from _nn_slow import slow_tflite

    s = Script()
    arr, n = s.builders([slow_tflite(10)])  # 4.9 MB of flatbuffer, ~45 MiB packed per interpreter
    out = s.space(4)
    s.call(LOAD, arr, n, TFLITE, 0, out)
    s.call(INIT, 0, out)
    s.call(INIT, 0, out)
    s.call(FINALIZE, 0)
    s.call(INIT, 0, out)
    assert _run(s) == [0, 0, E.TOO_LARGE, 0, 0]


def test_the_cli_raises_a_budget_with_nn_limit(tmp_path: Path) -> None:
    s = Script()
    arr, n = s.builders([tiny_onnx()])
    out = s.space(4)
    for _ in range(6):
        s.call(LOAD, arr, n, ONNX, 0, out)

    def run(*extra: str) -> subprocess.CompletedProcess[bytes]:
        cmd = [sys.executable, "-m", "edgewasm", "run", str(GUEST), *extra]
        return subprocess.run(cmd, input=s.encode(), capture_output=True, timeout=300, check=False)

    assert s.decode(run().stdout)[0] == [0, 0, 0, 0, E.RUNTIME_ERROR, E.RUNTIME_ERROR]
    assert s.decode(run("--nn-limit", "graphs=5").stdout)[0] == [0, 0, 0, 0, 0, E.RUNTIME_ERROR]
    bad = run("--nn-limit", "graph=5")
    assert bad.returncode == 2 and b"--nn-limit" in bad.stderr and not bad.stdout


@pytest.mark.parametrize(
    ("items", "want"),
    [
        (["graphs=8"], NnLimits(graphs=8)),
        (["model-bytes=512MiB", "tensor_bytes=1GiB"], NnLimits(model_bytes=512 * MiB, tensor_bytes=1 << 30)),
        (["contexts=1"], NnLimits(contexts=1)),
    ],
)
def test_nn_limits_parse(items: list[str], want: NnLimits) -> None:
    assert NnLimits.parse(items) == want


@pytest.mark.parametrize("item", ["graphs", "graphs=x", "nope=1", "model-bytes=lots", "graphs=-1"])
def test_nn_limits_parse_refuses(item: str) -> None:
    with pytest.raises(ValueError, match="--nn-limit"):
        NnLimits.parse([item])


def test_adversarial_guest_host_rss_is_bounded() -> None:
    """The measurement of bench/nn_host_memory.py as a bound: a 64 MiB guest loading a 16 MiB model as often as
    it can and computing on every context. Before the budgets it got 16 graphs and 32 outputs held (1.3 GiB of
    host RSS at this size, 4.1 GiB at 64 graphs); now its loads stop at the model budget."""
    cmd = [sys.executable, str(ROOT / "bench" / "nn_host_memory.py"), "--graphs", "16", "--contexts", "2"]
    figures = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout)
    assert figures["loads_ok"] <= 4 and figures["computes_ok"] <= 4
    assert figures["rss_growth_mib"] < 700, figures  # generous: measured ~300
