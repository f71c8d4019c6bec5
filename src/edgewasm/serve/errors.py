"""The service's errors and how every edgewasm error becomes an HTTP status and an `{"error": ...}` body.

Nothing a client or a guest does produces a traceback: those errors are `EdgeWasmError`s with one line each.
"""

from __future__ import annotations

from typing import Any

from .._errors import (
    AbiError,
    EdgeWasmError,
    GuestError,
    GuestOutOfFuel,
    GuestOutOfMemory,
    GuestTimeout,
    GuestTrap,
    ModuleLoadError,
    RequestError,
)


class ServeError(EdgeWasmError):
    """An error of the service itself; `status` is its HTTP status, `kind` a short machine-readable name."""

    status = 500
    kind = "internal"


class BadRequest(ServeError):
    """The HTTP request does not follow the protocol (bad JSON, tensor, header)."""

    status = 400
    kind = "bad_request"


class ModelNotFound(ServeError):
    status = 404
    kind = "not_found"


class BodyTooLarge(ServeError):
    status = 413
    kind = "too_large"


class UnsupportedMediaType(ServeError):
    status = 415
    kind = "unsupported_media_type"


class QueueFull(ServeError):
    """Every instance is busy and the model's queue is full: retry after `Retry-After` seconds."""

    status = 503
    kind = "queue_full"


class NotReady(ServeError):
    """The server is starting or draining."""

    status = 503
    kind = "not_ready"


class ServiceError(ServeError):
    """What `edgewasm.Client` raises for an error answer that is not the guest's: it carries the status and kind."""

    def __init__(self, message: str, *, status: int, kind: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.kind = kind


class DeadlineExceeded(ServeError):
    """The request's deadline passed while it waited for an instance or ran."""

    status = 504
    kind = "deadline_exceeded"


#: Guest-reported kinds that are the client's mistake in the request's form (400); every other kind is 422.
_BAD_REQUEST_KINDS = frozenset({"bad_request"})


def status_and_kind(exc: EdgeWasmError) -> tuple[int, str]:
    """The HTTP status and error kind of an error raised while serving a request."""
    if isinstance(exc, ServeError):
        return exc.status, exc.kind
    if isinstance(exc, GuestError):
        return (400 if exc.kind in _BAD_REQUEST_KINDS else 422), exc.kind
    if isinstance(exc, GuestTimeout):
        return 504, "timeout"
    if isinstance(exc, GuestOutOfMemory):
        return 500, "out_of_memory"
    if isinstance(exc, GuestOutOfFuel):
        return 500, "out_of_fuel"
    if isinstance(exc, GuestTrap):
        return 500, "trap"
    if isinstance(exc, AbiError):
        return 500, "abi"
    if isinstance(exc, RequestError):
        return 400, "bad_request"
    if isinstance(exc, ModuleLoadError):
        return 503, "model_load"
    return 500, "internal"


def error_body(exc: EdgeWasmError) -> dict[str, Any]:
    """OIP's `{"error": message}`, plus the kind (and the trap code, for traps) for clients that want them."""
    _, kind = status_and_kind(exc)
    body: dict[str, Any] = {"error": " ".join(str(exc).split()), "kind": kind}
    if isinstance(exc, GuestError):
        body["message"] = exc.message  # the guest's own words, so a client can raise GuestError(kind, message)
    if isinstance(exc, GuestTrap) and exc.trap_code:
        body["trap_code"] = exc.trap_code
    if exc.hint:
        body["hint"] = exc.hint
    return body
