"""Pair-bounded int8 weights: 8-bit precision for matrix products without int16 saturation on AVX2.

x86 CPUs without VNNI multiply uint8 activations by int8 weights with ``pmaddubsw``, which adds the products
of two neighbouring reduction elements into a saturating int16. With activations up to 255 the pair sum
stays within int16 exactly when ``|q[k]| + |q[k+1]| <= 128`` for the two weights it pairs. 7-bit weights
(``reduce_range``) guarantee it by giving up a bit everywhere; here each output channel keeps 8 bits and
only the pairs that would overflow give up a step or two. The bound holds for *every* adjacent pair along the
reduction axis (not only the even-aligned ones a given kernel happens to pair), so no packing of the
weights can saturate. Per channel the scale is chosen among candidates between the 8-bit one and the one
that needs no clipping at all, for the least squared weight error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

PAIR_BOUND = 128
QMAX = 127
CANDIDATES = 12

F32 = npt.NDArray[np.float32]
I8 = npt.NDArray[np.int8]


def pair_sums(q: npt.NDArray[Any], axis: int = -1) -> npt.NDArray[Any]:
    """``|q[k]| + |q[k+1]|`` along ``axis`` for every k (integers widened to int64, floats kept)."""
    arr = np.asarray(q)
    a = np.abs(np.moveaxis(arr.astype(np.int64) if arr.dtype.kind in "iu" else arr, axis, -1))
    return a[..., 1:] + a[..., :-1]


def _fix(q: npt.NDArray[np.int64], x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Lower magnitudes, one step at a time and where it costs least, until every pair is within the bound.
    ``q`` [C, K] rounded from ``x`` (the weights over their scale)."""
    q = q.copy()
    while True:
        over = np.abs(q[:, 1:]) + np.abs(q[:, :-1]) > PAIR_BOUND
        if not over.any():
            return q
        # Of the two, shrink the one whose rounding went furthest outwards (it loses the least by a step).
        excess = np.abs(q) - np.abs(x)
        left = excess[:, :-1] >= excess[:, 1:]
        cut = np.zeros(q.shape, bool)
        cut[:, :-1] |= over & left
        cut[:, 1:] |= over & ~left
        q = np.where(cut, q - np.sign(q), q)


def quantize_channels(w: npt.ArrayLike, orders: tuple[tuple[int, ...], ...] = ((),)) -> tuple[I8, F32]:
    """Symmetric int8 per output channel (axis 0) with every adjacent pair of the reduction bounded.

    ``w`` [cout, ...]; the reduction runs over the other axes flattened in C order, and also in each extra
    axis order of ``orders`` (a permutation of the non-channel axes, e.g. a kernel that reads a conv's weights
    as [kh, kw, cin]). Returns the values (shape of ``w``) and the scales [cout]."""
    w64 = np.asarray(w, np.float64)
    cout = w64.shape[0]
    perms = [tuple(range(1, w64.ndim)) if not o else tuple(a + 1 for a in o) for o in orders]
    amax = np.abs(w64.reshape(cout, -1)).max(axis=1)
    widest = np.max([pair_sums(np.abs(w64.transpose(0, *p).reshape(cout, -1))).max(axis=1)
                     if w64[0].size > 1 else amax for p in perms], axis=0)  # fmt: skip
    lo = amax / QMAX
    hi = np.maximum(widest / PAIR_BOUND, lo)
    best_q = np.zeros(w64.shape, np.int64)
    best_s = np.where(amax > 0, lo, 1.0)
    best_err = np.full(cout, np.inf)
    for t in np.linspace(0.0, 1.0, CANDIDATES):
        s = np.where(amax > 0, lo + t * (hi - lo), 1.0)
        x = w64 / s.reshape(-1, *([1] * (w64.ndim - 1)))
        q = np.clip(np.rint(x), -QMAX, QMAX).astype(np.int64)
        for p in perms:
            xp = x.transpose(0, *p)
            inv = np.argsort((0, *p))
            fixed = _fix(q.transpose(0, *p).reshape(cout, -1), xp.reshape(cout, -1))
            q = fixed.reshape(xp.shape).transpose(*inv)
        err = ((q - x) ** 2 * (s**2).reshape(-1, *([1] * (w64.ndim - 1)))).reshape(cout, -1).sum(axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_s = np.where(better, s, best_s)
        best_q[better] = q[better]
    return best_q.astype(np.int8), best_s.astype(np.float32)


def bounded(q: npt.ArrayLike, orders: tuple[tuple[int, ...], ...] = ((),)) -> bool:
    """Every adjacent pair of every output channel's weights (in each order) is within the bound."""
    qa = np.asarray(q, np.int64)
    for o in orders:
        p = tuple(range(1, qa.ndim)) if not o else tuple(a + 1 for a in o)
        flat = qa.transpose(0, *p).reshape(qa.shape[0], -1)
        if flat.shape[1] > 1 and pair_sums(flat).max() > PAIR_BOUND:
            return False
    return True
