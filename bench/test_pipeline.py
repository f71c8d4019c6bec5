"""The pipeline on the cat photo (examples/cat.jpg), stage by stage, for every way edgewasm classifies it and for
native ONNX Runtime in Python (one thread, like the WASI-NN backends).

Variants: `pure` (wasm/classifier.wasm, simd128), `pure-relaxed` (wasm/classifier_relaxed.wasm: the FP32 GEMM on
relaxed madd), `scalar` (wasm/classifier_scalar.wasm), `pure-int8` and
`pure-int8-relaxed` (the INT8 model, efficientnet-lite0-int8, on classifier.wasm's plain SIMD and on
classifier_relaxed.wasm's relaxed SIMD), `pure-int8-bundled` (classifier_relaxed.wasm bundled with the INT8
weights by `edgewasm models bundle`: mapped, not read), `wasinn-onnx` and `wasinn-openvino`
(wasm/wasinn_classifier.wasm with the store's model preloaded for `load_by_name`), `python-ort`
(bench/ort_classify.py's stages: PIL decode and resize, numpy, ONNX Runtime).

- pipeline-cat: one request with the JPEG; the guests' `stages_ms` (decode, preprocess, inference, postprocess) are
  kept per round in extra_info.
- pipeline-load: a fresh load (disk cache warm, in-memory cache and WASI-NN graph cache forgotten) and its first
  request; "load" = that wall time minus the stages the guest reports (deserialize, instantiate, weights / graph).
- infer-tensor: the same preprocessed tensor (the pure guest's own, from `return_tensor`) end to end through each
  guest, against ONNX Runtime called directly from Python (run only, and run + softmax + top-5).

Goals: issue 3, guest inference <= 4x ORT 1-thread, SIMD preprocessing >= 2x faster than scalar; issue 4, WASI-NN
end-to-end <= 1.1x ORT direct on the same tensor; issue 13, pure INT8 <= 1.5x and pure FP32 <= 2.5x ORT FP32.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgewasm
from edgewasm import _runtime

from . import ort_classify
from .conftest import EXAMPLES, MODEL_ID, WASM, need

JPEG = (EXAMPLES / "cat.jpg").read_bytes()
CAT_CLASSES = (281, 282, 285)  # tabby, tiger cat, Egyptian cat
STAGES = ("decode", "preprocess", "inference", "postprocess")

VARIANTS: dict[str, tuple[str, str | None]] = {
    "pure": ("classifier.wasm", None),
    "pure-relaxed": ("classifier_relaxed.wasm", None),
    "scalar": ("classifier_scalar.wasm", None),
    "pure-int8": ("classifier.wasm", None),
    "pure-int8-relaxed": ("classifier_relaxed.wasm", None),
    "pure-int8-bundled": ("classifier_relaxed.wasm", None),
    "wasinn-onnx": ("wasinn_classifier.wasm", "onnx"),
    "wasinn-openvino": ("wasinn_classifier.wasm", "openvino"),
}
_PACKAGE = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}
INT8_ID = "efficientnet-lite0-int8"
#: The variants that run another model than the default one.
_MODEL_OF = {"pure-int8": INT8_ID, "pure-int8-relaxed": INT8_ID, "pure-int8-bundled": INT8_ID}


def _request(variant: str, **req: Any) -> dict[str, Any]:
    """A request for the variant's model."""
    return {**req, "model_id": _MODEL_OF[variant]} if variant in _MODEL_OF else req


@functools.cache
def _bundled() -> Path:
    """classifier_relaxed.wasm with the store's INT8 image in its data segment (made once per session)."""
    from edgewasm.models import _bundle, _pure, _store

    out = Path(tempfile.mkdtemp(prefix="edgewasm-bench-bundle-")) / "classifier-int8.wasm"
    image = _pure.image_of(INT8_ID, _store.default_store())
    _bundle.write(WASM / VARIANTS["pure-int8-bundled"][0], image, INT8_ID, out)
    return out


def _load(variant: str) -> edgewasm.Guest:
    module, backend = VARIANTS[variant]
    preload = [f"{MODEL_ID}:store:{MODEL_ID}:{backend}"] if backend else []
    path = _bundled() if variant == "pure-int8-bundled" else WASM / module
    return edgewasm.load(path, timeout=120.0, nn_preload=preload)


def _skip_missing(variant: str) -> None:
    backend = VARIANTS[variant][1]
    if backend:
        need(*_PACKAGE[backend])
    if variant in _MODEL_OF:
        from edgewasm import models

        try:
            models.path_of(_MODEL_OF[variant])
        except Exception as e:
            pytest.skip(f"{_MODEL_OF[variant]} not installed ({e}); run `edgewasm models install {INT8_ID}`")


@pytest.fixture(scope="module", params=list(VARIANTS))
def guest(request: pytest.FixtureRequest, model_entry: Path) -> Iterator[tuple[str, edgewasm.Guest]]:
    _skip_missing(request.param)
    g = _load(request.param)
    assert g.infer(_request(request.param, image=JPEG))["class_id"] in CAT_CLASSES  # first call: weights loaded
    yield request.param, g
    g.close()


