"""The document's sections, each a list of Markdown lines built from one run's results."""

from __future__ import annotations

import re
from pathlib import Path

from . import article
from .catalogue import ELSEWHERE, GUESTS, STAGES, VARIANTS
from .fmt import fmt_bytes, fmt_ms, fmt_t, fmt_x, ratio_range, table
from .prose import prose
from .results import Results

Stacks = dict[str, dict[str, float]]


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


def _with_rss(res: Results, lines: list[str], names: list[tuple[str, str]]) -> list[str]:
    """Add a peak-RSS column to a compare_table."""
    out = [lines[0][:-1] + "| peak RSS |", lines[1] + "---|"]
    for line, (name, _) in zip(lines[2:], names, strict=True):
        b = res.get(name)
        rss = b.extra.get("peak_rss_kib") if b else None
        out.append(line[:-1] + f"| {fmt_bytes(rss * 1024) if rss else '—'} |")
    return out


def coldstart(res: Results) -> list[str]:
    out = ["## Cold start in one process", "", *prose("coldstart"), ""]
    for guest in GUESTS:
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


#: The command-guest processes and the classifier processes, as the process section and its plot show them.
PROCESS_COMMAND = [
    ("test_proc_python_floor", "`python -c pass` (the floor of any Python process)"),
    ("test_proc_python_import_edgewasm", "`python -c 'import edgewasm, edgewasm._cli'` (interpreter + imports)"),
    ("test_proc_wasmtime_cli_compile", "wasmtime CLI, compiling every time (`-C cache=n`)"),
    ("test_proc_wasmtime_cli_precompiled", "wasmtime CLI, precompiled `.cwasm` (`wasmtime compile`)"),
    ("test_proc_edgewasm_warm", "`edgewasm run cat.wasm`, cache warm"),
    ("test_proc_edgewasm_cold", "`edgewasm run cat.wasm`, cache cold (empty cache dir)"),
]
PROCESS_CLASSIFIER = [
    ("test_proc_python_ort", "Python + ONNX Runtime script (bench/ort_classify.py)"),
    ("test_proc_edgewasm_classifier_warm", "`edgewasm run classifier.wasm --image`, cache warm"),
    ("test_proc_edgewasm_classifier_cold", "`edgewasm run classifier.wasm --image`, cache cold"),
    ("test_proc_edgewasm_wasinn_onnx_warm", "`edgewasm run wasinn_classifier.wasm --nn-preload ...:onnx`, warm"),
]


def process(res: Results) -> list[str]:
    out = ["## Cold start of a whole process, to the first answer", "", *prose("process"), ""]
    cmd = PROCESS_COMMAND
    out += ["### A WASI command guest (cat.wasm)", "", "Baseline: the wasmtime CLI running the precompiled module.", ""]
    out += _with_rss(res, compare_table(res, cmd, "test_proc_wasmtime_cli_precompiled"), cmd)
    floor, imports, warm = (res.get(n) for n in (cmd[0][0], cmd[1][0], "test_proc_edgewasm_warm"))
    if floor and imports and warm:
        out += [
            "",
            *prose(
                "process-split",
                warm=fmt_t(warm.median),
                floor=fmt_t(floor.median),
                imports=fmt_t(imports.median - floor.median),
                rest=fmt_t(warm.median - imports.median),
            ),
        ]
    out += ["", "### The cat photo classified (examples/cat.jpg)", "", *prose("process-classifier"), ""]
    out += _with_rss(res, compare_table(res, PROCESS_CLASSIFIER, "test_proc_python_ort"), PROCESS_CLASSIFIER)
    out += ["", "![process cold start](img/process.png)", ""]
    return out


def calls(res: Results) -> list[str]:
    out = ["## Call overhead", "", *prose("calls"), ""]
    for title, prefix in (
        ("Small request (~100 B of msgpack), msgpack on the host", "test_small"),
        ("Small request, raw bytes (no msgpack on the host)", "test_small_raw"),
        ("150 KB request (a uint8 224x224x3 array)", "test_150k"),
    ):
        names = [
            (f"{prefix}_edgewasm", "edgewasm `guest.infer`" if "raw" not in prefix else "edgewasm `infer_bytes`"),
            (f"{prefix}_public_api", "wasmtime-py public API"),
            (f"{prefix}_extism", "Extism Python SDK"),
        ]
        out += [f"### {title}", "", *compare_table(res, names, f"{prefix}_public_api"), ""]
    out += ["![call latency](img/latency.png)", ""]
    return out


def pipeline(res: Results) -> tuple[list[str], Stacks]:
    out = ["## The pipeline on the cat photo, stage by stage", "", *prose("pipeline"), ""]
    rows, stacks = [], {}
    for v in VARIANTS:
        run = res.get("test_pipeline_python_ort" if v == "python-ort" else f"test_pipeline[{v}]")
        load = res.get("test_load_python_ort" if v == "python-ort" else f"test_load[{v}]")
        if run is None:
            rows.append([VARIANTS[v], "not run", "", "", "", "", "", ""])
            continue
        st = {k: float(run.extra.get("stages_ms", {}).get(k, 0.0)) for k in STAGES[1:]}
        st["load"] = float(load.extra["load_ms"]) if load else float("nan")
        stacks[v] = st
        rows.append(
            [
                VARIANTS[v],
                *(fmt_ms(st[k]) for k in STAGES),
                f"{fmt_ms(run.median * 1e3)}",
                f"{fmt_ms(st['load'] + run.median * 1e3)}",
            ]
        )
    out += table(["variant", *STAGES, "request total", "load + request"], rows)
    out += ["", *prose("pipeline-article"), ""]
    art_rows = [[label, f"{before:g}", f"{after:g}"] for label, before, after in article.STAGES.values()]
    art_rows.append(
        [
            "total",
            f"{sum(b for _, b, _ in article.STAGES.values()):g}",
            f"{sum(a for _, _, a in article.STAGES.values()):g}",
        ]
    )
    out += table(["stage", "article before", "article after"], art_rows)
    out += ["", "![stages](img/stages.png)", ""]
    return out, stacks


