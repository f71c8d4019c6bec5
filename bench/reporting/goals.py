"""The goals' verdicts for one run: each GoalSpec of the catalogue measured, formatted and judged."""

from __future__ import annotations

import dataclasses

from .catalogue import GOALS, GoalSpec, Median, Paired, Ratio, StageOverMedian, StageRatio
from .fmt import fmt_ms, fmt_t, fmt_x, ratio_range
from .results import Results


@dataclasses.dataclass
class Verdict:
    spec: GoalSpec
    measured: str
    met: bool | None  # None: not measured in this run

    def row(self) -> str:
        verdict = "not measured" if self.met is None else ("**met**" if self.met else "**NOT met**")
        return f"| #{self.spec.issue} | {self.spec.what} | {self.measured} | {self.spec.goal} | {verdict} |"


def stage(res: Results, name: str, key: str) -> float | None:
    """`stages_ms[key]` of a benchmark, the guest's own clock for that stage (ms)."""
    b = res.get(name)
    if b is None:
        return None
    stages = b.extra.get("stages_ms", {})
    return float(stages[key]) if key in stages else None


def _measure(res: Results, m: Ratio | StageRatio | StageOverMedian | Median) -> tuple[float, str] | None:
    """The measure's value and how it was obtained, or None when the run lacks what it needs."""
    if isinstance(m, Median):
        b = res.get(m.name)
        return None if b is None else (b.median, fmt_t(b.median))
    if isinstance(m, Ratio):
        a, b = res.get(m.num), res.get(m.den)
        if a is None or b is None:
            return None
        r, lo, hi = ratio_range(a, b)
        return r, f"{fmt_t(a.median)} / {fmt_t(b.median)} = **{fmt_x(r)}** (IQR bound {fmt_x(lo)}–{fmt_x(hi)})"
    if isinstance(m, StageRatio):
        num, den = stage(res, m.num, m.stage), stage(res, m.den, m.stage)
        if num is None or den is None:
            return None
        return num / den, f"{fmt_ms(num)} ms / {fmt_ms(den)} ms = {fmt_x(num / den)}"
    num, base = stage(res, m.num, m.stage), res.get(m.den)
    if num is None or base is None:
        return None
    r = num / (base.median * 1e3)
    return r, f"{fmt_ms(num)} ms / {fmt_t(base.median)} = **{fmt_x(r)}**"


def _paired(res: Results, spec: GoalSpec, m: Paired) -> Verdict:
    b = res.get(m.name)
    pr = None if b is None else b.extra.get("paired_with_ort")
    fallback = _measure(res, m.fallback)
    if not pr:
        return Verdict(spec, "—", None) if fallback is None else Verdict(spec, fallback[1], spec.met(fallback[0]))
    r = float(pr[m.key])
    if m.key == "inference_ratio":
        mine, theirs = pr["guest_inference_ms"], pr["ort_run_ms"]
    else:
        mine, theirs = pr["guest_ms"], pr["ort_answer_ms"]
    separate = f"; separate benchmarks: {fmt_x(fallback[0])}" if fallback else ""
    measured = (
        f"{fmt_ms(mine)} ms / {fmt_ms(theirs)} ms, paired: **{fmt_x(r)}** ({pr['rounds']} interleaved rounds){separate}"
    )
    return Verdict(spec, measured, spec.met(r))


def judge(res: Results, spec: GoalSpec) -> Verdict:
    m = spec.measure
    if isinstance(m, Paired):
        return _paired(res, spec, m)
    got = _measure(res, m)
    return Verdict(spec, "—", None) if got is None else Verdict(spec, got[1], spec.met(got[0]))


def verdicts(res: Results) -> list[Verdict]:
    return [judge(res, spec) for spec in GOALS]
