"""The model store's errors, part of edgewasm's one exception hierarchy."""

from __future__ import annotations

from .._errors import EdgeWasmError


class ModelsError(EdgeWasmError):
    """Base of the errors raised by ``edgewasm.models``; messages are one line and say what to do."""

    exit_code = 2


class ModelStoreError(ModelsError):
    """A model cannot be installed, found, verified or read."""
