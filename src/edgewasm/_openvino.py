"""Importing OpenVINO without its usage telemetry.

`import openvino` starts OpenVINO's telemetry (its model-conversion API does, and the package imports it): with no
consent file it counts as consent, writes a client id and usage counts into `~/intel` and queues events for Google
Analytics. A library must not do that on its user's behalf. OpenVINO has no switch for it short of a consent file in
that same directory, but it falls back to its own no-op stub when the `openvino_telemetry` package cannot be
imported, so edgewasm imports openvino with that package hidden (for the import only: it is put back afterwards, and
a program that imports it later gets it). A process that imported openvino itself before edgewasm keeps its choice.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

_lock = threading.Lock()


def import_openvino() -> ModuleType:
    """`import openvino`, with OpenVINO's telemetry replaced by its own stub; raises ImportError when absent."""
    return import_without_telemetry("openvino")


def import_without_telemetry(module: str) -> ModuleType:
    """Import `module` (openvino, or a package built on it such as nncf, which starts the same telemetry unless
    under pytest) with `openvino_telemetry` hidden; raises ImportError when absent."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    with telemetry_hidden():
        return importlib.import_module(module)


@contextlib.contextmanager
def telemetry_hidden() -> Iterator[None]:
    """Imports in the block see no `openvino_telemetry` (and fall back to OpenVINO's and NNCF's no-op stubs)."""
    with _lock:
        missing = object()
        saved = sys.modules.get("openvino_telemetry", missing)
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # makes its import raise ImportError
        try:
            yield
        finally:
            if saved is missing:
                sys.modules.pop("openvino_telemetry", None)
            else:
                sys.modules["openvino_telemetry"] = saved  # type: ignore[assignment]
