"""The ASGI layer every request passes: its id, the body size limit, the access log and the HTTP counter.

Written as plain ASGI (not Starlette's BaseHTTPMiddleware) so it adds little to every request.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import BodyTooLarge
from .metrics import Metrics

log = logging.getLogger("edgewasm.serve.access")
REQUEST_ID = "x-request-id"
_GOOD_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

#: Request ids: 128 random bits as 32 hex digits, as `os.urandom(16).hex()` would give but without a system call
#: per request. An id need not be secret, only unique: this generator is private (a library seeding the `random`
#: module cannot repeat our ids), seeded from the OS, and seeded again in a forked child.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_request_id() -> str:
    return f"{_ids.getrandbits(128):032x}"


def _too_large_body(limit: int) -> bytes:
    return json.dumps(
        {"error": f"request body larger than the server's limit of {limit} bytes", "kind": "too_large"}
    ).encode()


async def _drain(receive: Receive, cap: int) -> None:
    """Read and drop the rest of a refused body (up to `cap` bytes), so the client reads our 413, not a reset."""
    dropped = 0
    while dropped <= cap:
        message = await receive()
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_size: int, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log
        self.metrics = metrics
        self.limit = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _GOOD_ID.match(given) else new_request_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        status = 500
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            length = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            length = 0
        try:
            if length > self.limit:
                await _drain(receive, self.limit)
                await self._refuse(send_with_id)
                return
            await self.app(scope, self._limited(receive), send_with_id)
        finally:
            elapsed = (time.perf_counter() - started) * 1e3
            self.metrics.answered(state.get("route", "other"), status)
            if self.access_log:
                self._log(scope, rid, status, elapsed, state)

    def _log(self, scope: Scope, rid: str, status: int, elapsed: float, state: dict[str, Any]) -> None:
        log.info(
            "%s %s %d %.1f ms",
            scope["method"],
            scope["path"],
            status,
            elapsed,
            extra={
                "fields": {
                    "request_id": rid,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed, 3),
                    **({"model": state["model"]} if "model" in state else {}),
                    **({"kind": state["error_kind"]} if "error_kind" in state else {}),
                }
            },
        )

    async def _refuse(self, send: Send) -> None:
        body = _too_large_body(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")],
            }
        )  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.limit

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if message.get("more_body", False):
                        await _drain(receive, limit)
                    raise BodyTooLarge(
                        f"request body larger than the server's limit of {limit} bytes",
                        hint="send a smaller request, or start the server with a larger --max-body-size",
                    )
            return message

        return wrapped
