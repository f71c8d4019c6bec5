"""How times, sizes, ratios and tables are written."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class _Quartiles(Protocol):
    median: float
    q1: float
    q3: float


def fmt_t(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        ms = seconds * 1e3
        return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"
    us = seconds * 1e6
    return f"{us:.1f} µs" if us >= 10 else f"{us:.2f} µs"


def fmt_ms(ms: float) -> str:
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def fmt_x(r: float) -> str:
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def ratio_range(a: _Quartiles, b: _Quartiles) -> tuple[float, float, float]:
    """a / b: the ratio of medians, and its IQR bound (a's best quartile over b's worst, and the reverse)."""
    return a.median / b.median, a.q1 / b.q3, a.q3 / b.q1


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out
