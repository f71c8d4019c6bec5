"""The pure guest's INT8 network: 7-bit activations, per-channel int8 weights, float requantization.

Every activation is a uint8 in 0..127 with a per-tensor scale and zero point (``x = scale * (q - zero)``), so
the second operand of wasm's ``i32x4.relaxed_dot_i8x16_i7x16_add`` stays 7-bit and the dot product is exact
on every host. Weights are int8 with one scale per output channel. A layer accumulates ``acc = sum w * q`` in
int32 and requantizes with one float32 multiply and add per output: ``q = clip(rint(f32(acc) * S + C), 0,
127)``, plus ``+ f32(q_x) * R`` where a block adds its input back. The zero points and the bias are folded
into ``C``. Float, not fixed point: per-channel weight scales of one layer span up to 10^13 here (dead
channels), which no per-layer shift covers, and wasm SIMD has no per-lane shifts; float32 multiply and add
are exactly rounded in wasm and in numpy, so with no fused multiply-add (the C kernels are built with
``-ffp-contract=off``) the result is bit-identical everywhere. ``forward`` is the numpy reference the guest
must match bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _pack
from ._arch import BLOCKS, INPUT_SIZE, Block
from ._reference import _pad_same, _windows, conv2d, depthwise, pointwise, relu6

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
I8 = npt.NDArray[np.int8]

QMAX = 127
#: The network input's range, exactly: (p - 127) / 128 for pixels p in 0..255.
INPUT_RANGE = (-127.0 / 128.0, 128.0 / 128.0)
LAYOUT = "int8-v1"
#: The most the absolute GEMM weights of one i16 lane of the relaxed kernel may sum to: it adds the pair
#: products of two k groups (k = 4g + 2p + {0, 1} and 4g + 4 + 2p + {0, 1}) in int16 before widening, exact
#: while 256 * 127 < 2**15. Weights with |w| <= 64 (ONNX Runtime's reduce_range) or pair-bounded ones
#: (|w[k]| + |w[k + 1]| <= 128) keep it.
LANE_BOUND = 256


@dataclass(frozen=True)
class ActQ:
    """A 7-bit activation: ``x = scale * (q - zero)``, q in 0..127."""

    scale: float
    zero: int

    @staticmethod
    def for_range(lo: float, hi: float, relu6: bool = False) -> ActQ:
        """The scale and zero point covering [lo, hi] (and 0, which is then exact); ReLU6 outputs start at 0."""
        if relu6:
            top = min(max(hi, 1e-6), 6.0)
            return ActQ(top / QMAX, 0)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = max(hi - lo, 1e-6) / QMAX
        return ActQ(scale, int(np.clip(round(-lo / scale), 0, QMAX)))


@dataclass(frozen=True)
class LayerQ:
    """One layer's int8 weights (GEMM ``[cin, cout]``, depthwise ``[k, k, c]``, stem ``[27, 32]``) and its
    float32 requantization (``S``, ``C`` per output channel; ``R`` for the residual input, or 0)."""

    w: I8
    s: F32
    c: F32
    r: float = 0.0


@dataclass(frozen=True)
class Int8Model:
    input: ActQ
    layers: dict[str, LayerQ]
    pool_scale: float  # pooled q = clip(rint(f32(sum of the head's q over the pixels) * pool_scale), 0, 127)
    blocks: tuple[Block, ...] = BLOCKS


# -- weights ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QWeight:
    """Per-channel symmetric int8 weights in the EWT layout (last axis = output channel) and their scales."""

    values: I8
    scale: F32


def quantize_weights(w: F32) -> QWeight:
    """Symmetric per-output-channel int8 (the scheme of ONNX Runtime's per-channel QDQ weights)."""
    flat = w.reshape(-1, w.shape[-1])
    amax = np.abs(flat).max(axis=0)
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -QMAX, QMAX).astype(np.int8)
    return QWeight(q, scale)


def layer_names(blocks: Sequence[Block] = BLOCKS) -> list[str]:
    names = ["stem"]
    for b in blocks:
        if b.expand != 1:
            names.append(f"blocks.{b.index}.expand")
        names += [f"blocks.{b.index}.dw", f"blocks.{b.index}.project"]
    return [*names, "head", "fc"]


# -- calibration ------------------------------------------------------------------------------------------------


