"""docs/benchmarks.md as a whole: how the run was made, the goals, the sections, the plots; and the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import sections
from .goals import verdicts
from .plots import plots
from .prose import prose
from .results import Results

ROOT = Path(__file__).resolve().parent.parent.parent


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def _how(res: Results, rel_json: str) -> list[str]:
    meta = res.meta
    m = meta.get("machine", {})
    v = meta.get("versions", {})
    load = (meta.get("loadavg_start") or [0, 0, 0])[0], (meta.get("loadavg_end") or [0, 0, 0])[0]
    commit = res.raw.get("commit_info", {})
    mode = (
        " (thorough mode: `make bench BENCH_FLAGS=--thorough`)."
        if meta.get("thorough")
        else " (quick mode; `make bench BENCH_FLAGS=--thorough` for more rounds)."
    )
    busy = " (the machine was busy: absolute times are inflated)" if load[0] > 1.5 else " (quiet)"
    modules = ", ".join(f"{k} {h[:12]}" for k, h in meta.get("modules", {}).items()) or "not recorded"
    return [
        "## How this was run",
        "",
        f"- Command: `make bench` = `{meta.get('command', '?')}` then `python bench/report.py {rel_json}`{mode}",
        f"- When: {res.raw.get('datetime', '?')}; commit {commit.get('id', '?')[:12]}"
        f"{' (dirty tree)' if commit.get('dirty') else ''}.",
        f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('ram_gib', '?')} GiB RAM, "
        f"{m.get('platform', '?')}. Load average (1 min) at the start {load[0]:.2f}{busy}, at the end "
        f"{load[1]:.2f} (this includes the benchmark's own processes).",
        f"- Modules measured (sha256, first 12 hex digits): {modules}.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        *prose("spread"),
        "",
        *prose("compare"),
        "",
    ]


def render(res: Results, json_path: Path, img: Path) -> str:
    rel_json = _rel(json_path)
    lines = ["# Benchmarks", "", *prose("header", json=rel_json), "", *_how(res, rel_json), "## Goals", ""]
    vs = verdicts(res)
    lines += ["| issue | what | measured | goal | verdict |", "|---|---|---|---|---|", *(v.row() for v in vs), ""]
    missed = [v for v in vs if v.met is False]
    if missed:
        lines += [*prose("missed"), ""]
        lines += [f"- #{v.spec.issue} {v.spec.what}: {v.spec.why}" for v in missed] + [""]
    pipe, stacks = sections.pipeline(res)
    for s in (
        sections.coldstart(res),
        sections.process(res),
        sections.calls(res),
        pipe,
        sections.tensor(res),
        sections.sizes(res),
        sections.comparison(res),
    ):
        lines += s
    note = plots(res, stacks, img)
    if note:
        lines += [*prose(note), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write docs/benchmarks.md and its plots from a pytest-benchmark JSON.")
    ap.add_argument("json", type=Path, help="pytest-benchmark JSON (bench/results/latest.json)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--img", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument(
        "--partial",
        action="store_true",
        help="accept a run of only some benchmarks (their goals read 'not measured'); without it a missing "
        "benchmark is an error",
    )
    args = ap.parse_args(argv)
    try:
        raw = json.loads(args.json.read_text())
    except (OSError, ValueError) as e:
        print(f"report: error: cannot read {args.json}: {e}", file=sys.stderr)
        return 2
    res = Results(raw)
    if not res.benches:
        print(
            f"report: error: {args.json} holds no benchmark results (was the run made with --benchmark-disable?)",
            file=sys.stderr,
        )
        return 2
    unknown = res.unknown()
    if unknown:
        print(
            f"report: error: {len(unknown)} benchmark(s) of this run are not in bench/reporting/catalogue.py "
            f"(renamed or new?): {', '.join(unknown)}",
            file=sys.stderr,
        )
        return 2
    required, optional = res.missing()
    if required and not args.partial:
        print(
            f"report: error: {len(required)} benchmark(s) missing from this run: {', '.join(required)} "
            "(run the whole suite with `make bench`, or pass --partial for a partial run)",
            file=sys.stderr,
        )
        return 2
    for line in optional:
        print(f"report: note: not in this run: {line}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(res, args.json, args.img))
    print(f"wrote {_rel(args.out)} and plots in {_rel(args.img)}")
    return 0
