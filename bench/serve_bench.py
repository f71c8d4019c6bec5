"""Serving benchmarks: `edgewasm serve` against the same ASGI stack without WebAssembly, on loopback, bounded.

    python bench/serve_bench.py                  # ~3 minutes on 2 cores; writes bench/results/serve.json and
                                                 # the tables between the markers in docs/serving.md
    python bench/serve_bench.py --soak 600       # adds the 10-minute soak at concurrency 8
    python bench/serve_bench.py --quick          # a short smoke run (numbers too noisy to keep)
    python bench/serve_bench.py --only echo --concurrency 1   # one section (or several: echo,pure), at c=1 only;
                                                 # prints its rows and the echo ratio, writes no file

Every figure is measured in this one run, servers and baselines alike, with the same closed-loop client
(`_loadgen.py`); compare the ratios, not the times. Needs the model store (`edgewasm models install`), the `serve`
extra and, for the WASI-NN rows and the baseline, onnxruntime and pillow.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WASM = ROOT / "wasm"
CAT = ROOT / "examples" / "cat.jpg"
sys.path.insert(0, str(HERE))
from _loadgen import Request, Run, http_request, run_load  # noqa: E402
from edgewasm._paths import models_dir  # noqa: E402
from edgewasm.serve.mapping import request_tensors  # noqa: E402
from edgewasm.serve.tensors import HEADER_LENGTH, write_body  # noqa: E402

BEGIN, END = "<!-- serve-bench:begin -->", "<!-- serve-bench:end -->"
POD_LIMIT_MIB = 128
#: The sections `--only` can name: the throughput rows of the echo guest (with the bare endpoint), the pure and the
#: WASI-NN classifier (with the plain ONNX Runtime service), the mixed traffic, the peak RSS, the soak.
SECTIONS = ("echo", "pure", "wasinn", "mixed", "rss", "soak")


# -- processes ---------------------------------------------------------------------------------------------------------


class Proc:
    """A server process on 127.0.0.1; its URL comes from its first JSON log line that has one."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env={**os.environ, **(env or {})}, text=True)  # fmt: skip
        assert self.p.stderr is not None
        self.url = ""
        end = time.monotonic() + 120
        for line in self.p.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "url" in entry:
                self.url = entry["url"]
                break
            if time.monotonic() > end:
                break
        if not self.url:
            raise SystemExit(f"server did not start: {' '.join(argv)}")
        self.port = int(self.url.rsplit(":", 1)[1])
        # Keep reading stderr so the server never blocks on a full pipe.
        import threading

        threading.Thread(target=lambda: [None for _ in self.p.stderr], daemon=True).start()  # type: ignore[union-attr]

    def wait_ready(self, path: str = "/v2/health/ready") -> None:
        end = time.monotonic() + 180
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(self.url + path, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.url} never became ready")

    def memory(self) -> dict[str, float]:
        """Resident memory of the server process, MiB: VmRSS, VmHWM (peak), RssAnon, RssFile (shared libraries)."""
        lines = Path(f"/proc/{self.p.pid}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}

    def rss_mib(self) -> tuple[float, float]:
        """(current, peak) resident memory of the server process."""
        m = self.memory()
        return m["VmRSS"], m["VmHWM"]

    def stop(self) -> int:
        self.p.terminate()
        try:
            return self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()


def edgewasm_serve(repo: dict[str, str], tmp: Path, extra: list[str] | None = None) -> Proc:
    root = tmp / f"repo-{len(list(tmp.iterdir()))}"
    for name, toml in repo.items():
        (root / name).mkdir(parents=True)
        (root / name / "model.toml").write_text(toml)
    argv = [sys.executable, "-m", "edgewasm", "serve", "--repository", str(root), "--port", "0",
            "--log-format", "json", "--no-access-log", *(extra or [])]  # fmt: skip
    # No access log: the baselines write none either.
    proc = Proc(argv)
    proc.wait_ready()
    return proc


def baseline(store: Path) -> Proc:
    proc = Proc([sys.executable, str(HERE / "serve_baseline.py"), str(store / "efficientnet-lite0")])
    _wait_port(proc)
    return proc


def _wait_port(proc: Proc) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            req = urllib.request.Request(proc.url + "/echo", data=b"x", method="POST")
            with urllib.request.urlopen(req, timeout=5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("baseline never answered")


# -- requests ----------------------------------------------------------------------------------------------------------


def oip(model: str, request: dict[str, Any], kind: str = "good") -> Request:
    """An OIP request as `edgewasm.Client` sends it: binary tensors, binary outputs."""
    inputs, params = request_tensors(request)
    params["binary_data_output"] = True
    body, length = write_body({"parameters": params}, "inputs", inputs, {t.name for t in inputs})
    headers = {"Content-Type": "application/octet-stream"}
    if length is not None:
        headers[HEADER_LENGTH] = str(length)
    return Request(kind, http_request("POST", f"/v2/models/{model}/infer", body, headers))


ECHO_JSON = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello, edge"]}]})


def echo_requests() -> dict[str, Request]:
    import msgpack

    body = ECHO_JSON.encode()
    return {
        "echo guest, OIP JSON": Request("good", http_request("POST", "/v2/models/echo/infer", body,
                                                             {"Content-Type": "application/json"})),
        "echo guest, msgpack /call": Request("good", http_request("POST", "/models/echo/call",
                                             msgpack.packb({"text": "hello, edge"}),
                                             {"Content-Type": "application/msgpack", "Accept": "application/msgpack"})),
        "bare Starlette echo": Request("good", http_request("POST", "/echo", body,
                                                            {"Content-Type": "application/json"})),
    }  # fmt: skip


# -- runs --------------------------------------------------------------------------------------------------------------


def summarize(run: Run, kind: str | None = None) -> dict[str, float]:
    return {
        "requests": len(run.of(kind)),
        "throughput": round(run.throughput(kind), 2),
        "p50_ms": round(run.median_ms(kind), 3),
        "p99_ms": round(run.quantile_ms(0.99, kind), 3),
        "failed": run.failures(kind),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="per run (each run also stops at --count)")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of soak at concurrency 8 (600 for the goal)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "serving.md")
    ap.add_argument(
        "--only",
        type=_sections,
        default=None,
        help=f"run only these sections ({','.join(SECTIONS)}); writes neither --out nor --doc",
    )
    ap.add_argument("--concurrency", type=_ints, default=(1, 4, 16), help="the throughput rows' (default 1,4,16)")
    args = ap.parse_args()
    only: set[str] = set(args.only or SECTIONS)
    if args.only is None and not args.soak:
        only.discard("soak")
    if args.quick:
        args.seconds, args.count = 1.5, 300
    store = models_dir()
    if not (store / "efficientnet-lite0" / "weights.ewt").is_file():
        raise SystemExit(f"no model store at {store}: run `edgewasm models install`")
    has_ort = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("PIL") is not None
    if "soak" in only and not args.soak:
        raise SystemExit("--only soak needs --soak SECONDS")
    cat = CAT.read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="edgewasm-serve-bench-"))
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": "python bench/serve_bench.py" + (f" --soak {args.soak:g}" if args.soak else ""),
        "seconds": args.seconds,
        "count": args.count,
        "load_average_start": round(os.getloadavg()[0], 1),
    }

    # 1. Throughput and latency: the guests and the baselines, side by side, each concurrency in one go.
    results["throughput"], paired = _throughput(args, only, store, tmp, cat, has_ort)
    if paired is not None:
        results["echo_paired"] = paired
    if "mixed" in only:
        results["mixed"] = _mixed(args, tmp, cat)
    if "rss" in only:
        results["rss"] = _rss(args, tmp, cat, has_ort)
    if "soak" in only:
        results["soak"] = _soak(args, tmp, cat)
    results["load_average_end"] = round(os.getloadavg()[0], 1)
    if args.only is not None:
        _print_echo_ratio(results["throughput"], results.get("echo_paired"))
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists() and not args.soak:  # keep the last soak when this run had none
        old = json.loads(args.out.read_text())
        if "soak" in old:
            results["soak"] = old["soak"]
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if not args.quick:
        write_doc(args.doc, results)
    return 0


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown section {', '.join(unknown)!r}: use {','.join(SECTIONS)}")
    return names


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(","))


