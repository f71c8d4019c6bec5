"""Where preloads by model-store id find their files: the model store's own lookup (`edgewasm.models`), which owns
the store's root and layout, and which file each backend's format is.
"""

from __future__ import annotations

import re
from pathlib import Path

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# store format -> files relative to the model directory, in `load` builder order
STORE_FORMATS: dict[str, tuple[str, ...]] = {
    "onnx": ("model.onnx",),
    "openvino": ("openvino/model.xml", "openvino/model.bin"),
    "tflite": ("model.tflite",),
}


def model_dir(model_id: str) -> Path:
    """The directory of an installed model; ValueError (with the command that fixes it) when it is not."""
    if not _ID.match(model_id) or ".." in model_id:
        raise ValueError(f"bad model id {model_id!r}: use letters, digits, '.', '_' and '-'")
    from .._errors import ModelStoreError
    from ..models._store import path_of  # imported when a preload names a model id, not before

    try:
        return path_of(model_id)
    except ModelStoreError as exc:  # unknown or not installed
        raise ValueError(str(exc)) from None
