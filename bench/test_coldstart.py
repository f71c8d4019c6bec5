"""Cold start in one process, from a module file to an instance ready for its first call.

For a small guest (wasm/hello.wasm, a Rust SDK guest) and the classifier (wasm/classifier.wasm, 2 MB):
- compile every time (edgewasm.load, cache off: the baseline);
- wasmtime's own cache (`Config.cache` with a toml naming a temp directory; wasmtime-py's public API, as a user
  would write it: Module + Linker + Store + WASI + instantiate + `_initialize`);
- our AOT cache (edgewasm.load, disk cache warm, in-memory cache forgotten: verify + `deserialize_file` +
  instantiate);
- our in-memory cache (a second edgewasm.load in the same process);
- instantiation alone (a new instance from the pre-linked InstancePre, pooling allocator).

Goals (issue 2): a cached small guest ready in under 1 ms, and at least 30x faster than compiling it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import wasmtime

import edgewasm

from .conftest import WASM

GUESTS = {"hello": WASM / "hello.wasm", "classifier": WASM / "classifier.wasm"}


#: The benchmarks' runtime: its engines are made once, its module cache is emptied before every load.
RUNTIME = edgewasm.Runtime()


def _ready(path: Path, cache: bool) -> edgewasm.Guest:
    RUNTIME.modules.clear()  # no in-memory hit: the disk cache (or the compiler) must do the work
    return RUNTIME.load(path, cache=cache)


class WasmtimeCached:
    """wasmtime-py with wasmtime's own compilation cache, in a directory of this session."""

    def __init__(self, directory: Path) -> None:
        toml = directory / "wasmtime-cache.toml"
        toml.write_text(f'[cache]\ndirectory = "{directory}"\n')
        cfg = wasmtime.Config()
        cfg.cache = str(toml)
        self.engine = wasmtime.Engine(cfg)
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()

    def ready(self, wasm: bytes) -> wasmtime.Instance:
        module = wasmtime.Module(self.engine, wasm)
        store = wasmtime.Store(self.engine)
        store.set_wasi(wasmtime.WasiConfig())
        instance = self.linker.instantiate(store, module)
        init = instance.exports(store).get("_initialize")
        if isinstance(init, wasmtime.Func):
            init(store)
        return instance


@pytest.fixture(params=sorted(GUESTS))
def guest_path(request: pytest.FixtureRequest) -> Path:
    return GUESTS[request.param]


def _group(benchmark: Any, path: Path) -> None:
    benchmark.group = f"cold-{path.stem}"
    benchmark.extra_info["module_bytes"] = path.stat().st_size


def test_cold_compile(benchmark: Any, n_rounds: Any, guest_path: Path) -> None:
    _group(benchmark, guest_path)
    rounds = n_rounds(5, 20) if guest_path.stem == "hello" else n_rounds(3, 8)
    guest = benchmark.pedantic(_ready, (guest_path, False), rounds=rounds, warmup_rounds=1)
    assert guest.origin == "compiled"


def test_cold_wasmtime_cache(benchmark: Any, guest_path: Path, tmp_path: Path) -> None:
    _group(benchmark, guest_path)
    runtime = WasmtimeCached(tmp_path)
    wasm = guest_path.read_bytes()
    runtime.ready(wasm)  # fill wasmtime's cache
    assert any((tmp_path / "modules").rglob("*")), "wasmtime wrote nothing to its cache"
    benchmark(runtime.ready, wasm)


def test_cold_aot_cache(benchmark: Any, guest_path: Path) -> None:
    _group(benchmark, guest_path)
    first = _ready(guest_path, True)  # fill the cache
    assert first.origin == "compiled" and first._loaded.artifact is not None
    benchmark.extra_info["artifact_bytes"] = first._loaded.artifact.stat().st_size
    first.close()
    guest = benchmark(_ready, guest_path, True)
    assert guest.origin == "disk"


def test_cold_memory_cache(benchmark: Any, guest_path: Path) -> None:
    _group(benchmark, guest_path)
    edgewasm.load(guest_path)
    guest = benchmark(edgewasm.load, guest_path)
    assert guest.origin == "memory"


def test_new_instance(benchmark: Any, guest_path: Path) -> None:
    _group(benchmark, guest_path)
    guest = edgewasm.load(guest_path)

    def fresh() -> bool:
        inst = guest._new_instance()  # weakly tracked: dropped (and its pool slot freed) on return
        return inst.broken

    assert benchmark(fresh) is False