def _print_echo_ratio(rows: list[dict[str, Any]], paired: dict[str, Any] | None) -> None:
    for c in sorted({r["concurrency"] for r in rows}):
        bare = _row(BARE, rows, c)
        for name in ECHO_GUEST:
            ours = _row(name, rows, c)
            if ours and bare:
                print(f"{name}: p50 at c={c} {ours['p50_ms']:.3f} ms / bare {bare['p50_ms']:.3f} ms = "
                      f"{ours['p50_ms'] / bare['p50_ms']:.2f}x", flush=True)  # fmt: skip
    for name in ECHO_GUEST:
        if paired is not None and name in paired["ratio_median"]:
            print(f"{name}: {_paired_text(paired, name)}", flush=True)


def _paired_text(paired: dict[str, Any], name: str) -> str:
    lo, hi = paired["ratio_range"][name]
    return (f"{paired['ratio_median'][name]:.2f}x the bare endpoint's p50 at c=1, the median of "
            f"{paired['rounds']} interleaved rounds' ratios (range {lo:.2f}–{hi:.2f}; p50 "
            f"{paired['p50_ms'][name]:.3f} / {paired['p50_ms'][BARE]:.3f} ms)")


#: The echo goal's rounds at c=1: the echo targets take turns, so a slow spell of the shared machine falls on all of
#: them alike, and each round's ratio compares requests sent seconds apart.
ECHO_ROUNDS = 20
BARE = "bare Starlette echo"
ECHO_GUEST = ("echo guest, OIP JSON", "echo guest, msgpack /call")


