"""Where preloads by model-store id find their files.

Uses the models package's `path_of(id)` when it exists, else the documented store layout:
`$EDGEWASM_MODELS` or `platformdirs.user_data_dir("edgewasm")/models`, then `<store>/<id>/`.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import platformdirs

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# store format -> files relative to the model directory, in `load` builder order
STORE_FORMATS: dict[str, tuple[str, ...]] = {
    "onnx": ("model.onnx",),
    "openvino": ("openvino/model.xml", "openvino/model.bin"),
    "tflite": ("model.tflite",),
}


def store_dir() -> Path:
    env = os.environ.get("EDGEWASM_MODELS")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("edgewasm")) / "models"


def model_dir(model_id: str) -> Path:
    """The directory of a model in the store (which may not exist)."""
    if not _ID.match(model_id) or ".." in model_id:
        raise ValueError(f"bad model id {model_id!r}: use letters, digits, '.', '_' and '-'")
    path_of = _store_path_of()
    if path_of is not None:
        try:
            return Path(path_of(model_id))
        except Exception as exc:  # ModelStoreError: unknown or not installed, with the command that fixes it
            raise ValueError(str(exc)) from None
    return store_dir() / model_id


def _store_path_of() -> Callable[[str], Any] | None:
    try:
        module = importlib.import_module("edgewasm.models._store")
    except ImportError:
        return None
    fn = getattr(module, "path_of", None)
    return cast("Callable[[str], Any]", fn) if callable(fn) else None
