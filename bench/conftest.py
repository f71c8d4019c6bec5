"""Benchmark fixtures. Each comparison measures edgewasm and its baseline in the same session: report ratios."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "wasm"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from edgewasm import _loader

    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("EDGEWASM_CACHE_DIR", str(cache))
    _loader.forget()
    yield cache
    _loader.forget()