def _echo_paired(args: argparse.Namespace, targets: dict[str, tuple[Proc, Request]]) -> dict[str, Any] | None:
    """The echo guest's p50 against the bare endpoint's at c=1, from interleaved rounds: in every round each target
    gets the same number of requests in turn (the order reversed every other round); the ratio is the median over
    the rounds of ours / bare in the same round."""
    names = [n for n in (*ECHO_GUEST, BARE) if n in targets]
    if BARE not in names or len(names) < 2:
        return None
    rounds = 4 if args.quick else ECHO_ROUNDS
    per_round = max(50, args.count // 5)
    p50s: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds):
        for n in names if i % 2 == 0 else names[::-1]:
            proc, req = targets[n]
            p50s[n].append(run_load("127.0.0.1", proc.port, [req], 1, args.seconds, per_round).median_ms())
    ratios = {n: sorted(a / b for a, b in zip(p50s[n], p50s[BARE], strict=True)) for n in names if n != BARE}
    paired = {
        "rounds": rounds,
        "requests_per_round": per_round,
        "p50_ms": {n: round(statistics.median(v), 3) for n, v in p50s.items()},
        "ratio_median": {n: round(statistics.median(r), 3) for n, r in ratios.items()},
        "ratio_range": {n: [round(r[0], 3), round(r[-1], 3)] for n, r in ratios.items()},
    }
    print(json.dumps(paired), flush=True)
    return paired


