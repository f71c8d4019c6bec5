"""The model store's error type (the lead re-parents ``ModelsError`` under ``edgewasm.EdgeWasmError``)."""

from __future__ import annotations


class ModelsError(Exception):
    """Base of the errors raised by ``edgewasm.models``; messages are one line and say what to do."""


class ModelStoreError(ModelsError):
    """A model cannot be installed, found, verified or read."""
