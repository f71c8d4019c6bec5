"""Make the FP16 and INT8 files of a variant from the FP32 ONNX model, with the engines' own tools.

- ONNX Runtime FP16: ``onnxruntime.transformers.float16`` (weights and compute in float16, float32 input/output).
- ONNX Runtime INT8: ``onnxruntime.quantization.quantize_static``, QDQ format, uint8 asymmetric activations,
  int8 symmetric per-channel weights, MinMax calibration. x86 CPUs without VNNI run the 1x1 convolutions, the
  stem and the classifier with ``pmaddubsw``, whose int16 pair sums saturate with plain 8-bit weights and flip
  answers: their weights are requantized pair-bounded (``_pairbound``: 8 bits, each adjacent pair's magnitudes
  summing to at most 128); the depthwise convolutions do not use it and keep plain 8 bits. Optionally
  (``rounding="adaptive"``) every layer's weights are then rounded down or up for the least output error on the
  calibration photos (``_adaround``). Then every layer's bias is corrected, one layer after the other
  (``_biascorr``). One file for every host (docs/quantization.md).
  Dynamic quantization is not offered: it leaves
  the convolutions' activations in float and is slower than FP32 on this network.
- OpenVINO FP16: ``openvino.save_model(..., compress_to_fp16=True)``.
- OpenVINO INT8: the ONNX Runtime INT8 model converted (``openvino_from_qdq``: the same weights, biases and
  scales on OpenVINO's int8 kernels). ``openvino_int8`` is NNCF's own post-training quantization of the FP32
  model (per-channel symmetric weights, the overflow fix, its full bias correction), kept for comparison: it
  agrees with FP32 less often (docs/quantization.md).

The tools are the ``quantize`` extra, imported only here and only when a variant is made. Everything is
deterministic for the same inputs and versions; OpenVINO's automatic node names come from a process-wide counter,
so they are renamed from the graph's order before saving.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.metadata
import io
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import QuantizeError
from .._openvino import telemetry_hidden
from ..nn import _sigstack
from . import _adaround, _biascorr
from ._arch import BLOCKS

QUANTIZE_HINT = "pip install -c constraints.txt -e '.[quantize]' (in the edgewasm checkout, with its venv active)"
INPUT_NAME = "input"

F32 = npt.NDArray[np.float32]

# Layers computed as matrix products (im2col for the stem): pair-bounded weights in the ONNX Runtime model.
GEMM_LAYERS: tuple[str, ...] = (
    "stem",
    *(f"blocks.{b.index}.expand" for b in BLOCKS if b.expand != 1),
    *(f"blocks.{b.index}.project" for b in BLOCKS),
    "head",
    "fc",
)


#: Packages that start OpenVINO's usage telemetry (writing into ~/intel) when imported plainly.
_TELEMETRY_PACKAGES = frozenset({"openvino", "nncf"})


def need(module: str, what: str) -> ModuleType:
    """Import a tool of the ``quantize`` extra, or raise a one-line error that names the extra."""
    try:
        if module.split(".")[0] in _TELEMETRY_PACKAGES:
            with telemetry_hidden():
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as exc:
        raise QuantizeError(f"{what} is not installed; install the quantize extra: {QUANTIZE_HINT}") from exc


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The tools print progress bars and advice; an install prints one line of its own."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        loggers = [logging.getLogger(n) for n in ("nncf", "onnxruntime", "root")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _fail(what: str, exc: Exception) -> QuantizeError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return QuantizeError(f"{what} failed: {first[:200]}")


# --- ONNX Runtime -----------------------------------------------------------------------------------------


def onnx_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """float16 weights and compute, float32 input and output (Cast nodes at both ends)."""
    onnx = need("onnx", "onnx")
    float16 = need("onnxruntime.transformers.float16", "onnxruntime")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet():
            model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
            onnx.save_model(model, str(dst))
    except Exception as exc:  # the converter raises plain Exceptions
        raise _fail("ONNX float16 conversion", exc) from exc
    return {
        "tool": "onnxruntime.transformers.float16.convert_float_to_float16",
        "versions": {"onnxruntime": version("onnxruntime"), "onnx": version("onnx")},
        "weights": "float16",
        "activations": "float16",
        "io": "float32 (keep_io_types)",
    }


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a batch, one image at a time."""

    def __init__(self, batch: F32) -> None:
        self._batch = batch
        self._i = 0

    def get_next(self) -> dict[str, F32] | None:
        if self._i >= len(self._batch):
            return None
        self._i += 1
        return {INPUT_NAME: self._batch[self._i - 1 : self._i]}

    def rewind(self) -> None:
        self._i = 0