@pytest.fixture(scope="module")
def ort_session(model_entry: Path) -> tuple[Any, list[str]]:
    need("onnxruntime", "onnx")
    return ort_classify.load(model_entry)


@pytest.fixture(scope="module")
def tensor(model_entry: Path) -> np.ndarray:
    """The pure guest's own preprocessed cat (float32 [224, 224, 3]): the same input for everyone."""
    with edgewasm.load(WASM / "classifier.wasm") as g:
        hwc = np.array(g.infer({"image": JPEG, "return_tensor": True})["tensor"], dtype=np.float32)
    assert hwc.shape == (224, 224, 3)
    return hwc


def _median_stages(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(statistics.median(r[k] for r in rows)) for k in rows[0]}


def _model_files(entry: Path) -> dict[str, int]:
    names = ["weights.ewt", "model.onnx", "openvino/model.xml", "openvino/model.bin"]
    return {n: (entry / n).stat().st_size for n in names if (entry / n).is_file()}


# -- the cat photo, stage by stage -----------------------------------------------------------------------------------


@pytest.mark.benchmark(group="pipeline-cat")
def test_pipeline(benchmark: Any, n_rounds: Any, guest: tuple[str, edgewasm.Guest], model_entry: Path) -> None:
    variant, g = guest
    rows: list[dict[str, float]] = []

    def once() -> Any:
        reply = g.infer(_request(variant, image=JPEG))
        rows.append({k: float(reply["stages_ms"][k]) for k in STAGES})
        return reply

    reply = benchmark.pedantic(once, rounds=n_rounds(5, 30), warmup_rounds=1)
    assert reply["class_id"] in CAT_CLASSES
    benchmark.extra_info.update(
        variant=variant, stages_ms=_median_stages(rows), stages_rounds=rows, model_files=_model_files(model_entry)
    )


@pytest.mark.benchmark(group="pipeline-cat")
def test_pipeline_python_ort(benchmark: Any, n_rounds: Any, ort_session: tuple[Any, list[str]]) -> None:
    session, labels = ort_session
    rows: list[dict[str, float]] = []

    def once() -> dict[str, Any]:
        t0 = time.perf_counter()
        image = ort_classify.decode(JPEG)
        t1 = time.perf_counter()
        nchw = ort_classify.preprocess(image)
        t2 = time.perf_counter()
        logits = ort_classify.infer(session, nchw)
        t3 = time.perf_counter()
        answer = ort_classify.postprocess(logits, labels)
        t4 = time.perf_counter()
        rows.append({k: (b - a) * 1e3 for k, a, b in zip(STAGES, (t0, t1, t2, t3), (t1, t2, t3, t4), strict=True)})
        return answer

    answer = benchmark.pedantic(once, rounds=n_rounds(5, 30), warmup_rounds=1)
    assert answer["class_id"] in CAT_CLASSES
    benchmark.extra_info.update(variant="python-ort", stages_ms=_median_stages(rows), stages_rounds=rows)


# -- loading: the first request of a fresh guest ---------------------------------------------------------------------


@pytest.mark.benchmark(group="pipeline-load")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_load(benchmark: Any, n_rounds: Any, variant: str, model_entry: Path) -> None:
    _skip_missing(variant)
    _load(variant).close()  # fill the disk cache: "load" is the warm-cache path
    loads: list[float] = []

    def setup() -> None:
        runtime = _runtime.default_runtime()  # this benchmark's (see conftest.py)
        runtime.modules.clear()
        runtime.graphs.clear()

    def once() -> Any:
        t0 = time.perf_counter()
        g = _load(variant)
        reply = g.infer(_request(variant, image=JPEG))
        wall = (time.perf_counter() - t0) * 1e3
        loads.append(wall - sum(float(reply["stages_ms"][k]) for k in STAGES))
        g.close()
        return reply

    reply = benchmark.pedantic(once, setup=setup, rounds=n_rounds(3, 10), warmup_rounds=0)
    assert reply["class_id"] in CAT_CLASSES
    benchmark.extra_info.update(variant=variant, load_ms=float(statistics.median(loads)), load_rounds=loads)


@pytest.mark.benchmark(group="pipeline-load")
def test_load_python_ort(benchmark: Any, n_rounds: Any, model_entry: Path) -> None:
    need("onnxruntime", "onnx")
    loads: list[float] = []

    def once() -> Any:
        t0 = time.perf_counter()
        loaded = ort_classify.load(model_entry)
        loads.append((time.perf_counter() - t0) * 1e3)
        return loaded

    benchmark.pedantic(once, rounds=n_rounds(3, 10), warmup_rounds=0)
    benchmark.extra_info.update(variant="python-ort", load_ms=float(statistics.median(loads)), load_rounds=loads)


# -- the same tensor: end to end through each guest vs ONNX Runtime direct ---------------------------------------


