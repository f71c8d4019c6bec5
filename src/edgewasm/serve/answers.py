"""An answer as plain values, so the Starlette routes and the raw-ASGI inference routes send the very same bytes.

`Answer` is what a route decides (status, body, media type, extra headers); `to_response` makes it a Starlette
`Response`, `start_message` the `http.response.start` message that Response would send (Starlette's header rules:
the extra headers, then `content-length`, then `content-type`). `exception_answer` is what every route answers for
an exception it did not expect to return from: an edgewasm error's status and `{"error": ...}`, 499 for a client
that went away, 503 for a request cut off by the shutdown, 500 (and a traceback in the log) for a bug.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, NamedTuple

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from .._errors import EdgeWasmError
from .errors import NotReady, error_body, status_and_kind

log = logging.getLogger("edgewasm.serve")


#: Starlette's JSONResponse.render, its encoder made once (json.dumps with keywords makes one per call).
_RENDER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode


class Answer(NamedTuple):
    status: int
    body: bytes
    media_type: str | None
    headers: dict[str, str] | None = None


def json_answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    """As Starlette's JSONResponse renders it (compact, UTF-8, no NaN)."""
    body = _RENDER(data).encode()
    return Answer(status, body, "application/json", headers)


def to_response(a: Answer) -> Response:
    return Response(a.body, a.status, a.headers, media_type=a.media_type)


def start_message(a: Answer) -> dict[str, Any]:
    """The `http.response.start` message `to_response(a)` sends (its body follows as one `http.response.body`)."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in a.headers.items()] if a.headers else []
    keys = {k for k, _ in raw}
    if b"content-length" not in keys and not (a.status < 200 or a.status in (204, 304)):
        raw.append((b"content-length", str(len(a.body)).encode("latin-1")))
    if a.media_type is not None and b"content-type" not in keys:
        media = a.media_type
        if media.startswith("text/") and "charset=" not in media.lower():
            media += "; charset=utf-8"
        raw.append((b"content-type", media.encode("latin-1")))
    return {"type": "http.response.start", "status": a.status, "headers": raw}


def error_answer(state: dict[str, Any], e: EdgeWasmError) -> Answer:
    """`{"error": ...}` with the error's status, its kind kept in the request's state for the access log."""
    status, kind = status_and_kind(e)
    state["error_kind"] = kind
    return json_answer(error_body(e), status, {"Retry-After": "1"} if status == 503 else None)


def exception_answer(e: BaseException, state: dict[str, Any], draining: bool, method: str, path: str) -> Answer | None:
    """The answer to an exception a route raised; None: re-raise it (call inside the `except` block)."""
    if isinstance(e, EdgeWasmError):
        return error_answer(state, e)
    if isinstance(e, ClientDisconnect):
        return Answer(499, b"", None)
    if isinstance(e, asyncio.CancelledError):
        # uvicorn cancels what is still running when a shutdown's grace period ends: that is an answer, not a bug
        if not draining:
            return None
        return error_answer(
            state, NotReady("the server stopped before this request was answered", hint="send it again")
        )
    if isinstance(e, Exception):
        log.exception("internal error on %s %s", method, path)
        state["error_kind"] = "internal"
        return json_answer({"error": f"internal error: {type(e).__name__}", "kind": "internal"}, 500)
    return None
