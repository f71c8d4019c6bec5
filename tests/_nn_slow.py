"""Real models that take seconds to compute (no tests here), for the deadline tests and bench/nn_deadline.py.

All take x f32 [1,3,224,224] (the classifier's input) and answer y f32 [1,1000]: x is seen as [672,224] and goes
through a chain of MatMuls (FULLY_CONNECTED for TFLite) of width 1024, so a backend has many kernels to run and
a cancel between them has something to stop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ROWS, COLS, WIDTH = 672, 224, 1024
INPUT_DIMS = (1, 3, 224, 224)


def _weights(rows: int, cols: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, cols)) / np.sqrt(rows)).astype(np.float32)


def slow_onnx(nodes: int) -> bytes:
    from onnx import TensorProto, helper

    inits = [
        helper.make_tensor("shape", TensorProto.INT64, [2], [ROWS, COLS]),
        helper.make_tensor("W0", TensorProto.FLOAT, [COLS, WIDTH], _weights(COLS, WIDTH, 0).tobytes(), raw=True),
        helper.make_tensor("W", TensorProto.FLOAT, [WIDTH, WIDTH], _weights(WIDTH, WIDTH, 1).tobytes(), raw=True),
        helper.make_tensor("axes", TensorProto.INT64, [1], [0]),
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [1000]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
    ]
    ops = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("MatMul", ["r", "W0"], ["t0"])]
    for i in range(nodes):
        ops.append(helper.make_node("MatMul", [f"t{i}", "W"], [f"t{i + 1}"]))
    ops.append(helper.make_node("ReduceMean", [f"t{nodes}", "axes"], ["m"], keepdims=1))
    ops.append(helper.make_node("Slice", ["m", "starts", "ends", "axis1"], ["y"]))
    graph = helper.make_graph(
        ops,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(INPUT_DIMS))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def slow_openvino(nodes: int, directory: Path) -> tuple[Path, Path]:
    """The ONNX model above as OpenVINO IR (xml, bin) in `directory`."""
    import openvino as ov

    onnx_path = directory / "slow.onnx"
    onnx_path.write_bytes(slow_onnx(nodes))
    xml = directory / "slow.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml, xml.with_suffix(".bin")


def slow_tflite(nodes: int) -> bytes:
    """x f32 [672, 224] -> FULLY_CONNECTED to [672, 1024] -> `nodes` x FULLY_CONNECTED [1024, 1024]."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    buffers: list[Any] = [s.BufferT()]
    tensors: list[Any] = []

    def tensor(name: str, shape: tuple[int, ...], data: np.ndarray | None = None) -> int:
        buf = s.BufferT()
        buf.data = None if data is None else np.frombuffer(data.tobytes(), np.uint8)
        buffers.append(buf)
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = (
            name.encode(),
            np.array(shape, np.int32),
            s.TensorType.FLOAT32,
            len(buffers) - 1,
        )
        tensors.append(t)
        return len(tensors) - 1

    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    x = tensor("x", (ROWS, COLS))
    w0 = tensor("W0", (WIDTH, COLS), _weights(WIDTH, COLS, 0))
    w = tensor("W", (WIDTH, WIDTH), _weights(WIDTH, WIDTH, 1))
    b = tensor("b", (WIDTH,), np.zeros(WIDTH, np.float32))
    ops = []
    prev, weights = x, w0
    for i in range(nodes + 1):
        out = tensor(f"t{i}", (ROWS, WIDTH))
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = 0, np.array([prev, weights, b], np.int32), np.array([out], np.int32)
        o.builtinOptionsType, o.builtinOptions = s.BuiltinOptions.FullyConnectedOptions, s.FullyConnectedOptionsT()
        ops.append(o)
        prev, weights = out, w
    sg = s.SubGraphT()
    sg.tensors, sg.operators, sg.name = tensors, ops, b"main"
    sg.inputs, sg.outputs = np.array([x], np.int32), np.array([prev], np.int32)
    m = s.ModelT()
    m.version, m.subgraphs, m.buffers, m.operatorCodes = 3, [sg], buffers, [code]
    fb = flatbuffers.Builder(1 << 20)
    fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output())
