"""Backends by encoding, imported lazily: a backend's package is imported only when a guest asks for it."""

from __future__ import annotations

import importlib
import logging
import threading
from typing import cast

from .._enums import GraphEncoding, NnErrno, NnError
from ._base import Backend, BackendOptions, Context, Graph, InputSpec

__all__ = ["Backend", "BackendOptions", "Context", "Graph", "InputSpec", "get_backend"]

log = logging.getLogger("edgewasm.nn")

# encoding -> (module, class, the package it needs, the extra that installs it)
_BACKENDS: dict[GraphEncoding, tuple[str, str, str, str]] = {
    GraphEncoding.OPENVINO: ("openvino", "OpenVinoBackend", "openvino", "openvino"),
    GraphEncoding.ONNX: ("onnx", "OnnxBackend", "onnxruntime", "onnx"),
    GraphEncoding.TENSORFLOWLITE: ("tflite", "TfliteBackend", "ai-edge-litert", "tflite"),
}

_lock = threading.Lock()
_warned: set[GraphEncoding] = set()


def get_backend(encoding: GraphEncoding, options: BackendOptions, cache: dict[GraphEncoding, Backend]) -> Backend:
    """The backend for an encoding, imported on first use; invalid_encoding when absent.

    A missing package is logged once per process, naming the extra that installs it.
    """
    with _lock:
        backend = cache.get(encoding)
        if backend is not None:
            return backend
        entry = _BACKENDS.get(encoding)
        if entry is None:
            raise NnError(NnErrno.INVALID_ENCODING, f"encoding {encoding.name.lower()} is not supported")
        module_name, class_name, package, extra = entry
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ImportError as exc:
            if encoding not in _warned:
                _warned.add(encoding)
                log.warning(
                    "wasi-nn: a guest asked for %s but its backend is not installed (%s); "
                    "install it with: pip install %s (the %s extra)",
                    encoding.name.lower(),
                    exc.name or exc,
                    package,
                    extra,
                )
            raise NnError(NnErrno.INVALID_ENCODING, f"{encoding.name.lower()} backend not installed") from exc
        backend = cast(Backend, getattr(module, class_name)(options))
        cache[encoding] = backend
        return backend
