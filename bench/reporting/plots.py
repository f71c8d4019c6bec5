"""The PNG plots of docs/benchmarks.md (matplotlib, the `plots` extra; without it they are skipped with a note)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import article
from .fmt import fmt_t
from .results import Bench, Results
from .sections import Stacks


def plots(res: Results, stacks: Stacks, img: Path) -> str | None:
    """Write the PNGs; returns the name of a prose note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return "no-plots"
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
        ("article, before (claimed)", {k: before for k, (_, before, _) in article.STAGES.items()}),
        ("article, after (claimed)", {k: after for k, (_, _, after) in article.STAGES.items()}),
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
