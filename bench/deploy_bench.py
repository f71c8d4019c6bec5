"""The serving image under podman: its size, the time from `podman run` to ready, and `edgewasm serve`'s figures
inside the container under the article's limits (`--memory 128m --cpus 0.5`), on loopback, bounded.

    python bench/deploy_bench.py               # ~3 minutes on 2 cores; writes bench/results/deploy.json
    python bench/deploy_bench.py --quick       # a short smoke run (numbers too noisy to keep)

Needs podman and the image (`make image`); podman is run with runc and explicit ulimits (docs/deploy.md). Every
figure comes from this one run; compare ratios, not times. The pure classifier runs with the Deployment's
arguments and limits; the WASI-NN classifier with the overlay's, and once more at 128 MiB to show why it needs more.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CAT = ROOT / "examples" / "cat.jpg"
sys.path.insert(0, str(HERE))
from _loadgen import Run, run_load  # noqa: E402
from serve_bench import oip, summarize  # noqa: E402

PURE = ["classifier=/opt/edgewasm/wasm/classifier.wasm", "--task", "classifier=image-classification"]
NN = ["wasinn-classifier=/opt/edgewasm/wasm/wasinn_classifier.wasm", "--task", "wasinn-classifier=image-classification",
      "--nn-preload", "efficientnet-lite0"]  # fmt: skip
COMMON = ["--instances", "1", "--queue", "8", "--timeout", "20", "--memory-limit", "64MiB", "--no-access-log"]
#: (label, model, arguments, --memory, --cpus): the Deployment's limits, the overlay's, and WASI-NN in 128 MiB.
SERVICES = [
    ("pure classifier, 128m / 0.5 CPU", "classifier", PURE, "128m", "0.5"),
    ("WASI-NN classifier, 256m / 1 CPU", "wasinn-classifier", NN, "256m", "1"),
    ("WASI-NN classifier, 128m / 0.5 CPU", "wasinn-classifier", NN, "128m", "0.5"),
]
CONCURRENCY = (1, 4)
READY_TIMEOUT = 180.0


def _conf(tmp: Path) -> dict[str, str]:
    conf = tmp / "containers.conf"
    conf.write_text('[engine]\nruntime = "runc"\n\n[containers]\n'
                    'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n')  # fmt: skip
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(env: dict[str, str], *args: str, check: bool = True) -> str:
    r = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise SystemExit(f"podman {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class Container:
    """One `podman run` of the image, read-only, with the limits given; the cache on `volume` (None: anonymous)."""

    def __init__(self, env: dict[str, str], image: str, args: list[str], memory: str, cpus: str,
                 volume: str | None = None) -> None:  # fmt: skip
        self.env, self.port = env, _port()
        cache = f"{volume}:/var/cache/edgewasm" if volume else "/var/cache/edgewasm"
        self.t0 = time.perf_counter()
        self.id = podman(env, "run", "-d", "--no-healthcheck", "--read-only", "--tmpfs", "/tmp:size=8m", "-v", cache,
                         "--memory", memory, "--memory-swap", memory, "--cpus", cpus,
                         "-p", f"127.0.0.1:{self.port}:8000", image, *args).strip()  # fmt: skip
        self.ready_s: float | None = None

    def wait_ready(self) -> float | None:
        deadline = self.t0 + READY_TIMEOUT
        while time.perf_counter() < deadline:
            if _status(f"http://127.0.0.1:{self.port}/v2/health/ready") == 200:
                self.ready_s = time.perf_counter() - self.t0
                return self.ready_s
            if not self.state()["Running"]:
                return None
            time.sleep(0.05)
        return None

    def state(self) -> dict[str, Any]:
        return dict(json.loads(podman(self.env, "inspect", self.id))[0]["State"])

    def memory_mib(self) -> dict[str, float]:
        """The server's peak RSS (VmHWM of PID 1) and the cgroup's peak (page cache included), MiB."""
        script = ("grep VmHWM /proc/1/status | tr -s ' ' | cut -d' ' -f2; "
                  "cat /sys/fs/cgroup/memory.peak 2>/dev/null || cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes")
        out = podman(self.env, "exec", self.id, "sh", "-c", script, check=False).split()
        if len(out) < 2:
            return {}
        return {"server_peak_rss_mib": round(int(out[0]) / 1024, 1), "cgroup_peak_mib": round(int(out[1]) / 2**20, 1)}

    def stop(self) -> int:
        podman(self.env, "stop", "--time", "25", self.id, check=False)
        state = json.loads(podman(self.env, "inspect", self.id))[0]["State"]
        podman(self.env, "rm", "--force", self.id, check=False)
        return int(state["ExitCode"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="localhost/edgewasm:latest")
    ap.add_argument("--seconds", type=float, default=10.0, help="per load run (each run also stops at --count)")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--starts", type=int, default=3, help="podman runs per start-up figure")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "deploy.json")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.count, args.starts = 2.0, 40, 1
    tmp = Path(tempfile.mkdtemp(prefix="edgewasm-deploy-bench-"))
    env = _conf(tmp)
    if subprocess.run(["podman", "image", "exists", args.image], env=env).returncode != 0:
        raise SystemExit(f"no image {args.image}: run `make image`")
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_start": round(os.getloadavg()[0], 1),
        "image": args.image,
        "image_mb": round(int(podman(env, "image", "inspect", "--format", "{{.Size}}", args.image)) / 1e6, 1),
        "seconds": args.seconds,
        "count": args.count,
    }
    layers = podman(env, "history", "--format", "{{.Size}}\t{{.CreatedBy}}", args.image).splitlines()
    parts = (line.partition("\t") for line in layers)
    results["layers"] = [{"size": size, "created_by": by[:160]} for size, _, by in parts if not size.startswith("0 ")]

    # 1. From `podman run` to ready: a cold start compiles the module into the cache volume; a warm one (the same
    #    volume, as after a container restart in its pod) maps the verified artifact.
    volume = f"edgewasm-bench-cache-{os.getpid()}"
    starts: dict[str, list[float | None]] = {"cold": [], "warm": []}
    try:
        for i in range(args.starts):
            podman(env, "volume", "rm", "--force", volume, check=False)
            for kind in ("cold", "warm"):
                c = Container(env, args.image, [*PURE, *COMMON], "128m", "0.5", volume)
                try:
                    starts[kind].append(c.wait_ready())
                finally:
                    c.stop()
            print(f"start {i + 1}: cold {starts['cold'][-1]} s, warm {starts['warm'][-1]} s", flush=True)
    finally:
        podman(env, "volume", "rm", "--force", volume, check=False)
    results["ready_s"] = {k: [round(x, 2) if x is not None else None for x in v] for k, v in starts.items()}

    # 2. Load inside the container, then its memory and whether the kernel killed it.
    services = []
    for label, model, margs, memory, cpus in SERVICES:
        c = Container(env, args.image, [*margs, *COMMON], memory, cpus)
        row: dict[str, Any] = {"service": label, "memory": memory, "cpus": cpus}
        try:
            row["ready_s"] = c.wait_ready()
            if row["ready_s"] is not None:
                request = oip(model, {"image": CAT.read_bytes(), "top_k": 1})
                row["runs"] = []
                for conc in CONCURRENCY:
                    try:
                        run: Run = run_load("127.0.0.1", c.port, [request], conc, args.seconds, args.count)
                    except OSError as e:  # the container died under the load (the kernel's OOM kill)
                        row["runs"].append({"concurrency": conc, "error": f"{type(e).__name__}: {e}"})
                        break
                    row["runs"].append({"concurrency": conc, **summarize(run)})
                    row.update(c.memory_mib())
            state = c.state()
            row["oom_killed"] = bool(state.get("OOMKilled"))
            row["running_after_load"] = bool(state["Running"])
            row["exit_code"] = int(state["ExitCode"])
        finally:
            code = c.stop()
        if row["running_after_load"]:
            row["exit_code"] = code  # SIGTERM: drained and exited
        print(json.dumps(row), flush=True)
        services.append(row)
    results["services"] = services
    results["load_average_end"] = round(os.getloadavg()[0], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