def _throughput(
    args: argparse.Namespace, only: set[str], store: Path, tmp: Path, cat: bytes, has_ort: bool
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Section 1: the echo guest, the classifiers and the baselines at each concurrency, rows in one table; and the
    echo guest's interleaved rounds at c=1 (the goal's ratio)."""
    if not only & {"echo", "pure", "wasinn"}:
        return [], None
    wasm = _classifier_toml()
    repo: dict[str, str] = {}
    if "echo" in only:
        repo["echo"] = ECHO_TOML
    if "pure" in only:
        repo["classifier"] = wasm
    if has_ort and "wasinn" in only:
        repo["wasinn"] = WASINN_TOML
    server = edgewasm_serve(repo, tmp) if repo else None
    base = baseline(store) if has_ort else None
    targets: dict[str, tuple[Proc, Request]] = {}
    if "echo" in only:
        assert server is not None
        for name, req in echo_requests().items():
            if name.startswith("bare"):
                if base is not None:
                    targets[name] = (base, req)
            else:
                targets[name] = (server, req)
    if "pure" in only:
        assert server is not None
        targets["pure classifier (cat.jpg)"] = (server, oip("classifier", {"image": cat}))
    if server is not None and base is not None and "wasinn" in only:
        targets["WASI-NN classifier, ONNX Runtime (cat.jpg)"] = (server, oip("wasinn", {"image": cat}))
        targets["plain Starlette + ONNX Runtime (cat.jpg)"] = (
            base,
            Request("good", http_request("POST", "/classify", cat, {"Content-Type": "image/jpeg"})),
        )
    for proc, req in targets.values():  # warm every instance and the first-call loads
        run_load("127.0.0.1", proc.port, [req], 4, 30, 24)
    paired = None
    if "echo" in only and 1 in args.concurrency:
        paired = _echo_paired(args, targets)
    table: list[dict[str, Any]] = []
    for concurrency in args.concurrency:
        for name, (proc, req) in targets.items():
            run = run_load("127.0.0.1", proc.port, [req], concurrency, args.seconds, args.count)
            row = {"target": name, "concurrency": concurrency, **summarize(run)}
            table.append(row)
            print(json.dumps(row), flush=True)
    if server is not None:
        server.stop()
    if base is not None:
        base.stop()
    return table, paired


def _classifier_toml(instances: int = 2) -> str:
    return (f'module = "{WASM / "classifier.wasm"}"\ntask = "image-classification"\ninstances = {instances}\n'
            'timeout = 30\n')  # fmt: skip


ECHO_TOML = f'module = "{WASM / "echo.wat"}"\ninstances = 2\n'
WASINN_TOML = (f'module = "{WASM / "wasinn_classifier.wasm"}"\ntask = "image-classification"\n'
               'nn_preload = ["efficientnet-lite0"]\ninstances = 2\ntimeout = 30\n')  # fmt: skip


def _mixed(args: argparse.Namespace, tmp: Path, cat: bytes) -> dict[str, Any]:
    """Section 2."""
    wasm = _classifier_toml()
    # 2. Mixed traffic: 5% of requests to misbehaving guests, against clean runs of the same good requests (before and
    # after), for two kinds of good traffic: the classifier, and the echo guest (many more requests per run).
    bad = {
        "spin": f'module = "{WASM / "spin.wat"}"\ninstances = 1\nqueue = 2\ntimeout = 0.25\n',
        "trap": f'module = "{WASM / "trap.wat"}"\ninstances = 1\nqueue = 2\n',
        "grow": f'module = "{WASM / "grow.wat"}"\ninstances = 1\nqueue = 2\nmemory_limit = "16MiB"\n',
    }
    server = edgewasm_serve({"classifier": wasm, "echo": ECHO_TOML, **bad}, tmp)
    misbehaving = [oip(m, {"x": 1}, kind=m) for m in bad]
    mix_seconds = max(3 * args.seconds, 3.0)
    results: dict[str, Any] = {"mixed": {}}
    for good_name, good in (("classifier", oip("classifier", {"image": cat})),
                            ("echo", echo_requests()["echo guest, OIP JSON"])):  # fmt: skip
        mixed: list[Request] = []
        for i in range(60):  # every 20th request misbehaves: 5%
            mixed.append(misbehaving[(i // 20) % 3] if i % 20 == 19 else good)
        run_load("127.0.0.1", server.port, [good], 4, 30, 16)
        clean = run_load("127.0.0.1", server.port, [good], 8, mix_seconds, args.count)
        dirty = run_load("127.0.0.1", server.port, mixed, 8, mix_seconds, args.count)
        clean2 = run_load("127.0.0.1", server.port, [good], 8, mix_seconds, args.count)
        results["mixed"][good_name] = {
            "concurrency": 8,
            "clean": summarize(clean, "good"),
            "mixed_good": summarize(dirty, "good"),
            "clean_after": summarize(clean2, "good"),
            "misbehaving": {
                m: {**summarize(dirty, m), "statuses": sorted({s.status for s in dirty.of(m)})} for m in bad
            },
        }
        print(json.dumps(results["mixed"][good_name]), flush=True)
    server.stop()
    return results["mixed"]  # type: ignore[no-any-return]


def _rss(args: argparse.Namespace, tmp: Path, cat: bytes, has_ort: bool) -> list[dict[str, Any]]:
    """Section 3."""
    wasm = _classifier_toml()
    # 3. Peak RSS under load: the pure-classifier service (1 and 2 instances) and the WASI-NN one.
    rss: list[dict[str, Any]] = []
    services = [("pure classifier", 1, wasm.replace("instances = 2", "instances = 1"), "classifier"),
                ("pure classifier", 2, wasm, "classifier")]  # fmt: skip
    if has_ort:
        services.append(("WASI-NN classifier", 2, WASINN_TOML, "wasinn"))
    for label, instances, toml, model in services:
        server = edgewasm_serve({model: toml}, tmp)
        idle = server.rss_mib()[0]
        run = run_load("127.0.0.1", server.port, [oip(model, {"image": cat})], 4, args.seconds, args.count)
        mem = server.memory()
        server.stop()
        rss.append({"service": label, "instances": instances, "idle_mib": round(idle, 1),
                    "after_mib": round(mem["VmRSS"], 1), "peak_mib": round(mem["VmHWM"], 1),
                    "anon_mib": round(mem["RssAnon"], 1), "file_mib": round(mem["RssFile"], 1),
                    "requests": len(run.samples), "failed": run.failures()})  # fmt: skip
        print(json.dumps(rss[-1]), flush=True)
    return rss


def _soak(args: argparse.Namespace, tmp: Path, cat: bytes) -> dict[str, Any]:
    """Section 4: concurrency 8 for --soak seconds, RSS sampled as it runs."""
    results: dict[str, Any] = {}
    if args.soak:
        server = edgewasm_serve({"classifier": _classifier_toml(), "echo": ECHO_TOML}, tmp)
        echo = echo_requests()["echo guest, OIP JSON"]
        traffic = [oip("classifier", {"image": cat})] + [echo] * 3
        samples: list[tuple[float, float]] = []
        runs: list[Run] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.soak:
            runs.append(run_load("127.0.0.1", server.port, traffic, 8, min(10.0, args.soak), 10**9))
            samples.append((round(time.monotonic() - t0, 1), round(server.rss_mib()[0], 1)))
        peak = server.rss_mib()[1]
        server.stop()
        warm = [m for t, m in samples if t >= min(60.0, args.soak / 5)]
        results["soak"] = {
            "seconds": args.soak,
            "concurrency": 8,
            "requests": sum(len(r.samples) for r in runs),
            "failed": sum(r.failures() for r in runs),
            "rss_after_warmup_mib": [min(warm), max(warm)] if warm else None,
            "rss_first_last_mib": [warm[0], warm[-1]] if warm else None,
            "peak_mib": round(peak, 1),
            "samples": samples,
        }
        print(json.dumps({k: v for k, v in results["soak"].items() if k != "samples"}), flush=True)
    soak: dict[str, Any] = results.get("soak", {})
    return soak


# -- the document ------------------------------------------------------------------------------------------------------


def _row(target: str, rows: list[dict[str, Any]], c: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["target"] == target and r["concurrency"] == c), None)


def render(results: dict[str, Any]) -> str:
    rows = results["throughput"]
    out = [BEGIN, "", f"Measured {results['when']} on {results['machine']} (load average "
           f"{results.get('load_average_start', '?')} at the start, {results.get('load_average_end', '?')} at the end: "
           "other jobs shared the machine), loopback, closed-loop client "
           f"(`bench/_loadgen.py`), {results['seconds']:g} s per run; written by:", "",
           "<!-- doc-test: skip (minutes of load; it rewrites this section and bench/results/serve.json) -->",
           "```sh", results["command"], "```", "",
           "| target | concurrency | req/s | p50 ms | p99 ms | failed |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        out.append(f"| {r['target']} | {r['concurrency']} | {r['throughput']:.1f} | {r['p50_ms']:.2f} | "
                   f"{r['p99_ms']:.2f} | {r['failed']} |")  # fmt: skip
    goals = ["", "| goal | measured | met |", "|---|---|---|"]
    nn, ort = "WASI-NN classifier, ONNX Runtime (cat.jpg)", "plain Starlette + ONNX Runtime (cat.jpg)"
    for c in (4, 16):
        a, b = _row(nn, rows, c), _row(ort, rows, c)
        if a and b:
            ratio = a["throughput"] / b["throughput"]
            goals.append(f"| WASI-NN throughput ≥ 0.9x plain ONNX Runtime service, c={c} | {ratio:.2f}x | "
                         f"{'yes' if ratio >= 0.9 else 'no'} |")  # fmt: skip
    paired = results.get("echo_paired")
    for name in ECHO_GUEST:
        a, b = _row(name, rows, 1), _row(BARE, rows, 1)
        if paired is not None and name in paired["ratio_median"]:
            ratio = paired["ratio_median"][name]
            goals.append(f"| {name}: p50 at c=1 ≤ 1.3x the bare endpoint's | {_paired_text(paired, name)} | "
                         f"{'yes' if ratio <= 1.3 else 'no'} |")  # fmt: skip
        elif a and b:
            ratio = a["p50_ms"] / b["p50_ms"]
            met = "yes" if ratio <= 1.3 else "no"
            goals.append(f"| {name}: p50 at c=1 ≤ 1.3x the bare endpoint's | {ratio:.2f}x "
                         f"({a['p50_ms']:.2f} / {b['p50_ms']:.2f} ms) | {met} |")  # fmt: skip
    bad_lines = []
    for good_name, mixed in results["mixed"].items():
        clean_p99 = (mixed["clean"]["p99_ms"] + mixed["clean_after"]["p99_ms"]) / 2  # the runs before and after
        ratio = mixed["mixed_good"]["p99_ms"] / clean_p99
        failed = mixed["mixed_good"]["failed"]
        goals.append(f"| mixed traffic, good = {good_name} (5% misbehaving, c=8): no failed good request | {failed} "
                     f"failed of {mixed['mixed_good']['requests']} | {'yes' if failed == 0 else 'no'} |")  # fmt: skip
        goals.append(f"| mixed traffic, good = {good_name}: good p99 ≤ 1.5x the clean runs' | {ratio:.2f}x "
                     f"({mixed['mixed_good']['p99_ms']:.1f} / {clean_p99:.1f} ms) | "
                     f"{'yes' if ratio <= 1.5 else 'no'} |")  # fmt: skip
        bad_lines.append(f"good = {good_name}: " + ", ".join(
            f"{m} {v['requests']} answered {'/'.join(map(str, v['statuses']))}"
            for m, v in mixed["misbehaving"].items()))  # fmt: skip
    for r in results["rss"]:
        verdict = ("yes" if r["peak_mib"] <= POD_LIMIT_MIB else "no") if r["service"] == "pure classifier" else "—"
        goals.append(f"| peak RSS under load ≤ {POD_LIMIT_MIB} MiB: {r['service']}, {r['instances']} instance(s) | "
                     f"{r['peak_mib']:.0f} MiB (idle {r['idle_mib']:.0f}; after the load {r.get('anon_mib', 0):.0f} "
                     f"anonymous + {r.get('file_mib', 0):.0f} file-backed) | {verdict} |")  # fmt: skip
    soak = results.get("soak")
    if soak:
        lo, hi = soak["rss_after_warmup_mib"]
        goals.append(f"| soak {soak['seconds'] / 60:g} min at c=8: no failed request, RSS flat after warm-up | "
                     f"{soak['failed']} failed of {soak['requests']}; RSS {lo:.0f}–{hi:.0f} MiB | "
                     f"{'yes' if soak['failed'] == 0 and hi - lo <= 8 else 'no'} |")  # fmt: skip
    else:
        goals.append("| soak at c=8 | not run (`--soak 600`) | — |")
    return "\n".join([*out, *goals, "", f"Misbehaving requests in the mixed runs: {'; '.join(bad_lines)}.", "", END])


def write_doc(doc: Path, results: dict[str, Any]) -> None:
    text = doc.read_text() if doc.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + render(results) + tail)


if __name__ == "__main__":
    sys.exit(main())
