"""Shared fixtures: every test gets its own artifact cache, so no test sees another's compiled modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewasm import _loader

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "wasm"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EDGEWASM_CACHE_DIR", str(cache))
    _loader.forget()
    yield cache
    _loader.forget()


@pytest.fixture
def wasm_dir() -> Path:
    return WASM