#: The weight schemes of ``onnx_int8`` (bench/quant_saturation.py compares them).
WEIGHT_SCHEMES = ("pair-bounded", "7-bit", "8-bit")


#: How ``onnx_int8`` rounds the weights: to the nearest step, or adaptively (``_adaround``, pair-bounded only).
ROUNDINGS = ("adaptive", "nearest")


def onnx_int8(
    src: Path,
    dst: Path,
    calibration: F32,
    *,
    weights: str = "pair-bounded",
    rounding: str = "nearest",
    bias_correction: bool = True,
) -> dict[str, Any]:
    """Static QDQ quantization, per-channel weights, calibrated (MinMax) on ``calibration`` [N, 3, 224, 224].

    ``weights`` for the matrix-product layers (``GEMM_LAYERS``): ``pair-bounded`` (8-bit with every adjacent
    pair's magnitudes summing to at most 128, ``_pairbound``: no int16 saturation in ``pmaddubsw``),
    ``7-bit`` (``reduce_range``) or ``8-bit`` (saturates on AVX2 hosts without VNNI). ``rounding``
    ``adaptive`` (pair-bounded weights only) re-rounds every layer's weights for the least output error on
    ``calibration`` (``_adaround``); ``nearest`` keeps the nearest step. Then, unless ``bias_correction`` is off,
    the sequential per-layer bias correction of ``_biascorr``."""
    if weights not in WEIGHT_SCHEMES:
        raise ValueError(f"weights must be one of {WEIGHT_SCHEMES}, not {weights!r}")
    if rounding not in ROUNDINGS or (rounding == "adaptive" and weights != "pair-bounded"):
        raise ValueError(f"rounding must be one of {ROUNDINGS} (adaptive: pair-bounded weights), not {rounding!r}")
    need("onnx", "onnx")
    quant = need("onnxruntime.quantization", "onnxruntime's quantization module")
    shape_inference = need("onnxruntime.quantization.shape_inference", "onnxruntime's quantization module")
    dst.parent.mkdir(parents=True, exist_ok=True)
    seven = GEMM_LAYERS if weights == "7-bit" else ()
    seven_bit = {f"{layer}.w": [{"reduce_range": True, "symmetric": True, "axis": 0}] for layer in seven}
    try:
        with _quiet(), tempfile.TemporaryDirectory(prefix="edgewasm-quant-") as tmp:
            pre = Path(tmp) / "pre.onnx"
            shape_inference.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quant.quantize_static(
                str(pre),
                str(dst),
                _Reader(calibration),
                quant_format=quant.QuantFormat.QDQ,
                per_channel=True,
                reduce_range=False,
                activation_type=quant.QuantType.QUInt8,
                weight_type=quant.QuantType.QInt8,
                calibrate_method=quant.CalibrationMethod.MinMax,
                extra_options={"TensorQuantOverrides": seven_bit, "OpTypesToExcludeOutputQuantization": ["Gemm"]},
            )
            if weights == "pair-bounded":
                _biascorr.bound_weights(dst, src, GEMM_LAYERS)
            rounded = None
            if rounding == "adaptive":
                bounded = {la: _biascorr.STEM_ORDERS if la == "stem" else ((),) for la in GEMM_LAYERS}
                rounded = _adaround.round_weights(dst, src, calibration, bounded)
            corrected = _biascorr.correct_biases(dst, src, calibration) if bias_correction else None
    except Exception as exc:  # onnxruntime raises its own and plain exceptions
        raise _fail("ONNX Runtime quantization", exc) from exc
    bits = {
        "pair-bounded": {
            "8, pair-bounded (|q[k]| + |q[k+1]| <= 128 along the reduction, per output channel)":
                "stem, every expand and project 1x1 conv, head, fc",
            "8": "the depthwise convolutions",
        },
        "7-bit": {"7 (reduce_range)": "stem, every expand and project 1x1 conv, head, fc",
                  "8": "the depthwise convolutions"},
        "8-bit": {"8": "every layer"},
    }[weights]  # fmt: skip
    return {
        "tool": "onnxruntime.quantization.quantize_static (after quant_pre_process, skip_symbolic_shape)",
        "versions": {"onnxruntime": version("onnxruntime"), "onnx": version("onnx")},
        "format": "QDQ",
        "calibration_method": "MinMax",
        "per_channel": True,
        "activations": "uint8, asymmetric, per tensor",
        "weights": "int8, symmetric, per output channel",
        "weight_bits": bits,
        "rounding": rounded or "nearest",
        "bias": "int32",
        "bias_correction": corrected,
        "output": "float32 logits (the classifier's output is not quantized)",
    }


