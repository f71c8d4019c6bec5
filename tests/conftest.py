"""Shared fixtures: every test gets its own artifact cache, so no test sees another's compiled modules, and the
session its own artifact key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewasm import _loader

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "wasm"


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
    _loader.forget()
    yield cache
    _loader.forget()


@pytest.fixture
def wasm_dir() -> Path:
    return WASM
