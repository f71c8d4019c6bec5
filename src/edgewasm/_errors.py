"""One exception hierarchy, so callers can catch `EdgeWasmError` and the CLI can print one line.

The model store's errors are here too (``edgewasm.models`` re-exports them). The WASI-NN host's `NnError` is not
one of these: it never reaches a caller (each host function turns it into its errno), so it lives with the
errno table in `nn/_enums.py`.
"""

from __future__ import annotations


class EdgeWasmError(Exception):
    """Base of every error edgewasm raises on purpose.

    `hint` says what the user can do about it; the CLI prints `error: <message> (hint: <hint>)`.
    """

    exit_code = 1
    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def one_line(self) -> str:
        """The message and its hint on one line: what the CLI and the server print."""
        text = " ".join(str(self).split())
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ModuleLoadError(EdgeWasmError):
    """The file is missing, is not WebAssembly, does not validate, or cannot be linked."""

    exit_code = 2


class ArtifactError(ModuleLoadError):
    """A compiled artifact (.cwasm) that must not be run: corrupt, tampered, or built for another host."""


class AbiError(EdgeWasmError):
    """The module's exports or its answers break the edgewasm ABI (docs/abi.md)."""

    exit_code = 2


class RequestError(EdgeWasmError):
    """The request cannot be encoded or sent (bad type, too large, unreadable input)."""

    exit_code = 2


class GuestTrap(EdgeWasmError):
    """The guest trapped (unreachable, out-of-bounds access, stack overflow, ...). The instance is discarded.

    `stdout` and `stderr` hold what a command guest wrote before the trap (captured by `Guest.run`), and for an
    infer guest the tail of its stderr (a Rust panic message, say), so nothing it said is lost.
    """

    exit_code = 4

    def __init__(self, message: str, *, trap_code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.trap_code = trap_code
        self.stdout = b""
        self.stderr = b""


class GuestTimeout(GuestTrap):
    """The call ran past its wall-clock timeout and was interrupted."""

    default_hint = "raise timeout= (or --timeout), or check the guest for an endless loop"


class GuestOutOfFuel(GuestTrap):
    """The call used up its fuel budget."""

    default_hint = "raise fuel= (or --fuel)"


class GuestOutOfMemory(GuestTrap):
    """The guest needed more linear memory than its limit allows."""

    default_hint = "raise memory_limit= (or --memory-limit)"


class GuestOutputLimit(GuestTrap):
    """A command guest wrote more to stdout or stderr than `Guest.run` keeps in host memory (`max_output`).

    What fitted is in `stdout`/`stderr`; the rest was read and dropped. `code` is the guest's exit code.
    """

    default_hint = "raise max_output= (edgewasm.load), or stream the output with `edgewasm run`"

    def __init__(self, message: str, *, code: int, stdout: bytes, stderr: bytes) -> None:
        super().__init__(message)
        self.code = code
        self.stdout = stdout
        self.stderr = stderr


class GuestError(EdgeWasmError):
    """The guest answered with an error map: `{"error": {"kind": ..., "message": ...}}`."""

    exit_code = 3

    def __init__(self, kind: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"guest reported {kind}: {message}", hint=hint)
        self.kind = kind
        self.message = message


class ProcExit(GuestTrap):
    """The guest called WASI `proc_exit`: normal for a command, a trap for an infer call."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, trap_code="exit")
        self.status = status


class BadExitStatus(GuestTrap):
    """The guest called `proc_exit` with a status WASI does not allow (126 and above): wasmtime refuses it."""

    default_hint = "exit with a status from 0 to 125 (126 and above mean 'not executable', 'not found' or a signal)"


class SandboxError(EdgeWasmError):
    """A limit or mount that cannot be honoured."""

    exit_code = 2


class MemoryLimitTooSmall(SandboxError, GuestOutOfMemory):
    """The memory limit is below what the module declares it needs to start: a setting to fix, not a guest trap."""

    exit_code = 2


class CacheWarning(UserWarning):
    """The artifact cache could not be used as it should: an entry was discarded, or the directory is not used.

    Shown as one line, `edgewasm: warning: ...`; filter it like any warning:
    `warnings.simplefilter("ignore", edgewasm.CacheWarning)`.
    """


class CacheError(EdgeWasmError):
    """A cache operation the user asked for (`edgewasm cache clear`) could not be done."""


class ModelsError(EdgeWasmError):
    """Base of the errors raised by ``edgewasm.models``; messages are one line and say what to do."""

    exit_code = 2


class ModelStoreError(ModelsError):
    """A model cannot be installed, found, verified or read."""


class BundleError(ModelsError):
    """The module cannot carry the weights (no weights region, too small, or an unexpected layout)."""


class QuantizeError(ModelsError):
    """A variant cannot be made: a tool is missing or failed."""


class CalibrationError(ModelsError):
    """A calibration set cannot be found or read."""


class AccuracyError(ModelsError):
    """The accuracy photos cannot be had."""
