"""Cold start in one process: compile every time, against our AOT cache (deserialize + instantiate + ready).

Goals (issue 2): a cached small guest ready for its first call in under 1 ms, and at least 30x faster than compiling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import edgewasm
from edgewasm import _loader

from .conftest import WASM

SMALL_GUEST = WASM / "hello.wasm"  # a real Rust guest built with the SDK


def _ready(path: Path, cache: bool) -> edgewasm.Guest:
    _loader.forget()  # no in-memory hit: the disk cache (or the compiler) must do the work
    return edgewasm.load(path, cache=cache)


@pytest.mark.benchmark(group="cold-small")
def test_cold_compile(benchmark: Any) -> None:
    guest = benchmark(_ready, SMALL_GUEST, False)
    assert guest.origin == "compiled"


@pytest.mark.benchmark(group="cold-small")
def test_cold_aot_cache(benchmark: Any) -> None:
    _ready(SMALL_GUEST, True)  # fill the cache
    guest = benchmark(_ready, SMALL_GUEST, True)
    assert guest.origin == "disk"


@pytest.mark.benchmark(group="cold-small")
def test_cold_memory_cache(benchmark: Any) -> None:
    edgewasm.load(SMALL_GUEST)
    guest = benchmark(edgewasm.load, SMALL_GUEST)
    assert guest.origin == "memory"


@pytest.mark.benchmark(group="instantiate")
def test_new_instance(benchmark: Any) -> None:
    guest = edgewasm.load(SMALL_GUEST)
    inst = benchmark(guest._new_instance)
    assert not inst.broken
