"""Importing OpenVINO without its usage telemetry.

`import openvino` starts OpenVINO's telemetry (its model-conversion API does, and the package imports it): with no
consent file it counts as consent, writes a client id and usage counts into `~/intel` and queues events for Google
Analytics. A library must not do that on its user's behalf. OpenVINO has no switch for it short of a consent file in
that same directory, but it falls back to its own no-op stub when the `openvino_telemetry` package cannot be
imported, so edgewasm imports openvino with that package hidden (for the import only: it is put back afterwards, and
a program that imports it later gets it). A process that imported openvino itself before edgewasm keeps its choice.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType

_lock = threading.Lock()


def import_openvino() -> ModuleType:
    """`import openvino`, with OpenVINO's telemetry replaced by its own stub; raises ImportError when absent."""
    with _lock:
        loaded = sys.modules.get("openvino")
        if loaded is not None:
            return loaded
        missing = object()
        saved = sys.modules.get("openvino_telemetry", missing)
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # makes its import raise ImportError
        try:
            return importlib.import_module("openvino")
        finally:
            if saved is missing:
                sys.modules.pop("openvino_telemetry", None)
            else:
                sys.modules["openvino_telemetry"] = saved  # type: ignore[assignment]
