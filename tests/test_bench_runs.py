"""The benchmarks cannot rot: every one of them runs once (no timing asserted), the report script turns a real
pytest-benchmark JSON into the document, and docs/benchmarks.md is what the report makes of the committed JSON."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"

#: Benchmarks that need nothing optional (Extism aside, a dev extra): they must pass, never skip.
ALWAYS = ("bench/test_calls.py", "bench/test_coldstart.py")


#: What the benchmarks need beyond edgewasm: without one, its rows skip (and fewer than all benchmarks run).
BENCH_OPTIONAL = ("onnxruntime", "openvino", "extism", "wasmtime_cli", "PIL", "skimage", "matplotlib")


def _pytest_bench(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    from _model_fixtures import _installed_store

    # The session's HOME is a temporary one (conftest): the benchmarks get the session's model store.
    env = dict(os.environ, EDGEWASM_CACHE_DIR=str(tmp_path / "cache"), EDGEWASM_MODELS=str(_installed_store()))
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider", "-rs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_benchmark_runs_once(tmp_path: Path) -> None:
    junit = tmp_path / "bench.xml"
    run = _pytest_bench(tmp_path, "bench", "--benchmark-disable", f"--junitxml={junit}", timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    cases = ET.parse(junit).getroot().iter("testcase")
    passed: list[str] = []
    skipped: list[str] = []
    for case in cases:
        name = f"{case.get('classname')}::{case.get('name')}"
        (skipped if case.find("skipped") is not None else passed).append(name)
    for module in ALWAYS:
        dotted = module.removesuffix(".py").replace("/", ".")
        wrong = [s for s in skipped if s.startswith(dotted) and "extism" not in s]
        assert not wrong, f"{module} must never skip: {wrong}"
    missing = [m for m in BENCH_OPTIONAL if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{len(passed)} benchmarks ran, the others need {', '.join(missing)} (optional extras)")
    assert len(passed) >= 40, f"only {len(passed)} benchmarks ran: {run.stdout[-3000:]}"


def test_report_renders_a_real_run(tmp_path: Path) -> None:
    """A short real run (call benchmarks, tiny time budget) through bench/report.py."""
    results = tmp_path / "calls.json"
    run = _pytest_bench(
        tmp_path,
        "bench/test_calls.py",
        f"--benchmark-json={results}",
        "--benchmark-max-time=0.02",
        "--benchmark-min-rounds=3",
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    raw = json.loads(results.read_text())
    assert raw["edgewasm"]["versions"]["wasmtime"]
    assert all(len(b["quantiles"]) == 101 for b in raw["benchmarks"])
    text = _report(results, tmp_path)
    assert "| #2 | small request" in text and "not measured" in text  # the pipeline goals were not run here
    assert "Extism Python SDK" in text
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "img" / "latency.png").stat().st_size > 1000


def test_report_refuses_a_disabled_run(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"benchmarks": []}))
    rep = subprocess.run(
        [sys.executable, "bench/report.py", str(empty), "--out", str(tmp_path / "x.md")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rep.returncode == 2 and "no benchmark results" in rep.stderr
    assert not (tmp_path / "x.md").exists()


def _report(results: Path, tmp_path: Path) -> str:
    """Run bench/report.py on `results` into tmp_path; the Markdown it wrote."""
    out = tmp_path / "benchmarks.md"
    rep = subprocess.run(
        [sys.executable, "bench/report.py", str(results), "--out", str(out), "--img", str(tmp_path / "img")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rep.returncode == 0, rep.stderr
    return out.read_text()


@pytest.mark.skipif(not RESULTS.is_file(), reason="no committed bench/results/latest.json")
def test_docs_match_the_committed_results(tmp_path: Path) -> None:
    """docs/benchmarks.md is generated, never hand-edited: regenerating it from the committed JSON changes nothing."""
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib missing: the report would add a note about the plots")
    assert _report(RESULTS, tmp_path) == (ROOT / "docs" / "benchmarks.md").read_text(), (
        "docs/benchmarks.md differs from `python bench/report.py bench/results/latest.json`: regenerate it"
    )