def tensor(res: Results) -> list[str]:
    out = ["## The same tensor, end to end", "", *prose("tensor"), ""]
    names = [
        ("test_tensor_ort_answer", "ONNX Runtime from Python: run + softmax + top-5"),
        ("test_tensor_ort_run", "ONNX Runtime `run` alone"),
        ("test_tensor_guest[wasinn-onnx]", "WASI-NN guest, ONNX Runtime backend"),
        ("test_tensor_guest[wasinn-openvino]", "WASI-NN guest, OpenVINO backend"),
        ("test_tensor_guest[pure]", "pure guest, simd128"),
        ("test_tensor_guest[pure-relaxed]", "pure guest, relaxed SIMD"),
        ("test_tensor_guest[scalar]", "pure guest, scalar"),
    ]
    out += compare_table(res, names, "test_tensor_ort_answer")
    out.append("")
    guests = ("wasinn-onnx", "wasinn-openvino", "pure", "pure-relaxed", "scalar")
    rows = []
    for v in guests:
        b = res.get(f"test_tensor_guest[{v}]")
        if b is None or "stages_ms" not in b.extra:
            continue
        st = b.extra["stages_ms"]
        host = b.extra.get("host_ms")
        rows.append(
            [
                VARIANTS[v],
                fmt_ms(b.median * 1e3),
                *(fmt_ms(float(st.get(k, 0))) for k in STAGES[1:]),
                "—" if host is None else fmt_ms(float(host)),
            ]
        )
    ort = res.get("test_tensor_ort_run")
    if rows:
        alone = f" (ONNX Runtime `run` alone from Python: {fmt_ms(ort.median * 1e3)} ms)." if ort else "."
        out += [*prose("tensor-split", ort_alone=alone), ""]
        out += [*table(["guest", "wall", *STAGES[1:], "host and call"], rows), ""]
    prow = []
    for v in guests:
        b = res.get(f"test_tensor_guest[{v}]")
        pr = None if b is None else b.extra.get("paired_with_ort")
        if pr:
            prow.append(
                [
                    VARIANTS[v],
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
        head = ["guest", "rounds", "guest end to end", "ORT answer", "ratio", "guest inference stage", "ORT `run`"]
        out += [*prose("tensor-paired"), "", *table([*head, "ratio"], prow), ""]
    pure, wonnx = res.get("test_tensor_guest[pure]"), res.get("test_tensor_guest[wasinn-onnx]")
    if pure and wonnx:
        r, lo, hi = ratio_range(pure, wonnx)
        out += [*prose("tensor-pure-vs-wasinn", ratio=fmt_x(r), lo=fmt_x(lo), hi=fmt_x(hi)), ""]
    return out


def sizes(res: Results) -> list[str]:
    out = ["## Sizes", ""]
    rows = []
    for guest in GUESTS:
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
    out += [*prose("sizes-process"), ""]
    out += [*table(["process", "peak RSS", "on disk", "of which"], rows), ""]
    return out


def comparison(res: Results) -> list[str]:
    """The article's runtime comparison table, its rows as claimed and ours as measured in this run."""
    out = ["## The article's comparison table beside ours", "", *prose("article"), ""]
    rows = []
    for runtime, cells in article.COMPARISON.items():
        rows.append(
            [f"{runtime} (article)", cells["cold start"], cells["latency"], cells["image size"], "—", cells["stars"]]
        )
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
                "",
            ]
        )
    head = ["runtime", "cold start", "latency", "image size / on disk", "peak RSS", "article's stars"]
    out += [*table(head, rows), ""]
    return out


def elsewhere(root: Path) -> list[str]:
    """The blocks that bench/'s bounded scripts write into other docs (`catalogue.ELSEWHERE`), copied as they are,
    with their command as inline code (a block of its own here would be run by the docs test)."""
    out: list[str] = []
    for e in ELSEWHERE:
        out += [f"## {e.title}", ""]
        doc = root / e.doc
        text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
        if e.begin not in text or e.end not in text:
            raise SystemExit(f"{e.doc} has no block between {e.begin} and {e.end}: run {e.script}")
        body = text.split(e.begin, 1)[1].split(e.end, 1)[0]
        body = re.sub(r"^<!-- doc-test: skip \(.*\) -->\n", "", body, flags=re.M)
        body = re.sub(r"^```\w*\n(.*?)\n```$", lambda m: "`" + m.group(1).strip() + "`", body, flags=re.M | re.S)
        source = f"From [{e.doc}]({Path(e.doc).name}), where `{e.script}` writes it:"
        out += [source, "", *body.strip().splitlines(), ""]
    return out
