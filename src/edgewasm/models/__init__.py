"""The model pipeline: convert EfficientNet-Lite0 without torch, keep it in a verified store.

Public API: ``install``, ``verify``, ``list_models``, ``path_of``, ``remove``, ``default_store``,
``ModelStoreError``. The converter and the reference live in the private modules named for what they hold.
"""

from __future__ import annotations

from .._errors import ModelsError, ModelStoreError
from ._store import default_store, install, list_models, path_of, read_manifest, remove, verify

__all__ = [
    "ModelStoreError",
    "ModelsError",
    "default_store",
    "install",
    "list_models",
    "path_of",
    "read_manifest",
    "remove",
    "verify",
]
