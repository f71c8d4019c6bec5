"""Shared helpers for the WASI-NN tests (no tests here): small real models built in memory, and a raw
wasmtime-py harness that links a guest against `WasiNN.define` only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import wasmtime

from edgewasm.nn import WasiNN, calling

WASM = Path(__file__).resolve().parent.parent / "wasm"

# The tiny ONNX model: y = x @ W + b, x f32 [1,4], y f32 [1,3].
TINY_W = (np.arange(12, dtype=np.float32).reshape(4, 3) - 5.0) / 4.0
TINY_B = np.array([1.0, -2.0, 0.5], dtype=np.float32)


def tiny_onnx() -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [
            helper.make_tensor("W", TensorProto.FLOAT, [4, 3], TINY_W.ravel()),
            helper.make_tensor("b", TensorProto.FLOAT, [3], TINY_B),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def tiny_expected(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).reshape(1, 4) @ TINY_W + TINY_B


def tiny_tflite(input_dtype: str, variant: str = "") -> tuple[bytes, np.ndarray, np.ndarray]:
    """A real TFLite flatbuffer built with LiteRT's own schema (no TensorFlow):
    x [1,4] (float32, or uint8 cast to float32) -> FULLY_CONNECTED(W [3,4], b [3]) -> y f32 [1,3].
    variant "custom_op": the FC is a custom op (a Flex op's code); "external_buffer": W's data is an external
    buffer in a named file."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    b = np.array([1, 2, 3], np.float32)
    buffers: list[Any] = [s.BufferT()]
    tensors: list[Any] = []
    codes: list[Any] = []
    ops: list[Any] = []

    def tensor(name: str, shape: list[int], ttype: int, data: np.ndarray | None = None) -> int:
        buf = s.BufferT()
        buf.data = None if data is None else np.frombuffer(data.tobytes(), np.uint8)
        buffers.append(buf)
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), np.array(shape, np.int32), ttype, len(buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    def op(code: int, inputs: list[int], outputs: list[int], opt_type: int, opts: Any) -> None:
        c = s.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
        if code == s.BuiltinOperator.CUSTOM:
            c.customCode = b"FlexReadFile"
        codes.append(c)
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = len(codes) - 1, np.array(inputs, np.int32), np.array(outputs, np.int32)
        o.builtinOptionsType, o.builtinOptions = opt_type, opts
        ops.append(o)

    u8 = input_dtype == "uint8"
    x = tensor("x", [1, 4], s.TensorType.UINT8 if u8 else s.TensorType.FLOAT32)
    src = x
    if u8:
        src = tensor("xf", [1, 4], s.TensorType.FLOAT32)
        cast = s.CastOptionsT()
        cast.inDataType, cast.outDataType = s.TensorType.UINT8, s.TensorType.FLOAT32
        op(s.BuiltinOperator.CAST, [x], [src], s.BuiltinOptions.CastOptions, cast)
    wi = tensor("W", [3, 4], s.TensorType.FLOAT32, w)
    bi = tensor("b", [3], s.TensorType.FLOAT32, b)
    y = tensor("y", [1, 3], s.TensorType.FLOAT32)
    fc = s.FullyConnectedOptionsT()
    fc_code = s.BuiltinOperator.CUSTOM if variant == "custom_op" else s.BuiltinOperator.FULLY_CONNECTED
    op(fc_code, [src, wi, bi], [y], s.BuiltinOptions.FullyConnectedOptions, fc)
    sg = s.SubGraphT()
    sg.tensors, sg.operators, sg.name = tensors, ops, b"main"
    sg.inputs, sg.outputs = np.array([x], np.int32), np.array([y], np.int32)
    m = s.ModelT()
    m.version, m.subgraphs, m.buffers, m.operatorCodes = 3, [sg], buffers, codes
    if variant == "external_buffer":
        group, ext = s.ExternalBufferGroupT(), s.ExternalBufferT()
        group.name = b"secret.bin"
        ext.id, ext.group, ext.offset, ext.length = 1, 0, 0, w.nbytes
        m.externalBufferGroups, m.externalBuffers = [group], [ext]
        tensors[wi].buffer, tensors[wi].externalBuffer = 0, 1
    fb = flatbuffers.Builder(1024)
    fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
    return bytes(fb.Output()), w, b


class RawGuest:
    """A module instantiated with wasmtime-py, `wasi_ephemeral_nn` from `nn.define` and nothing else."""

    def __init__(self, nn: WasiNN, wat: str, engine: wasmtime.Engine | None = None) -> None:
        self.engine = engine or wasmtime.Engine()
        self.store = wasmtime.Store(self.engine)
        linker = wasmtime.Linker(self.engine)
        nn.define(linker)
        module = wasmtime.Module.from_file(self.engine, str(WASM / wat))
        self.instance = linker.instantiate(self.store, module)
        self.exports = self.instance.exports(self.store)

    def call(self, name: str, *args: int) -> Any:
        with calling(self.store):  # what a host with its own linker does (needed on the public-API fallback)
            return self.exports[name](self.store, *args)

    def read(self, start: int, stop: int) -> bytes:
        return bytes(self.exports["memory"].read(self.store, start, stop))

    def write(self, data: bytes, start: int) -> None:
        self.exports["memory"].write(self.store, bytearray(data), start)
