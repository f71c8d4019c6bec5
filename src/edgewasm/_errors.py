"""One exception hierarchy, so callers can catch `EdgeWasmError` and the CLI can print one line."""

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


class GuestExit(EdgeWasmError):
    """A command guest exited with a non-zero code."""

    exit_code = 5

    def __init__(self, message: str, *, code: int, stdout: bytes = b"", stderr: bytes = b"") -> None:
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
