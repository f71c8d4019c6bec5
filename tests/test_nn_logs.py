"""A guest cannot flood the host's log: its mistakes are debug lines, and unexpected host errors are rate-limited.

The reported flood: `set_input` with dims [2^32-1, 2^32-1, 0] on a model with dynamic dims passed validation (the
element count is 0, and so is the data length) and each `compute` then logged an ERROR traceback. Shapes are now
validated in full at `set_input`: rank, zero dims, element count overflow, the model's spec.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest

import edgewasm
from _nn_script import COMPUTE, F32, GUEST, INIT, LOAD_BY_NAME, SET_INPUT, Script
from _nn_support import RawGuest
from edgewasm.nn import NnErrno, WasiNN
from edgewasm.nn import _functions as nn_host

E = NnErrno
CALLS = 1000


def dynamic_onnx() -> bytes:
    """y = x + 1 with x f32 of rank 3 and every dim dynamic."""
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["a", "b", "c"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b", "c"])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return bytes(m.SerializeToString())


@pytest.fixture
def dynamic_model(tmp_path: Path) -> Path:
    path = tmp_path / "dynamic.onnx"
    path.write_bytes(dynamic_onnx())
    return path


@pytest.fixture(autouse=True)
def fresh_log_limits() -> None:
    nn_host._ratelog.reset()


BAD_DIMS = [
    [0xFFFFFFFF, 0xFFFFFFFF, 0],  # the report: element count 0, and a reshape the host cannot make
    [0, 4, 4],  # a zero dim the model does not have
    [1 << 16, 1 << 16, 2],  # 2^33 elements: more than a u32 range can hold
    [1, 2],  # rank 2 for a rank-3 input
    [1, 1, 1, 1, 1, 1, 1, 1, 1],  # rank 9
]


def test_a_thousand_bad_shapes_log_nothing_above_debug(dynamic_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = Script()
    s.call(LOAD_BY_NAME, s.put(b"default"), 7, s.space(4))
    s.call(INIT, 0, s.space(4))
    tensors = [s.tensor(d, F32, b"") for d in BAD_DIMS]
    for i in range(CALLS):
        s.call(SET_INPUT, 0, 0, tensors[i % len(tensors)])
        s.call(COMPUTE, 0)
    good = s.tensor([1, 2, 2], F32, np.arange(4, dtype=np.float32).tobytes())
    s.call(SET_INPUT, 0, 0, good)
    s.call(COMPUTE, 0)
    spec = f"default:ONNX:CPU:{dynamic_model}"
    with edgewasm.load(GUEST, nn_preload=[spec]) as guest, caplog.at_level(logging.DEBUG, logger="edgewasm.nn"):
        results, _ = s.decode(guest.run(s.encode()).stdout)
    assert results[:2] == [0, 0]
    assert set(results[2:-2:2]) == {E.INVALID_ARGUMENT}  # every bad set_input refused...
    assert set(results[3:-2:2]) == {E.INVALID_ARGUMENT}  # ...so compute has no input
    assert results[-2:] == [0, 0]  # and the guest is served after them
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not loud, loud[:3]


def test_an_unexpected_host_error_is_logged_once_a_minute(
    dynamic_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A host bug a guest can trigger at will (injected here in the backend) logs one traceback, not one per call."""
    nn = WasiNN([f"default:ONNX:CPU:{dynamic_model}"])
    g = RawGuest(nn, "nn_probe.wat")
    g.write(b"default", 0)
    assert g.call("load_by_name", 0, 7, 0x100) == 0
    assert g.call("init_execution_context", 0, 0x104) == 0
    g.write(struct.pack("<3I", 1, 2, 2), 0x200)
    g.write(struct.pack("<5I", 0x200, 3, 1, 0x1000, 16), 0x300)
    assert g.call("set_input", 0, 0, 0x300) == 0

    def bug(_: object) -> list[np.ndarray]:
        raise KeyError("a host bug")

    from edgewasm.nn.backends.onnx import OnnxContext  # onnxruntime: the fixtures require it

    monkeypatch.setattr(OnnxContext, "compute", bug)  # the backend's own code, where such a bug would be
    with caplog.at_level(logging.DEBUG, logger="edgewasm.nn"):
        assert {g.call("compute", 0) for _ in range(CALLS)} == {E.RUNTIME_ERROR}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info and "unexpected host error" in errors[0].getMessage()