@pytest.fixture(scope="module")
def maybe_ort(model_entry: Path) -> tuple[Any, list[str]] | None:
    """ONNX Runtime for the paired measurements, or None when it is not installed (the guests still run)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    return ort_classify.load(model_entry)


def _paired(
    g: edgewasm.Guest, ort: tuple[Any, list[str]], tensor: np.ndarray, rounds: int, variant: str
) -> dict[str, Any]:
    """Guest and ONNX Runtime alternated round by round (order swapped every round), so both see the same machine:
    on a shared 2-core box, load from other processes drifts between two separately timed benchmarks."""
    session, labels = ort
    guest_ms, infer_ms, run_ms, answer_ms = [], [], [], []

    def ort_answer() -> None:
        t0 = time.perf_counter()
        nchw = np.ascontiguousarray(tensor.transpose(2, 0, 1)[None])
        t1 = time.perf_counter()
        logits = ort_classify.infer(session, nchw)
        t2 = time.perf_counter()
        ort_classify.postprocess(logits, labels)
        t3 = time.perf_counter()
        run_ms.append((t2 - t1) * 1e3)
        answer_ms.append((t3 - t0) * 1e3)

    def guest_answer() -> None:
        t0 = time.perf_counter()
        reply = g.infer(_request(variant, tensor=tensor))
        guest_ms.append((time.perf_counter() - t0) * 1e3)
        infer_ms.append(float(reply["stages_ms"]["inference"]))

    for i in range(rounds):
        first, second = (guest_answer, ort_answer) if i % 2 == 0 else (ort_answer, guest_answer)
        first()
        second()
    med = statistics.median
    return {
        "rounds": rounds,
        "guest_ms": med(guest_ms),
        "guest_inference_ms": med(infer_ms),
        "ort_run_ms": med(run_ms),
        "ort_answer_ms": med(answer_ms),
        "end_to_end_ratio": med(g_ / a for g_, a in zip(guest_ms, answer_ms, strict=True)),
        "inference_ratio": med(i_ / r for i_, r in zip(infer_ms, run_ms, strict=True)),
    }


@pytest.mark.benchmark(group="infer-tensor")
def test_tensor_guest(
    benchmark: Any,
    n_rounds: Any,
    guest: tuple[str, edgewasm.Guest],
    tensor: np.ndarray,
    maybe_ort: tuple[Any, list[str]] | None,
) -> None:
    variant, g = guest
    rows: list[dict[str, float]] = []

    host: list[float] = []

    def once() -> Any:
        t0 = time.perf_counter()
        reply = g.infer(_request(variant, tensor=tensor))
        wall = (time.perf_counter() - t0) * 1e3
        rows.append({k: float(reply["stages_ms"][k]) for k in STAGES})
        host.append(wall - sum(rows[-1].values()))
        return reply

    reply = benchmark.pedantic(once, rounds=n_rounds(10, 50), warmup_rounds=1)
    assert reply["class_id"] in CAT_CLASSES
    # host_ms: per round, the wall time of guest.infer minus the stages the guest timed itself
    benchmark.extra_info.update(variant=variant, stages_ms=_median_stages(rows), host_ms=statistics.median(host))
    if maybe_ort is not None:  # untimed by pytest-benchmark: the same comparison, interleaved
        paired_rounds = 1 if benchmark.disabled else n_rounds(15, 60)
        benchmark.extra_info["paired_with_ort"] = _paired(g, maybe_ort, tensor, paired_rounds, variant)


@pytest.mark.benchmark(group="infer-tensor")
def test_tensor_ort_run(benchmark: Any, n_rounds: Any, ort_session: tuple[Any, list[str]], tensor: np.ndarray) -> None:
    """ONNX Runtime's `run` alone (1 thread): the baseline of issue 3's inference goal."""
    session, _ = ort_session
    nchw = np.ascontiguousarray(tensor.transpose(2, 0, 1)[None])
    logits = benchmark.pedantic(ort_classify.infer, (session, nchw), rounds=n_rounds(10, 50), warmup_rounds=1)
    assert int(np.argmax(logits)) in CAT_CLASSES
    benchmark.extra_info["variant"] = "ort-run"


@pytest.mark.benchmark(group="infer-tensor")
def test_tensor_ort_answer(
    benchmark: Any, n_rounds: Any, ort_session: tuple[Any, list[str]], tensor: np.ndarray
) -> None:
    """ONNX Runtime from Python, the whole answer (transpose, run, softmax, top-5 with labels): issue 4's baseline."""
    session, labels = ort_session

    def answer() -> dict[str, Any]:
        nchw = np.ascontiguousarray(tensor.transpose(2, 0, 1)[None])
        return ort_classify.postprocess(ort_classify.infer(session, nchw), labels)

    assert benchmark.pedantic(answer, rounds=n_rounds(10, 50), warmup_rounds=1)["class_id"] in CAT_CLASSES
    benchmark.extra_info["variant"] = "ort-answer"
