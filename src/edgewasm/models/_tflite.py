"""EfficientNet-Lite0 as a TFLite flatbuffer for LiteRT, written with LiteRT's own schema (no TensorFlow).

The graph takes the same input as the ONNX model (float32 NCHW ``[1, 3, 224, 224]``, transposed to NHWC by the
first operator) and gives float32 logits ``[1, 1000]``: TRANSPOSE, CONV_2D and DEPTHWISE_CONV_2D with TensorFlow's
own SAME padding and fused RELU6, ADD, MEAN, FULLY_CONNECTED, from the FP32 EWT tensors.

- FP32: float32 weights.
- FP16: float16 weights, each widened by a DEQUANTIZE operator (TFLite's float16 post-training format).
- INT8: the FP32 model quantized by LiteRT's own post-training quantizer (its calibration wrapper: int8
  activations per tensor, int8 weights per channel, int32 biases) on our calibration photos, with float32
  input and output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ._arch import BLOCKS, INPUT_SIZE, NUM_CLASSES
from ._quantize import need, version

F32 = npt.NDArray[np.float32]


class _Graph:
    """A flatbuffer model under construction (LiteRT's object API)."""

    def __init__(self, s: Any, fp16: bool) -> None:
        self.s = s
        self.fp16 = fp16
        self.buffers: list[Any] = [s.BufferT()]
        self.tensors: list[Any] = []
        self.codes: dict[int, int] = {}
        self.code_list: list[Any] = []
        self.ops: list[Any] = []

    def tensor(self, name: str, shape: list[int], ttype: int, data: npt.NDArray[Any] | None = None) -> int:
        buf = 0
        if data is not None:
            b = self.s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.buffers.append(b)
            buf = len(self.buffers) - 1
        t = self.s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), np.array(shape, np.int32), ttype, buf
        self.tensors.append(t)
        return len(self.tensors) - 1

    def weight(self, name: str, w: F32) -> int:
        """A float32 constant; in FP16 mode a float16 constant and a DEQUANTIZE to float32."""
        tt = self.s.TensorType
        if not self.fp16:
            return self.tensor(name, list(w.shape), tt.FLOAT32, w.astype("<f4"))
        half = self.tensor(f"{name}.f16", list(w.shape), tt.FLOAT16, w.astype("<f2"))
        out = self.tensor(name, list(w.shape), tt.FLOAT32)
        self.op(self.s.BuiltinOperator.DEQUANTIZE, [half], [out], 0, None)
        return out

    def op(self, code: int, inputs: list[int], outputs: list[int], opt_type: int, opts: Any) -> None:
        if code not in self.codes:
            c = self.s.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
            self.codes[code] = len(self.code_list)
            self.code_list.append(c)
        o = self.s.OperatorT()
        o.opcodeIndex = self.codes[code]
        o.inputs, o.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        o.builtinOptionsType, o.builtinOptions = opt_type, opts
        self.ops.append(o)

    def finish(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        import flatbuffers

        sg = self.s.SubGraphT()
        sg.tensors, sg.operators, sg.name = self.tensors, self.ops, b"main"
        sg.inputs, sg.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        m = self.s.ModelT()
        m.version, m.subgraphs, m.buffers, m.operatorCodes = 3, [sg], self.buffers, self.code_list
        m.description = description.encode()
        fb = flatbuffers.Builder(1 << 20)
        fb.Finish(m.Pack(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())


def build_float(ewt: Mapping[str, F32], *, fp16: bool = False, description: str = "efficientnet-lite0") -> bytes:
    """The float model (FP32, or FP16 weights) from the FP32 EWT tensors (NHWC layouts, docs/models.md)."""
    s = need("ai_edge_litert.schema_py_generated", "ai-edge-litert (the tflite extra)")
    need("flatbuffers", "flatbuffers")
    g = _Graph(s, fp16)
    tt, op, opts = s.TensorType, s.BuiltinOperator, s.BuiltinOptions
    size = INPUT_SIZE
    x_in = g.tensor("input", [1, 3, size, size], tt.FLOAT32)
    perm = g.tensor("nchw_to_nhwc", [4], tt.INT32, np.array([0, 2, 3, 1], "<i4"))
    x = g.tensor("input_nhwc", [1, size, size, 3], tt.FLOAT32)
    g.op(op.TRANSPOSE, [x_in, perm], [x], opts.TransposeOptions, s.TransposeOptionsT())

    def conv(x: int, name: str, w: F32, cout: int, stride: int, relu6: bool, depthwise: bool = False) -> int:
        nonlocal size
        size = -(-size // stride)
        wi = g.weight(f"{name}.w", w)
        bi = g.weight(f"{name}.b", ewt[f"{name}.b"])
        y = g.tensor(name, [1, size, size, cout], tt.FLOAT32)
        act = s.ActivationFunctionType.RELU6 if relu6 else s.ActivationFunctionType.NONE
        o = s.DepthwiseConv2DOptionsT() if depthwise else s.Conv2DOptionsT()
        o.padding, o.strideW, o.strideH, o.fusedActivationFunction = s.Padding.SAME, stride, stride, act
        o.dilationWFactor = o.dilationHFactor = 1
        if depthwise:
            o.depthMultiplier = 1
            g.op(op.DEPTHWISE_CONV_2D, [x, wi, bi], [y], opts.DepthwiseConv2DOptions, o)
        else:
            g.op(op.CONV_2D, [x, wi, bi], [y], opts.Conv2DOptions, o)
        return y

    def pointwise(w: F32) -> F32:  # EWT [cin, cout] -> TFLite [cout, 1, 1, cin]
        return np.ascontiguousarray(w.T[:, None, None, :])

    h = conv(x, "stem", np.ascontiguousarray(ewt["stem.w"].transpose(3, 0, 1, 2)), 32, 2, True)
    for b in BLOCKS:
        p = f"blocks.{b.index}"
        y = h
        if b.expand != 1:
            y = conv(y, f"{p}.expand", pointwise(ewt[f"{p}.expand.w"]), b.cmid, 1, True)
        y = conv(y, f"{p}.dw", np.ascontiguousarray(ewt[f"{p}.dw.w"][None]), b.cmid, b.stride, True, True)
        y = conv(y, f"{p}.project", pointwise(ewt[f"{p}.project.w"]), b.cout, 1, False)
        if b.residual:
            out = g.tensor(f"{p}.add", [1, size, size, b.cout], tt.FLOAT32)
            g.op(op.ADD, [h, y], [out], opts.AddOptions, s.AddOptionsT())
            y = out
        h = y
    h = conv(h, "head", pointwise(ewt["head.w"]), 1280, 1, True)
    axes = g.tensor("pool_axes", [2], tt.INT32, np.array([1, 2], "<i4"))
    pooled = g.tensor("pool", [1, 1280], tt.FLOAT32)
    red = s.ReducerOptionsT()
    red.keepDims = False
    g.op(op.MEAN, [h, axes], [pooled], opts.ReducerOptions, red)
    fw = g.weight("fc.w", np.ascontiguousarray(ewt["fc.w"].T))
    fb = g.weight("fc.b", ewt["fc.b"])
    logits = g.tensor("logits", [1, NUM_CLASSES], tt.FLOAT32)
    g.op(op.FULLY_CONNECTED, [pooled, fw, fb], [logits], opts.FullyConnectedOptions, s.FullyConnectedOptionsT())
    return g.finish([x_in], [logits], description)


def quantize_int8(float_model: bytes, calibration: F32) -> tuple[bytes, dict[str, Any]]:
    """LiteRT's post-training quantizer: calibrate the float model on ``calibration`` [N, 3, 224, 224], then
    int8 activations and weights (per channel), int32 biases, float32 input and output."""
    wrapper = need("ai_edge_litert._pywrap_tensorflow_lite_calibration_wrapper", "ai-edge-litert (the tflite extra)")
    cal = wrapper.CalibrationWrapper(float_model, [], [])
    cal.Prepare()
    for i in range(len(calibration)):
        cal.FeedTensor([np.ascontiguousarray(calibration[i : i + 1], np.float32)])
    f32, i8, i32 = np.dtype(np.float32).num, np.dtype(np.int8).num, np.dtype(np.int32).num
    model = cal.QuantizeModel(f32, f32, False, i8, i32, False, False)
    return bytes(model), {
        "tool": "ai_edge_litert CalibrationWrapper (LiteRT's post-training quantizer) on a float model written "
        "with LiteRT's schema",
        "versions": {"ai-edge-litert": version("ai-edge-litert"), "flatbuffers": version("flatbuffers")},
        "activations": "int8, asymmetric, per tensor",
        "weights": "int8, symmetric, per output channel",
        "bias": "int32",
        "io": "float32",
    }


def float_record(fp16: bool) -> dict[str, Any]:
    return {
        "tool": "written with LiteRT's schema (ai_edge_litert.schema_py_generated) from the FP32 weights",
        "versions": {"ai-edge-litert": version("ai-edge-litert"), "flatbuffers": version("flatbuffers")},
        "weights": "float16, widened by DEQUANTIZE at load" if fp16 else "float32",
        "activations": "float32",
    }
