"""bench/compare_trees.py (issue 9's before/after measurement) runs: two revisions, alternated, a table out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "compare_trees.py"

pytestmark = pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs a git checkout (it exports revisions)")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_two_revisions_make_a_table_of_three_figures() -> None:
    run = _run("HEAD", "HEAD", "--rounds", "1", "--calls", "200")
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and line.endswith("x |")]
    assert [r.split("|")[1].strip() for r in rows] == [
        "infer of a small map (µs)",
        "infer_bytes, 1 byte (µs)",
        "cold load (µs)",
    ]
    for row in rows:
        old, new = (float(cell) for cell in row.split("|")[2:4])
        assert old > 0 and new > 0


def test_an_unknown_revision_is_one_clear_line() -> None:
    run = _run("no-such-revision-xyz", "HEAD", "--rounds", "1", "--calls", "10")
    assert run.returncode != 0
    assert "cannot export 'no-such-revision-xyz'" in run.stderr
    assert "Traceback" not in run.stderr
