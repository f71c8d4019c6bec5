"""edgewasm: run WebAssembly inference guests from Python, sandboxed and fast.

    import edgewasm
    guest = edgewasm.load("wasm/echo.wat", timeout=1.0, memory_limit="256MiB")
    reply = guest.infer({"model_id": "m", "pixels": numpy_array})

    with edgewasm.Runtime() as rt:  # engines, tickers and caches of its own, stopped at the end
        guest = rt.load("wasm/echo.wat", timeout=1.0)

See docs/abi.md for what a guest exports and README.md for the command line.
"""

from ._cache import DiskCache
from ._command import CommandResult
from ._errors import (
    AbiError,
    ArtifactError,
    CacheError,
    CacheWarning,
    EdgeWasmError,
    GuestError,
    GuestOutOfFuel,
    GuestOutOfMemory,
    GuestOutputLimit,
    GuestTimeout,
    GuestTrap,
    ModuleLoadError,
    ProcExit,
    RequestError,
    SandboxError,
)
from ._guest import Guest, load
from ._options import GuestOptions, Mount
from ._runtime import Runtime

__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .serve.client import Client


def __getattr__(name: str) -> object:
    # The HTTP client is imported on first use, so `import edgewasm` stays as light as it was.
    if name == "Client":
        from .serve.client import Client

        return Client
    raise AttributeError(f"module 'edgewasm' has no attribute {name!r}")


__all__ = [
    "AbiError",
    "ArtifactError",
    "CacheError",
    "CacheWarning",
    "Client",
    "CommandResult",
    "DiskCache",
    "EdgeWasmError",
    "Guest",
    "GuestError",
    "GuestOptions",
    "GuestOutOfFuel",
    "GuestOutOfMemory",
    "GuestOutputLimit",
    "GuestTimeout",
    "GuestTrap",
    "ModuleLoadError",
    "Mount",
    "ProcExit",
    "RequestError",
    "Runtime",
    "SandboxError",
    "__version__",
    "load",
]