# --- OpenVINO ---------------------------------------------------------------------------------------------

_AUTO_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*_\d+$")


def _canonical_names(model: Any) -> None:
    """Rename nodes named from OpenVINO's process-wide counter (``Constant_220235``) by their graph order."""
    for i, op in enumerate(model.get_ordered_ops()):
        if _AUTO_NAME.match(op.get_friendly_name()):
            op.set_friendly_name(f"{op.get_type_name()}_n{i}")


def openvino_fp16(src: Path, dst_xml: Path) -> dict[str, Any]:
    """The IR with float16 weights (OpenVINO's CPU plugin decompresses them and computes in float32)."""
    ov = need("openvino", "openvino")
    dst_xml.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet(), _sigstack.kept():
            model = ov.convert_model(str(src))
            _canonical_names(model)
            ov.save_model(model, str(dst_xml), compress_to_fp16=True)
    except Exception as exc:  # openvino raises its own RuntimeError subclasses
        raise _fail("OpenVINO float16 conversion", exc) from exc
    return {
        "tool": "openvino.convert_model + openvino.save_model(compress_to_fp16=True)",
        "versions": {"openvino": version("openvino")},
        "weights": "float16 (decompressed to float32 at load on CPU)",
        "activations": "float32",
    }


def openvino_from_qdq(qdq: Path, dst_xml: Path) -> dict[str, Any]:
    """The IR of the ONNX Runtime QDQ model (``onnx_int8``): OpenVINO turns its Quantize/DequantizeLinear pairs
    into FakeQuantize and runs the layers on its int8 kernels, with the same weights (pair-bounded), corrected
    biases and activation scales. Measured: 92.5% agreement with FP32 (95.4-95.7% with adaptive rounding) where
    NNCF's own quantization of the FP32 model reached 83.7%, at the same speed (docs/quantization.md)."""
    ov = need("openvino", "openvino")
    dst_xml.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet(), _sigstack.kept():
            model = ov.convert_model(str(qdq))
            _canonical_names(model)
            ov.save_model(model, str(dst_xml), compress_to_fp16=False)
            del model
            gc.collect()
    except Exception as exc:  # openvino raises its own RuntimeError subclasses
        raise _fail("OpenVINO conversion of the INT8 model", exc) from exc
    return {
        "tool": "openvino.convert_model of model.onnx (the ONNX Runtime QDQ model) + openvino.save_model",
        "versions": {"openvino": version("openvino")},
        "from": "model.onnx: its int8 weights (pair-bounded), corrected int32 biases and uint8 activation scales",
        "activations": "uint8, asymmetric, per tensor (FakeQuantize)",
        "weights": "int8, symmetric, per output channel",
    }


