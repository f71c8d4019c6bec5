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
from bench.reporting.catalogue import BENCHMARKS, GOALS, names_in

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"


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
    skipped = {case.get("name") for case in cases if case.find("skipped") is not None}
    # A benchmark may be skipped only when the catalogue says why it can be absent (an optional package).
    wrong = sorted(n for n in skipped if n in BENCHMARKS and BENCHMARKS[n].optional is None)
    assert not wrong, f"these benchmarks must never skip: {wrong}\n{run.stdout[-3000:]}"


def test_the_catalogue_is_what_the_benchmarks_are() -> None:
    """Every catalogued benchmark exists under that name, every goal reads catalogued ones (a rename fails here)."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    collected = {line.split("::", 1)[1] for line in run.stdout.splitlines() if "::" in line}
    assert set(BENCHMARKS) <= collected, f"catalogued but not collected: {sorted(set(BENCHMARKS) - collected)}"
    for goal in GOALS:
        assert set(names_in(goal.measure)) <= set(BENCHMARKS), goal.what


def test_a_benchmark_outside_the_catalogue_is_refused(tmp_path: Path) -> None:
    stray = ROOT / "bench" / "test_zz_stray_for_a_test.py"
    stray.write_text("def test_stray(benchmark):\n    benchmark(lambda: None)\n")
    try:
        run = _pytest_bench(tmp_path, str(stray), "--benchmark-disable", timeout=120)
    finally:
        stray.unlink()
    assert run.returncode != 0 and "test_stray" in run.stdout + run.stderr and "catalogue" in run.stdout + run.stderr


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
    whole = _run_report(results, tmp_path)
    assert whole.returncode == 2 and "missing from this run" in whole.stderr
    assert "test_cold_compile[hello]" in whole.stderr
    text = _report(results, tmp_path, "--partial")
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


def test_report_refuses_an_uncatalogued_benchmark(tmp_path: Path) -> None:
    """A result the catalogue does not know (a renamed benchmark) is an error, not a silent 'not measured'."""
    raw = json.loads(RESULTS.read_text()) if RESULTS.is_file() else pytest.skip("no committed results")
    raw["benchmarks"][0]["name"] = "test_renamed_meanwhile"
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps(raw))
    rep = _run_report(renamed, tmp_path)
    assert rep.returncode == 2 and "test_renamed_meanwhile" in rep.stderr and "catalogue" in rep.stderr


def _run_report(results: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "benchmarks.md"
    return subprocess.run(
        [sys.executable, "bench/report.py", str(results), "--out", str(out), "--img", str(tmp_path / "img"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _report(results: Path, tmp_path: Path, *args: str) -> str:
    """Run bench/report.py on `results` into tmp_path; the Markdown it wrote."""
    rep = _run_report(results, tmp_path, *args)
    assert rep.returncode == 0, rep.stderr
    return (tmp_path / "benchmarks.md").read_text()


@pytest.mark.skipif(not RESULTS.is_file(), reason="no committed bench/results/latest.json")
def test_docs_match_the_committed_results(tmp_path: Path) -> None:
    """docs/benchmarks.md is generated, never hand-edited: regenerating it from the committed JSON changes nothing."""
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib missing: the report would add a note about the plots")
    assert _report(RESULTS, tmp_path) == (ROOT / "docs" / "benchmarks.md").read_text(), (
        "docs/benchmarks.md differs from `python bench/report.py bench/results/latest.json`: regenerate it"
    )


#: The bounded scripts that write a generated block into docs/deploy.md from their committed results JSON.
DEPLOY_BLOCKS = [
    ("bench/deploy_bench.py", "bench/results/deploy.json"),
    ("bench/ray_bench.py", "bench/results/ray.json"),
]


@pytest.mark.parametrize(("script", "results"), DEPLOY_BLOCKS, ids=lambda s: Path(s).stem)
def test_deploy_blocks_are_what_the_scripts_render(tmp_path: Path, script: str, results: str) -> None:
    """docs/deploy.md's figures are generated: re-rendering its block from the committed JSON changes nothing (and
    the report copies that block into docs/benchmarks.md, which test_docs_match_the_committed_results checks)."""
    doc = tmp_path / "deploy.md"
    doc.write_text((ROOT / "docs" / "deploy.md").read_text())
    run = subprocess.run([sys.executable, script, "--render", results, "--doc", str(doc)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    again = f"docs/deploy.md differs: python {script} --render {results}"
    assert doc.read_text() == (ROOT / "docs" / "deploy.md").read_text(), again
    marker = f"<!-- generated by {script}: begin -->"
    assert marker in doc.read_text()
    doc.write_text(doc.read_text().replace(marker, ""))
    run = subprocess.run([sys.executable, script, "--render", results, "--doc", str(doc)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode != 0 and "has no generated block" in run.stderr, run.stderr
