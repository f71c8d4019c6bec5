"""WebAssembly features a module asks the engine for in its ``edgewasm.needs`` section.

``relaxed-simd``: the module uses relaxed SIMD (e.g. the INT8 classifier's ``i32x4.relaxed_dot_i8x16_i7x16_add``).
Its results may differ between hosts unless the module keeps to the deterministic subset, so engines enable it
only for modules that declare it; a module that uses it undeclared gets a clear error instead of wasmtime's.
"""

from __future__ import annotations

import dataclasses

from ._engine import EngineSettings
from ._errors import ModuleLoadError

RELAXED_SIMD = "relaxed-simd"


def settings_for(settings: EngineSettings, needs: frozenset[str], name: str) -> EngineSettings:
    """The engine settings that can run a module with these needs, or a one-line error when none can."""
    if RELAXED_SIMD not in needs or settings.relaxed_simd:
        return settings
    if not settings.simd:
        raise ModuleLoadError(
            f"{name} needs relaxed SIMD, and this engine has SIMD turned off",
            hint="run it with SIMD on, or use the module's plain-SIMD build (e.g. classifier.wasm)",
        )
    return dataclasses.replace(settings, relaxed_simd=True)


def undeclared_hint(detail: str) -> str | None:
    """A hint for wasmtime's validation error when a module uses relaxed SIMD without declaring it."""
    if "relaxed SIMD support is not enabled" in detail:
        return (
            f"the module uses relaxed SIMD without declaring it: add `{RELAXED_SIMD}` to its edgewasm.needs "
            "custom section, or build it without relaxed SIMD"
        )
    return None
