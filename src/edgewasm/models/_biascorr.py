"""Sequential bias correction of the ONNX Runtime QDQ model, and its pair-bounded weights.

Quantized weights and activations shift the mean of every layer's output a little; through 50 layers the
shifts add up and flip answers. Bias correction subtracts, per output channel, the mean difference between the
quantized and the FP32 layer output on the calibration photos. It is done one layer at a time, in graph order,
each measured with every earlier layer already corrected: correcting all layers from one measurement counts the
upstream error twice (a layer's measured shift includes what the layers before it will remove) and diverges.

The quantized outputs are measured with ONNX Runtime's graph optimizations off, so the QDQ nodes run as
written (dequantize, float Conv, quantize): the arithmetic of integer kernels that do not saturate, which the
pair bound (``_pairbound``) makes every host's kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _pairbound

F32 = npt.NDArray[np.float32]

#: The stem's weights are also read as [cout, kh, kw, cin] by kernels that work in NHWC (ONNX Runtime's
#: QLinearConv does): its pairs are bounded in both orders.
STEM_ORDERS: tuple[tuple[int, ...], ...] = ((), (1, 2, 0))


@dataclass
class _Layer:
    name: str
    output: str  # the Conv/Gemm node's output in the QDQ model (before the next QuantizeLinear)
    fp32_output: str  # the same layer's output in the FP32 model
    w_values: str
    w_scale: str
    b_values: str
    b_scale: str
    x_scale: str


def _layers(graph: Any) -> list[_Layer]:
    producer = {out: node for node in graph.node for out in node.output}
    layers = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        name = node.name.split("/")[0]
        w, b, x = (producer[node.input[i]] for i in (1, 2, 0))
        fp32 = "logits" if node.op_type == "Gemm" else f"{name}.conv"
        layers.append(_Layer(name, node.output[0], fp32, w.input[0], w.input[1], b.input[0], b.input[1], x.input[1]))
    return layers


def _session(model: Any, outputs: Sequence[str], optimized: bool) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if not optimized:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _with_outputs(model: Any, names: Sequence[str]) -> Any:
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=n))
    return m


def _channel_means(session: Any, outputs: Sequence[str], batch: F32) -> list[npt.NDArray[np.float64]]:
    """Per output, the mean over images and positions of each channel (axis 1)."""
    sums: list[npt.NDArray[np.float64]] = []
    for i in range(len(batch)):
        outs = session.run(list(outputs), {"input": batch[i : i + 1]})
        means = [np.asarray(o, np.float64).reshape(o.shape[0], o.shape[1], -1).mean(axis=(0, 2)) for o in outs]
        sums = means if not sums else [s + m for s, m in zip(sums, means, strict=True)]
    return [s / len(batch) for s in sums]


def fp32_means(fp32_onnx: Path, names: Sequence[str], batch: F32) -> dict[str, npt.NDArray[np.float64]]:
    """The FP32 model's per-channel output means of the tensors ``names`` on ``batch`` (NCHW)."""
    import onnx

    model = _with_outputs(onnx.load(str(fp32_onnx)), names)
    return dict(zip(names, _channel_means(_session(model, names, True), names, batch), strict=True))


def _int32(real: npt.NDArray[np.float64], scale: npt.NDArray[Any]) -> npt.NDArray[np.int32]:
    """``real`` in units of ``scale`` as int32, saturated (a dead channel's scale can underflow to 0)."""
    s = np.asarray(scale, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s > 0, np.rint(real / np.where(s > 0, s, 1.0)), 0.0)
    return np.clip(q, -(2**31), 2**31 - 1).astype(np.int32)


def bound_weights(qdq: Path, fp32_onnx: Path, layers: Sequence[str]) -> dict[str, int]:
    """Requantize ``layers``' weights of the QDQ model in place, pair-bounded 8-bit, from the FP32 weights
    (their int32 biases follow the new scales). Returns how many weights each layer got below plain rounding."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    fp32 = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(fp32_onnx)).graph.initializer}
    init = {t.name: t for t in model.graph.initializer}
    lowered: dict[str, int] = {}
    for layer in _layers(model.graph):
        if layer.name not in layers:
            continue
        w = fp32[f"{layer.name}.w"]
        q, scale = _pairbound.quantize_channels(w, STEM_ORDERS if layer.name == "stem" else ((),))
        plain = np.clip(np.rint(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127)
        lowered[layer.name] = int((np.abs(q) < np.abs(plain)).sum())
        x_scale = float(numpy_helper.to_array(init[layer.x_scale]))
        b_scale = (scale.astype(np.float64) * x_scale).astype(np.float32)
        bias = _int32(fp32[f"{layer.name}.b"].astype(np.float64), b_scale)
        for name, arr in ((layer.w_values, q), (layer.w_scale, scale), (layer.b_scale, b_scale),
                          (layer.b_values, bias)):  # fmt: skip
            init[name].CopyFrom(numpy_helper.from_array(np.asarray(arr).reshape(init[name].dims), name))
    onnx.save_model(model, str(qdq))
    return lowered


def output_shifts(qdq: Path, fp32_onnx: Path, batch: F32) -> dict[str, npt.NDArray[np.float64]]:
    """Per layer of the QDQ model, its per-channel mean output minus FP32's on ``batch`` (what correction
    removes), measured in one run (without correcting anything)."""
    import onnx

    model = onnx.load(str(qdq))
    layers = _layers(model.graph)
    ref = fp32_means(fp32_onnx, [la.fp32_output for la in layers], batch)
    outs = [la.output for la in layers]
    got = _channel_means(_session(_with_outputs(model, outs), outs, False), outs, batch)
    return {la.name: g - ref[la.fp32_output] for la, g in zip(layers, got, strict=True)}


def correct_biases(qdq: Path, fp32_onnx: Path, batch: F32) -> dict[str, Any]:
    """Sequential bias correction of the QDQ model at ``qdq`` (rewritten in place) on ``batch`` (NCHW).
    Returns the record for the manifest (per layer, the largest mean shift removed)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    layers = _layers(model.graph)
    ref = fp32_means(fp32_onnx, [la.fp32_output for la in layers], batch)
    init = {t.name: t for t in model.graph.initializer}
    removed: dict[str, float] = {}
    for layer in layers:
        session = _session(_with_outputs(model, [layer.output]), [layer.output], False)
        (got,) = _channel_means(session, [layer.output], batch)
        shift = got - ref[layer.fp32_output]
        b_scale = numpy_helper.to_array(init[layer.b_scale]).astype(np.float64)
        bias = numpy_helper.to_array(init[layer.b_values]).astype(np.int64)
        new = _int32(bias * b_scale - shift, b_scale)
        init[layer.b_values].CopyFrom(numpy_helper.from_array(new, layer.b_values))
        removed[layer.name] = round(float(np.abs(shift).max()), 6)
    onnx.save_model(model, str(qdq))
    return {
        "method": "sequential per-layer bias correction: each layer's per-channel mean output shift against FP32 on "
        "the calibration photos, measured with every earlier layer corrected, subtracted from its int32 bias",
        "layers": len(layers),
        "max_shift_removed": max(removed.values()),
    }