def openvino_int8(src: Path, dst_xml: Path, calibration: F32) -> dict[str, Any]:
    """NNCF post-training quantization of the OpenVINO model, calibrated on ``calibration``."""
    ov = need("openvino", "openvino")
    nncf = need("nncf", "nncf")
    adv = need("nncf.quantization.advanced_parameters", "nncf")
    dst_xml.parent.mkdir(parents=True, exist_ok=True)
    items = [calibration[i : i + 1] for i in range(len(calibration))]
    try:
        # NNCF compiles the model on a Core of its own to gather statistics; the CPU plugin replaces this thread's
        # alternate signal stack and its engines put back stale ones when released, so they are released here,
        # inside kept(), before the thread runs a guest again (see edgewasm.nn._sigstack).
        with _quiet(), _sigstack.kept():
            nncf.set_log_level(logging.ERROR)
            model = nncf.quantize(
                ov.convert_model(str(src)),
                nncf.Dataset(items),
                preset=nncf.QuantizationPreset.PERFORMANCE,
                subset_size=len(items),
                fast_bias_correction=False,
                advanced_parameters=adv.AdvancedQuantizationParameters(overflow_fix=adv.OverflowFix.ENABLE),
            )
            _canonical_names(model)
            ov.save_model(model, str(dst_xml), compress_to_fp16=False)
            del model
            gc.collect()
    except Exception as exc:  # nncf and openvino raise many kinds
        raise _fail("NNCF quantization", exc) from exc
    return {
        "tool": "nncf.quantize (OpenVINO backend) + openvino.save_model",
        "versions": {"nncf": version("nncf"), "openvino": version("openvino")},
        "preset": "performance",
        "calibration_method": "MinMax statistics, bias correction (fast_bias_correction=False)",
        "subset_size": len(items),
        "per_channel": True,
        "activations": "int8/uint8, symmetric, per tensor (NNCF performance preset)",
        "weights": "int8, symmetric, per output channel",
        "weight_bits": {"7 (overflow_fix=enable)": "every layer"},
    }


# --- reading a QDQ model back (the pure-wasm guest's INT8 weights come from here) -------------------------


@dataclass(frozen=True)
class QuantizedWeight:
    """One layer's weights as the QDQ model holds them: ``w = scale[c] * values[c, ...]`` (zero point 0)."""

    values: npt.NDArray[np.int8]  # ONNX layout: [cout, cin, kh, kw] (conv), [cout, cin] (the classifier)
    scale: F32  # [cout]
    bias: npt.NDArray[np.int32]  # [cout], in units of input_scale * scale[c]


@dataclass(frozen=True)
class ActivationQuant:
    """A uint8 activation: ``x = scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    def range(self) -> tuple[float, float]:
        """The real values that uint8 can represent."""
        return (-self.zero_point * self.scale, (255 - self.zero_point) * self.scale)


@dataclass(frozen=True)
class QdqModel:
    """Per layer (``stem``, ``blocks.<i>.expand|dw|project``, ``head``, ``fc``): weights and the quantization
    of its input; per residual block (``blocks.<i>.add``) the quantization of the sum."""

    weights: dict[str, QuantizedWeight]
    inputs: dict[str, ActivationQuant]
    adds: dict[str, ActivationQuant]


def read_qdq(path: Path) -> QdqModel:
    """Read the int8 weights, per-channel scales, int32 biases and activation parameters of a QDQ model."""
    onnx = need("onnx", "onnx")
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def dq_params(tensor: str) -> tuple[Any, Any, Any]:
        node = producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear":
            raise QuantizeError(f"{path.name}: {tensor} is not dequantized; not an edgewasm QDQ model")
        return init.get(node.input[0]), init[node.input[1]], init[node.input[2]]

    def activation(tensor: str) -> ActivationQuant:
        node = producer.get(tensor)
        if node is None or node.op_type != "DequantizeLinear":
            raise QuantizeError(f"{path.name}: {tensor} is not dequantized; not an edgewasm QDQ model")
        return ActivationQuant(float(init[node.input[1]]), int(init[node.input[2]]))

    weights: dict[str, QuantizedWeight] = {}
    inputs: dict[str, ActivationQuant] = {}
    adds: dict[str, ActivationQuant] = {}
    for node in graph.node:
        layer = node.name.split("/")[0]
        if node.op_type in ("Conv", "Gemm"):
            values, scale, zero = dq_params(node.input[1])
            bias, _, _ = dq_params(node.input[2])
            if values is None or bias is None or np.any(zero != 0):
                raise QuantizeError(f"{path.name}: {layer}'s weights are not symmetric int8 initializers")
            weights[layer] = QuantizedWeight(
                np.asarray(values, np.int8), np.atleast_1d(np.asarray(scale, np.float32)), np.asarray(bias, np.int32)
            )
            inputs[layer] = activation(node.input[0])
        elif node.op_type == "QuantizeLinear" and node.input[0].endswith(".add"):
            adds[node.input[0]] = ActivationQuant(float(init[node.input[1]]), int(init[node.input[2]]))
    return QdqModel(weights, inputs, adds)
