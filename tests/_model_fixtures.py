"""Shared fixtures for the model tests: one conversion into a temporary store per test session.

The install is cached at module level (not only by pytest's session scope) so that several test modules
importing these fixtures still convert once.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edgewasm.models import _ewt, install
from edgewasm.models._convert import MODEL_ID, locate_weights
from edgewasm.models._torch_legacy import load_state_dict


@functools.cache
def _installed_store() -> Path:
    root = Path(tempfile.mkdtemp(prefix="edgewasm-models-test-"))
    atexit.register(shutil.rmtree, root, True)
    install(MODEL_ID, store=root)
    return root


#: The quantize extra: the tools that make the variants and the packages that hold the calibration photos.
QUANTIZE_MODULES = (
    "onnxruntime.quantization", "openvino", "nncf", "ai_edge_litert", "skimage", "sklearn", "matplotlib"
)


@functools.cache
def _variants_store() -> Path:
    """A store with the base model and its FP16 and INT8 variants, made through the public install() (minutes)."""
    from edgewasm.models import _store

    root = Path(tempfile.mkdtemp(prefix="edgewasm-variants-test-"))
    atexit.register(shutil.rmtree, root, True)
    shutil.copytree(_installed_store() / MODEL_ID, root / MODEL_ID)
    for variant in ("fp16", "int8"):
        _store.install(f"{MODEL_ID}-{variant}", store=root)
    return root


def variants_store() -> Path:
    """`_variants_store()`, or skip (naming the extra) unless the quantize extra is installed."""
    from conftest import require

    require(*QUANTIZE_MODULES)
    return _variants_store()


@functools.cache
def _state_dict() -> dict[str, npt.NDArray[Any]]:
    return load_state_dict(locate_weights()[0])


@pytest.fixture(scope="session")
def model_store() -> Path:
    """A store root with a fresh install of efficientnet-lite0 (read-only: copy it before tampering)."""
    return _installed_store()


@pytest.fixture(scope="session")
def model_entry(model_store: Path) -> Path:
    return model_store / MODEL_ID


@pytest.fixture(scope="session")
def state_dict() -> dict[str, npt.NDArray[Any]]:
    """The raw torch state dict, read without torch."""
    return _state_dict()


@pytest.fixture(scope="session")
def ewt(model_entry: Path) -> _ewt.EwtFile:
    return _ewt.read(model_entry / "weights.ewt")


def _photo(name: str) -> npt.NDArray[np.uint8]:
    data = pytest.importorskip("skimage.data")
    return np.asarray(getattr(data, name)(), dtype=np.uint8)


@pytest.fixture(scope="session")
def photo() -> Callable[[str], npt.NDArray[np.uint8]]:
    """Loads one of the photos shipped inside scikit-image (offline), e.g. ``photo("chelsea")``."""
    return _photo
