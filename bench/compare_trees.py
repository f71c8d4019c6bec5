"""Call overhead and cold start of two revisions of edgewasm, measured alternately in one session.

A refactor must not move these figures, and absolute times on a shared machine drift by more than a refactor's
effect: so each revision's `src/` is exported (`git archive`), and child interpreters time the two in turn, ABAB,
with the same guest, the same warm disk cache and the same interpreter. The medians of the rounds and their
ratio (new / old) are printed as a table.

    python bench/compare_trees.py 228e08b HEAD            # old new
    python bench/compare_trees.py HEAD~1 HEAD --rounds 3 --calls 2000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "wasm" / "echo.wat"

#: Run in a child with PYTHONPATH at one revision's src; prints {"small": s, "raw": s, "cold": s}.
_CHILD = r"""
import json, statistics, sys, time
import edgewasm
assert edgewasm.__file__.startswith(sys.argv[1]), edgewasm.__file__
guest_path, cache, calls = sys.argv[2], sys.argv[3], int(sys.argv[4])

def per_call(fn, n):
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t) / n)
    return statistics.median(samples)

def forget():
    # The in-memory module cache dropped, engines kept: what bench/test_coldstart.py's AOT-cache row measures.
    try:
        from edgewasm._runtime import default_runtime
    except ImportError:  # before edgewasm.Runtime: the cache was a module global
        from edgewasm import _loader
        _loader.forget()
    else:
        default_runtime().modules.clear()

def cold_load():
    forget()
    edgewasm.load(guest_path, cache=cache).close()

guest = edgewasm.load(guest_path, cache=cache)
request = {"model_id": "m", "x": 1}
out = {
    "small": per_call(lambda: guest.infer(request), calls),
    "raw": per_call(lambda: guest.infer_bytes(b"\x80"), calls),
    "cold": per_call(cold_load, max(calls // 100, 5)),
}
print(json.dumps(out))
"""

FIGURES = {"small": "infer of a small map (µs)", "raw": "infer_bytes, 1 byte (µs)", "cold": "cold load (µs)"}


def export(rev: str, into: Path) -> Path:
    """The revision's src/ under `into`; fails with git's message for an unknown revision."""
    run = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=False)
    if run.returncode != 0:
        sys.exit(f"compare_trees: cannot export {rev!r}: {run.stderr.decode().strip()}")
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=run.stdout, check=True)
    return into / "src"


def measure(src: Path, cache: Path, calls: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(GUEST), str(cache), str(calls)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if run.returncode != 0:
        sys.exit(f"compare_trees: the child for {src} failed:\n{run.stderr[-2000:]}")
    result: dict[str, float] = json.loads(run.stdout.splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the revision before (a commit, tag or branch)")
    parser.add_argument("new", help="the revision after")
    parser.add_argument("--rounds", type=int, default=7, help="ABAB rounds (default 7)")
    parser.add_argument("--calls", type=int, default=20000, help="calls per timed batch (default 20000)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgewasm-compare-") as tmp:
        base = Path(tmp)
        trees = {"old": export(args.old, base / "old"), "new": export(args.new, base / "new")}
        rounds: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        for i in range(args.rounds):
            for which, src in trees.items():
                # One cache per tree: revisions may key their artifacts differently.
                rounds[which].append(measure(src, base / f"cache-{which}", args.calls))
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr)
    print(f"| figure ({args.rounds} rounds, median) | {args.old} | {args.new} | new / old |")
    print("|---|---:|---:|---:|")
    for key, what in FIGURES.items():
        old = statistics.median(r[key] for r in rounds["old"]) * 1e6
        new = statistics.median(r[key] for r in rounds["new"]) * 1e6
        print(f"| {what} | {old:.1f} | {new:.1f} | {new / old:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
