"""edgewasm: run WebAssembly inference guests from Python, sandboxed and fast.

    import edgewasm
    guest = edgewasm.load("wasm/echo.wat", timeout=1.0, memory_limit="256MiB")
    reply = guest.infer({"model_id": "m", "pixels": numpy_array})

See docs/abi.md for what a guest exports and README.md for the command line.
"""

from ._cache import CacheError, CacheWarning, DiskCache
from ._command import CommandResult
from ._errors import (
    AbiError,
    ArtifactError,
    EdgeWasmError,
    GuestError,
    GuestExit,
    GuestOutOfFuel,
    GuestOutOfMemory,
    GuestOutputLimit,
    GuestTimeout,
    GuestTrap,
    ModuleLoadError,
    RequestError,
)
from ._guest import Guest, load
from ._sandbox import Mount, SandboxError

__version__ = "0.1.0"

__all__ = [
    "AbiError",
    "ArtifactError",
    "CacheError",
    "CacheWarning",
    "CommandResult",
    "DiskCache",
    "EdgeWasmError",
    "Guest",
    "GuestError",
    "GuestExit",
    "GuestOutOfFuel",
    "GuestOutOfMemory",
    "GuestOutputLimit",
    "GuestTimeout",
    "GuestTrap",
    "ModuleLoadError",
    "Mount",
    "RequestError",
    "SandboxError",
    "__version__",
    "load",
]