def activation_ranges(tensors: Mapping[str, F32], images: Iterable[F32]) -> dict[str, tuple[float, float]]:
    """Min and max of every quantized activation over the FP32 network (numpy reference) on ``images``
    (NHWC [224, 224, 3], normalised): ``stem``, ``blocks.<i>.expand``, ``blocks.<i>.dw``, ``blocks.<i>``
    (the block's output), ``head``, ``pool``."""
    ranges: dict[str, tuple[float, float]] = {}

    def see(name: str, a: F32) -> F32:
        lo, hi = float(a.min()), float(a.max())
        old = ranges.get(name)
        ranges[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        return a

    for img in images:
        h = see("stem", relu6(conv2d(np.asarray(img, np.float32)[None], tensors["stem.w"], tensors["stem.b"], 2)))
        for b in BLOCKS:
            p = f"blocks.{b.index}"
            y = h
            if b.expand != 1:
                y = see(f"{p}.expand", relu6(pointwise(y, tensors[f"{p}.expand.w"], tensors[f"{p}.expand.b"])))
            y = see(f"{p}.dw", relu6(depthwise(y, tensors[f"{p}.dw.w"], tensors[f"{p}.dw.b"], b.stride)))
            y = pointwise(y, tensors[f"{p}.project.w"], tensors[f"{p}.project.b"])
            h = see(p, h + y if b.residual else y)
        h = see("head", relu6(pointwise(h, tensors["head.w"], tensors["head.b"])))
        see("pool", h.mean(axis=(1, 2), dtype=np.float32))
    return ranges


# -- the requantization parameters ------------------------------------------------------------------------------


def _requant(wq: QWeight, bias: F32, x: ActQ, y: ActQ | None, residual: ActQ | None = None) -> tuple[F32, F32, float]:
    """S, C (and R) so that ``f32(acc) * S + C (+ f32(q_x) * R)`` is the output in units of y's scale, zero
    point included (or the real output when y is None: the logits)."""
    wsum = wq.values.reshape(-1, wq.values.shape[-1]).astype(np.int64).sum(axis=0)
    s_out, z_out = (y.scale, y.zero) if y is not None else (1.0, 0)
    s = x.scale * wq.scale.astype(np.float64) / s_out
    c = bias.astype(np.float64) / s_out + z_out - x.zero * wsum * s
    r = 0.0
    if residual is not None:
        r = residual.scale / s_out
        c = c - residual.zero * r
    return s.astype(np.float32), c.astype(np.float32), float(np.float32(r))


def build(
    tensors: Mapping[str, F32],
    ranges: Mapping[str, tuple[float, float]],
    weights: Mapping[str, QWeight] | None = None,
) -> Int8Model:
    """The INT8 model from the FP32 tensors (for the biases), the activation ranges and the int8 weights
    (``weights[layer]``; by default quantized here, per channel)."""
    wts = dict(weights or {})
    for name in layer_names():
        if name not in wts:
            wts[name] = quantize_weights(tensors[f"{name}.w"])
    relu = {n: ActQ.for_range(*ranges[n], relu6=True) for n in ranges if n.endswith((".expand", ".dw"))}
    act: dict[str, ActQ] = {"input": ActQ.for_range(*INPUT_RANGE)}
    act["stem"] = ActQ.for_range(*ranges["stem"], relu6=True)
    act.update(relu)
    for b in BLOCKS:
        act[f"blocks.{b.index}"] = ActQ.for_range(*ranges[f"blocks.{b.index}"])
    act["head"] = ActQ.for_range(*ranges["head"], relu6=True)
    act["pool"] = ActQ.for_range(*ranges["pool"], relu6=True)
    layers: dict[str, LayerQ] = {}

    def add(name: str, x: ActQ, y: ActQ | None, residual: ActQ | None = None) -> None:
        s, c, r = _requant(wts[name], tensors[f"{name}.b"], x, y, residual)
        layers[name] = LayerQ(wts[name].values, s, c, r)

    add("stem", act["input"], act["stem"])
    prev = "stem"
    for b in BLOCKS:
        p = f"blocks.{b.index}"
        src = prev
        if b.expand != 1:
            add(f"{p}.expand", act[prev], act[f"{p}.expand"])
            src = f"{p}.expand"
        add(f"{p}.dw", act[src], act[f"{p}.dw"])
        add(f"{p}.project", act[f"{p}.dw"], act[p], act[prev] if b.residual else None)
        prev = p
    add("head", act[prev], act["head"])
    add("fc", act["pool"], None)
    final = INPUT_SIZE // 32
    pool_scale = float(np.float32(act["head"].scale / (final * final * act["pool"].scale)))
    return Int8Model(act["input"], layers, pool_scale)


# -- the numpy reference ----------------------------------------------------------------------------------------


def _out(acc: npt.NDArray[Any], layer: LayerQ, xq: U8 | None = None) -> U8:
    v = acc.astype(np.float32) * layer.s
    v = v + layer.c
    if xq is not None:
        v = v + xq.astype(np.float32) * np.float32(layer.r)
    out: U8 = np.clip(np.rint(v), 0, QMAX).astype(np.uint8)
    return out


def quantize_input(x: F32, q: ActQ) -> U8:
    """The guest's input quantization: ``clip(rint(x * f32(1/scale) + zero), 0, 127)`` in float32."""
    v = np.asarray(x, np.float32) * np.float32(1.0 / q.scale)
    v = v + np.float32(q.zero)
    out: U8 = np.clip(np.rint(v), 0, QMAX).astype(np.uint8)
    return out


def _gemm(q: U8, layer: LayerQ, xq: U8 | None = None) -> U8:
    acc = q.astype(np.int32) @ layer.w.astype(np.int32)
    return _out(acc, layer, xq)


def forward(model: Int8Model, x: npt.NDArray[Any]) -> F32:
    """Logits [N, 1000] for normalised NHWC input [N, 224, 224, 3] (or one [224, 224, 3] image), bit for bit
    what the guest computes."""
    xb = np.asarray(x, np.float32)
    if xb.ndim == 3:
        xb = xb[None]
    q = quantize_input(xb, model.input)
    st = model.layers["stem"]
    k = 3
    # im2col with the input's zero point where the window hangs over the SAME padding (the real value 0).
    qp, oh, ow = _pad_same(q.astype(np.int32) - model.input.zero, k, 2)  # type: ignore[arg-type]
    cols = np.concatenate(_windows(qp + model.input.zero, k, 2, oh, ow), axis=-1)
    h = _out(cols @ st.w.reshape(-1, st.w.shape[-1]).astype(np.int32), st)
    for b in model.blocks:
        p = f"blocks.{b.index}"
        y = h
        if b.expand != 1:
            y = _gemm(y, model.layers[f"{p}.expand"])
        dw = model.layers[f"{p}.dw"]
        yp, oh, ow = _pad_same(y.astype(np.int32), b.kernel, b.stride)
        acc = np.zeros((y.shape[0], oh, ow, y.shape[3]), dtype=np.int32)
        for n, view in enumerate(_windows(yp, b.kernel, b.stride, oh, ow)):
            acc += view * dw.w[n // b.kernel, n % b.kernel].astype(np.int32)
        y = _out(acc, dw)
        h = _gemm(y, model.layers[f"{p}.project"], h if b.residual else None)
    h = _gemm(h, model.layers["head"])
    total = h.astype(np.int32).sum(axis=(1, 2))
    pooled = np.clip(np.rint(total.astype(np.float32) * np.float32(model.pool_scale)), 0, QMAX).astype(np.uint8)
    fc = model.layers["fc"]
    acc = pooled.astype(np.int32) @ fc.w.astype(np.int32)
    logits: F32 = acc.astype(np.float32) * fc.s
    return logits + fc.c


# -- the packed image -------------------------------------------------------------------------------------------


def lane_sum(w: I8) -> int:
    """The largest sum of absolute weights over one i16 lane of the relaxed GEMM kernel (see ``LANE_BOUND``);
    ``w`` is ``[..., cin, cout]``."""
    flat = np.abs(w.reshape(-1, w.shape[-1]).astype(np.int32))
    k = flat.shape[0]
    flat = np.pad(flat, ((0, -k % 8), (0, 0)))
    # [pairs of groups][group][pair in group][k in pair][cout]: a lane is one (pair of groups, pair, cout)
    return int(flat.reshape(-1, 2, 2, 2, flat.shape[-1]).sum(axis=(1, 3)).max(initial=0))


def pack(model: Int8Model, meta: Mapping[str, str], labels: Sequence[str]) -> bytes:
    """The EWP image the guest's INT8 network reads in place (``_pack``); refuses GEMM weights the guest's
    kernels could not sum exactly."""
    t: dict[str, npt.NDArray[Any]] = {
        "input.q": np.array([1.0 / model.input.scale, model.input.zero], np.float32),
        "pool.s": np.array([model.pool_scale], np.float32),
    }
    for name, layer in model.layers.items():
        cout = layer.w.shape[-1]
        if name.endswith(".dw"):
            t[f"{name}.w"] = pack_dw(layer.w)
        else:
            if (worst := lane_sum(layer.w)) > LANE_BOUND:
                raise ValueError(
                    f"{name}: int8 weights whose absolute values sum to {worst} over one kernel lane (at most "
                    f"{LANE_BOUND}); quantize the GEMM weights to |w| <= 64 or pair-bounded"
                )
            t[f"{name}.w"] = _pack.pack_i8_gemm(layer.w.reshape(-1, cout))
        t[f"{name}.s"] = _pack.pad_channels(layer.s, cout)
        t[f"{name}.c"] = _pack.pad_channels(layer.c, cout)
        if layer.r:
            t[f"{name}.r"] = np.array([layer.r], np.float32)
    t["labels"] = _pack.labels_tensor(labels)
    return _pack.encode({**meta, "layout": LAYOUT, "classes": str(len(labels))}, model.blocks, t)


def pack_dw(w: I8) -> npt.NDArray[np.int16]:
    """Depthwise ``[k, k, c]`` int8 -> i16 ``[pairs][c][2]``: the k*k taps (row-major) in pairs, the odd last
    one paired with a zero weight, so one ``i32x4.dot_i16x8_s`` sums two taps of four channels."""
    k, _, c = w.shape
    taps = np.zeros((k * k + 1) // 2 * 2 * c, np.int16).reshape(-1, c)
    taps[: k * k] = w.reshape(k * k, c)
    return np.ascontiguousarray(taps.reshape(-1, 2, c).transpose(0, 2, 1)).reshape(-1)


def unpack_dw(packed: npt.NDArray[np.int16], k: int, c: int) -> I8:
    taps = packed.reshape(-1, c, 2).transpose(0, 2, 1).reshape(-1, c)[: k * k]
    return np.ascontiguousarray(taps.astype(np.int8).reshape(k, k, c))


def unpack_i8_gemm(packed: npt.NDArray[np.int8], cin: int, cout: int) -> I8:
    """The inverse of ``_pack.pack_i8_gemm``: ``[cin][cout]`` int8."""
    k = (cin + _pack.K_STEP - 1) // _pack.K_STEP * _pack.K_STEP
    p = _pack.panels(cout)
    body = packed.reshape(p, _pack.i8_panel_stride(cin))[:, : k * _pack.NR]
    t = body.reshape(p, k // _pack.K_STEP, 2, _pack.NR // 2, _pack.K_STEP).transpose(1, 4, 0, 2, 3)
    return np.ascontiguousarray(t.reshape(k, p * _pack.NR)[:cin, :cout])


def from_image(img: _pack.Image) -> Int8Model:
    """The model a packed INT8 image holds, for the reference (so tests hold the guest to the file it reads)."""
    if img.meta.get("layout") != LAYOUT:
        raise ValueError(f"not an INT8 image (layout {img.meta.get('layout')!r})")
    t = img.tensors
    blocks = tuple(img.blocks)
    inv, zero = (float(v) for v in t["input.q"])
    layers: dict[str, LayerQ] = {}
    sizes = {"stem": (27, blocks[0].cin)}
    for b in blocks:
        p = f"blocks.{b.index}"
        if b.expand != 1:
            sizes[f"{p}.expand"] = (b.cin, b.cmid)
        sizes[f"{p}.project"] = (b.cmid, b.cout)
    feat = len(t["head.s"])
    sizes["head"] = (blocks[-1].cout, feat)
    sizes["fc"] = (feat, int(img.meta["classes"]))
    for name, (cin, cout) in sizes.items():
        w = unpack_i8_gemm(t[f"{name}.w"], cin, cout)
        r = float(t[f"{name}.r"][0]) if f"{name}.r" in t else 0.0
        layers[name] = LayerQ(w, t[f"{name}.s"][:cout], t[f"{name}.c"][:cout], r)
    for b in blocks:
        p = f"blocks.{b.index}.dw"
        w = unpack_dw(t[f"{p}.w"], b.kernel, b.cmid)
        layers[p] = LayerQ(w, t[f"{p}.s"][: b.cmid], t[f"{p}.c"][: b.cmid])
    return Int8Model(ActQ(1.0 / inv, int(zero)), layers, float(t["pool.s"][0]), blocks)
