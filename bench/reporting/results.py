"""One run's results as the report reads them, checked against the catalogue."""

from __future__ import annotations

import dataclasses
from typing import Any

from .catalogue import BENCHMARKS
from .fmt import fmt_t


@dataclasses.dataclass
class Bench:
    name: str
    group: str
    median: float
    q1: float
    q3: float
    min: float
    max: float
    rounds: int
    extra: dict[str, Any]
    quantiles: list[float]

    @property
    def spread(self) -> str:
        return f"{fmt_t(self.q1)}–{fmt_t(self.q3)}"


class Results:
    """The benchmarks of one pytest-benchmark JSON by name; `get` accepts only names in the catalogue."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.meta: dict[str, Any] = raw.get("edgewasm", {})
        self.benches: dict[str, Bench] = {}
        for b in raw.get("benchmarks", []):
            s = b["stats"]
            self.benches[b["name"]] = Bench(
                b["name"],
                b.get("group") or "",
                s["median"],
                s["q1"],
                s["q3"],
                s["min"],
                s["max"],
                s["rounds"],
                b.get("extra_info", {}),
                b.get("quantiles", []),
            )

    def get(self, name: str) -> Bench | None:
        """The named benchmark, or None when this run lacks it. A name outside the catalogue is a bug here."""
        if name not in BENCHMARKS:
            raise KeyError(f"{name} is not in bench/reporting/catalogue.py")
        return self.benches.get(name)

    def unknown(self) -> list[str]:
        """Benchmarks in the run that the catalogue does not know (renamed, or added without an entry)."""
        return sorted(set(self.benches) - set(BENCHMARKS))

    def missing(self) -> tuple[list[str], list[str]]:
        """Catalogued benchmarks absent from the run: (required ones, optional ones with their reasons)."""
        required, optional = [], []
        for name, entry in BENCHMARKS.items():
            if name in self.benches:
                continue
            if entry.optional is None:
                required.append(name)
            else:
                optional.append(f"{name} ({entry.optional})")
        return required, optional
