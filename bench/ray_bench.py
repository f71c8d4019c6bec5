"""The Ray Serve integration beside `edgewasm serve` alone, in one run: the pure classifier (one instance, one
replica) classifying the cat at concurrency 4 over the Open Inference Protocol, on loopback, bounded.

    python bench/ray_bench.py             # ~2 minutes on 2 cores; writes bench/results/ray.json
    python bench/ray_bench.py --quick     # a short smoke run

Needs the extra `ray` and the model store. Memory: the server's peak RSS for `edgewasm serve`; for Ray, the summed
RSS of every process the local Ray started (GCS, raylet, Serve's controller and proxy, the replica) after the
load. Compare ratios, not times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CAT = ROOT / "examples" / "cat.jpg"
sys.path.insert(0, str(HERE))
from _loadgen import run_load  # noqa: E402
from serve_bench import edgewasm_serve, oip, summarize  # noqa: E402

CONCURRENCY = 4
TOML = f'module = "{ROOT / "wasm" / "classifier.wasm"}"\ntask = "image-classification"\ninstances = 1\nqueue = 8\n'


def _descendants_rss_mib(pid: int) -> float:
    """Summed VmRSS of every descendant of `pid` (shared pages counted in each: an upper bound)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in (d / "status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        children.setdefault(int(fields["PPid"]), []).append(int(d.name))
        rss[int(d.name)] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, todo = 0, list(children.get(pid, []))
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total / 1024


def _wait(url: str) -> None:
    end = time.monotonic() + 180
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} never became ready")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ray.json")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.count = 3.0, 20
    import ray
    from ray import serve

    from edgewasm.serve.config import ModelConfig
    from edgewasm.serve.ray_serve import MODEL_HEADER, deployment

    request = oip("classifier", {"image": CAT.read_bytes(), "top_k": 1})
    routed = request.raw.replace(b"\r\n\r\n", f"\r\n{MODEL_HEADER}: classifier\r\n\r\n".encode(), 1)
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_start": round(os.getloadavg()[0], 1),
        "ray": ray.__version__,
        "concurrency": CONCURRENCY,
        "seconds": args.seconds,
    }
    tmp = Path(tempfile.mkdtemp(prefix="edgewasm-ray-bench-"))
    rows = []
    # 1. edgewasm serve alone.
    server = edgewasm_serve({"classifier": TOML}, tmp)
    try:
        run = run_load("127.0.0.1", server.port, [request], CONCURRENCY, args.seconds, args.count)
        rows.append({"target": "edgewasm serve", **summarize(run), "peak_rss_mib": round(server.rss_mib()[1], 1)})
    finally:
        server.stop()
    # 2. The same guest and settings as a Ray Serve deployment (one replica) on a local single-node Ray.
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = ModelConfig(name="classifier", module=ROOT / "wasm" / "classifier.wasm", instances=1, queue=8,
                             task="image-classification").checked()  # fmt: skip
        serve.run(deployment([config], autoscaling={"min_replicas": 1, "max_replicas": 1}), route_prefix="/")
        _wait(f"http://127.0.0.1:{port}")
        results["ray_start_to_ready_s"] = round(time.perf_counter() - started, 1)
        run = run_load("127.0.0.1", port, [type(request)("good", routed)], CONCURRENCY, args.seconds, args.count)
        rows.append({"target": "Ray Serve (1 replica)", **summarize(run),
                     "summed_rss_mib": round(_descendants_rss_mib(os.getpid()), 1)})  # fmt: skip
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    results["rows"] = rows
    if rows[0]["throughput"]:
        results["ray_throughput_ratio"] = round(rows[1]["throughput"] / rows[0]["throughput"], 2)
    results["load_average_end"] = round(os.getloadavg()[0], 1)
    for row in rows:
        print(json.dumps(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
