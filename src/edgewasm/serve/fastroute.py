"""The inference routes in raw ASGI: `POST /v2/models/{m}[/versions/{v}]/infer` and `POST /models/{m}/call`.

These are the requests a service gets by the thousand, and for a small model Starlette's per-request work (its
error middlewares, the router trying each route's regex, a Request, its Headers and State, a Response) costs more
than the guest call. `InferenceRoutes` sits between `RequestContext` (request id, body limit, access log, HTTP
counter: unchanged) and the Starlette app, matches these two paths by splitting the path, and answers them with the
same `Service` methods and `answers.py` functions the Starlette routes use, so status, body and headers are the
same byte for byte. Anything else (another method, path or a `root_path`) goes on to Starlette.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from .answers import Answer, exception_answer, start_message
from .inference import call_media_type
from .tensors import HEADER_LENGTH

if TYPE_CHECKING:
    from .app import Service

_HEADER_LENGTH = HEADER_LENGTH.lower().encode("latin-1")


def match(path: str) -> tuple[str, str, str | None] | None:
    """(route, model, version) for a path the fast routes answer (as Starlette's `{param}` matches: non-empty)."""
    parts = path.split("/")
    n = len(parts)
    if n == 5 and parts[4] == "infer" and parts[1] == "v2" and parts[2] == "models" and parts[3]:
        return "infer", parts[3], None
    if n == 4 and parts[3] == "call" and parts[1] == "models" and parts[2]:
        return "call", parts[2], None
    if n == 7 and parts[6] == "infer" and parts[4] == "versions" and parts[1] == "v2" and parts[2] == "models":  # noqa: SIM102
        if parts[3] and parts[5]:  # (a separate test: the line would be too long)
            return "infer", parts[3], parts[5]
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a header, as Starlette's `request.headers.get` reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_body(receive: Receive) -> bytes:
    """The whole body, as Starlette's `request.body()` reads it (ClientDisconnect if the client went away)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            body = message.get("body", b"")
            if body:
                chunks.append(body)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif kind == "http.disconnect":
            raise ClientDisconnect()


class InferenceRoutes:
    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            found = match(scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        route, model, version = found
        state: dict[str, Any] = scope.setdefault("state", {})
        state["route"] = route
        state["arrived"] = time.monotonic()
        svc = self.service
        answer: Answer | None
        try:
            config = svc.lookup(state, model, version)
            if route == "infer":
                body = await read_body(receive)
                answer = await svc.infer_answer(state, config, body, _header(scope, _HEADER_LENGTH))
            else:
                ctype = call_media_type(_header(scope, b"content-type"))
                body = await read_body(receive)
                answer = await svc.call_answer(state, config, body, ctype, _header(scope, b"accept"))
        except BaseException as e:
            answer = exception_answer(e, state, svc.draining, "POST", scope["path"])
            if answer is None:
                raise
        await send(start_message(answer))
        await send({"type": "http.response.body", "body": answer.body})
