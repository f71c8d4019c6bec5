"""Adaptive rounding of the QDQ model's int8 weights (AdaRound-like, sequential), on the calibration photos.

Rounding each weight to the nearest step minimises the weight error, not the layer's output error: the errors of
one output channel's weights add up through the products with the layer's inputs, which are correlated. Per
output channel, this picks for every weight the step below or above ``w / scale`` (never further; a weight the
pair bound lowered may only move back towards ``w / scale``) so that ``|| X_fp w - X_q (q * scale) ||^2`` over
every position of the calibration photos is least, by coordinate descent on the quadratic form
(``H = X_q^T X_q``, ``C = X_q^T X_fp``, plus 1% of H's mean diagonal on both as a pull towards ``w``, which keeps
the classifier, seen only once a photo, from fitting the few rows it has). ``X_fp`` is the layer's input in the
FP32 model; ``X_q`` the input the quantized model gives it, with every earlier layer already rounded, so a layer
also absorbs part of the error of the activations and layers before it. Layers go in graph order.

Scales are kept (the pair-bounded ones of ``_pairbound`` for the matrix-product layers), and so is the pair bound:
a move that would put an adjacent pair over 128 (in the stem, in both orders kernels read it) is not taken.
Measured on the 416 images (docs/quantization.md): agreement with FP32 92.3% -> 96.4% (ONNX Runtime), 92.5% ->
95.4-95.7% (OpenVINO); 95.5% on the 336 images that are not views of the calibration photos.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _biascorr

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

QMAX = 127
DAMP = 0.01
SWEEPS = 4


def _attributes(node: Any) -> tuple[list[int], list[int]]:
    from onnx import helper

    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    return list(a.get("pads", [0, 0, 0, 0])), list(a.get("strides", [1, 1]))


def patches(x: F32, kh: int, kw: int, pads: Sequence[int], strides: Sequence[int]) -> F64:
    """One image's input [1, C, H, W] -> [positions, C, kh * kw] (the ONNX weight's [cin, kh, kw] order)."""
    from numpy.lib.stride_tricks import sliding_window_view

    p = np.pad(np.asarray(x[0], np.float64), ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    v = sliding_window_view(p, (kh, kw), axis=(1, 2))[:, :: strides[0], :: strides[1]]
    return v.reshape(v.shape[0], -1, kh * kw).transpose(1, 0, 2)


def layer_statistics(xq: F32, xf: F32, shape: Sequence[int], pads: Sequence[int], strides: Sequence[int],
               depthwise: bool) -> tuple[F64, F64]:  # fmt: skip
    """``H = Xq^T Xq`` and ``C = Xq^T Xf`` of one image, [1, K, K] (shared by the output channels) or [cout, K, K]
    (depthwise: each channel sees its own input channel)."""
    if len(shape) == 2 or (shape[2] == 1 and shape[3] == 1):  # a matrix product over the channels
        a = np.asarray(xq, np.float64).reshape(xq.shape[0], xq.shape[1], -1).transpose(0, 2, 1).reshape(-1, xq.shape[1])
        b = np.asarray(xf, np.float64).reshape(xf.shape[0], xf.shape[1], -1).transpose(0, 2, 1).reshape(-1, xf.shape[1])
        return (a.T @ a)[None], (a.T @ b)[None]
    a, b = (patches(t, shape[2], shape[3], pads, strides) for t in (xq, xf))
    if depthwise:
        return np.einsum("pck,pcl->ckl", a, a), np.einsum("pck,pcl->ckl", a, b)
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a.T @ a)[None], (a.T @ b)[None]


def neighbours(shape: Sequence[int], orders: Sequence[tuple[int, ...]]) -> list[list[int]]:
    """For each weight of a channel (flattened in C order), the weights adjacent to it along the reduction in
    any of ``orders`` (``_pairbound``'s convention: () is C order, else a permutation of the non-channel axes)."""
    size = int(np.prod(shape[1:]))
    idx = np.arange(size).reshape(tuple(shape[1:]))
    near: list[set[int]] = [set() for _ in range(size)]
    for o in orders:
        flat = idx.reshape(-1) if not o else idx.transpose(*o).reshape(-1)
        for a, b in itertools.pairwise(flat):
            near[int(a)].add(int(b))
            near[int(b)].add(int(a))
    return [sorted(s) for s in near]


def descend(q: I64, x: F64, scale: F64, h: F64, c: F64, near: list[list[int]] | None) -> I64:
    """Coordinate descent on ``|| X_fp w - X_q (q * scale) ||^2`` per output channel.

    ``q`` [cout, K] the starting values (nearest or pair-bounded), ``x`` = w / scale, ``h`` and ``c`` [1 or cout,
    K, K]; ``near`` the pair-bound neighbours (None: no bound). Returns the new values; each ends at the step below
    or above ``x``, or between its start and ``x``."""
    lam = DAMP * np.diagonal(h, axis1=1, axis2=2).mean(axis=1)[:, None, None] * np.eye(h.shape[1])[None]
    h, c = h + lam, c + lam
    q = q.copy()
    w = x * scale[:, None]
    qs = q * scale[:, None]
    shared = len(h) == 1
    g = qs @ h[0] - w @ c[0].T if shared else np.einsum("ck,ckl->cl", qs, h) - np.einsum("ckl,cl->ck", c, w)
    diag = np.diagonal(h, axis1=1, axis2=2)
    for _ in range(SWEEPS):
        moved = 0
        for k in range(q.shape[1]):
            best = np.zeros(len(q))
            step = np.zeros(len(q), np.int64)
            for s in (1, -1):
                new = q[:, k] + s
                off = np.abs(new - x[:, k])
                ok = (np.abs(new) <= QMAX) & ((off < 1) | (off < np.abs(q[:, k] - x[:, k])))
                for j in near[k] if near is not None else ():
                    ok &= np.abs(new) + np.abs(q[:, j]) <= 128
                delta = s * scale
                gain = 2 * delta * g[:, k] + delta**2 * (diag[0, k] if len(diag) == 1 else diag[:, k])
                take = ok & (gain < best)
                best = np.where(take, gain, best)
                step = np.where(take, s, step)
            changed = step != 0
            if changed.any():
                moved += int(changed.sum())
                q[:, k] += step
                g += (step * scale)[:, None] * (h[0][k][None, :] if len(h) == 1 else h[:, k, :])
        if not moved:
            break
    return q


def round_weights(
    qdq: Path, fp32_onnx: Path, batch: F32, bounded: Mapping[str, Sequence[tuple[int, ...]]]
) -> dict[str, Any]:
    """Re-round every layer's weights of the QDQ model at ``qdq`` (rewritten in place), in graph order, on
    ``batch`` (NCHW). ``bounded``: the pair-bounded layers and the axis orders of their bound. Returns the
    manifest's record."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    fp32_model = onnx.load(str(fp32_onnx))
    fp32 = {t.name: numpy_helper.to_array(t) for t in fp32_model.graph.initializer}
    init = {t.name: t for t in model.graph.initializer}
    nodes = {n.name.split("/")[0]: n for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
    fp32_in = {n.name.split("/")[0]: n.input[0] for n in fp32_model.graph.node if n.op_type in ("Conv", "Gemm")}
    names = sorted(set(fp32_in.values()))
    session = _biascorr._session(_biascorr._with_outputs(fp32_model, names), names, True)
    reference = [dict(zip(names, session.run(names, {"input": batch[i : i + 1]}), strict=True))
                 for i in range(len(batch))]  # fmt: skip
    changed = 0
    total = 0
    for layer in _biascorr._layers(model.graph):
        node = nodes[layer.name]
        q0 = numpy_helper.to_array(init[layer.w_values]).astype(np.int64)
        shape = q0.shape
        pads, strides = _attributes(node)
        depthwise = len(shape) == 4 and shape[1] == 1 and shape[2] * shape[3] > 1
        quantized = _biascorr._session(_biascorr._with_outputs(model, [node.input[0]]), [node.input[0]], False)
        h: F64 | float = 0.0
        c: F64 | float = 0.0
        for i in range(len(batch)):
            (xq,) = quantized.run([node.input[0]], {"input": batch[i : i + 1]})
            hi, ci = layer_statistics(xq, reference[i][fp32_in[layer.name]], shape, pads, strides, depthwise)
            h, c = h + hi, c + ci
        scale = numpy_helper.to_array(init[layer.w_scale]).astype(np.float64).reshape(-1)
        x = fp32[f"{layer.name}.w"].astype(np.float64).reshape(shape[0], -1) / scale[:, None]
        orders = bounded.get(layer.name)
        near = neighbours(shape, orders) if orders is not None else None
        q = descend(q0.reshape(shape[0], -1), x, scale, np.asarray(h), np.asarray(c), near)
        changed += int((q != q0.reshape(q.shape)).sum())
        total += q.size
        init[layer.w_values].CopyFrom(numpy_helper.from_array(q.reshape(shape).astype(np.int8), layer.w_values))
    onnx.save_model(model, str(qdq))
    return {
        "method": "sequential adaptive rounding (AdaRound-like): per layer in graph order, each weight rounded down "
        "or up to minimise the layer's output error against FP32 on the calibration photos, inputs from the "
        "quantized model with every earlier layer rounded; scales and the pair bound kept",
        "layers": len(nodes),
        "weights_changed": changed,
        "weights": total,
    }
