"""The raw-ASGI inference routes (serve/fastroute.py) answer exactly as the Starlette routes they stand in for.

Two apps on the same models, one with the fast routes and one without (`create_app(fast_routes=False)`), get the
same requests (good ones and every kind of error); their statuses, headers, bodies, access-log fields and metrics
must be the same, and only the first app's inference requests may skip Starlette's router.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest
from tests._serve_support import metric

import edgewasm
from edgewasm.serve.app import Service, create_app
from edgewasm.serve.config import ModelConfig, ServerConfig
from edgewasm.serve.fastroute import match
from edgewasm.serve.mapping import request_tensors
from edgewasm.serve.tensors import HEADER_LENGTH, write_body

WASM = Path(__file__).resolve().parent.parent / "wasm"
LIMIT = 4096
ECHO = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]}).encode()
JSON = {"content-type": "application/json"}
#: The kinds of a 504: the guest stopped by its timeout, or the request's deadline passed first.
DEADLINE = ("timeout", "deadline_exceeded")


def _binary_request() -> tuple[bytes, dict[str, str]]:
    inputs, params = request_tensors({"x": b"\x00\x01", "n": 3})
    params["binary_data_output"] = True
    body, length = write_body({"parameters": params}, "inputs", inputs, {t.name for t in inputs})
    return body, {"content-type": "application/octet-stream", HEADER_LENGTH: str(length)}


def _requests() -> list[tuple[str, str, dict[str, str], list[bytes] | None]]:
    """(method, path, headers, body chunks; None: the client goes away after one chunk)."""
    binary, binary_headers = _binary_request()
    packed = msgpack.packb({"text": "hi"})
    return [
        ("POST", "/v2/models/echo/infer", JSON, [ECHO]),
        ("POST", "/v2/models/echo/versions/1/infer", JSON, [ECHO[:10], ECHO[10:]]),
        ("POST", "/v2/models/echo/versions/2/infer", JSON, [ECHO]),
        ("POST", "/v2/models/nope/infer", JSON, [ECHO]),
        ("POST", "/v2/models/echo/infer", JSON, [b"{not json"]),
        ("POST", "/v2/models/echo/infer", JSON, [b'{"inputs": 3}']),
        ("POST", "/v2/models/echo/infer", binary_headers, [binary]),
        ("POST", "/v2/models/echo/infer", {**binary_headers, HEADER_LENGTH: "x"}, [binary]),
        ("POST", "/v2/models/echo/infer", {**JSON, "x-request-id": "bad id!"}, [ECHO]),
        ("POST", "/models/echo/call", JSON, [b'{"text": "hi"}']),
        ("POST", "/models/echo/call", {}, [b'{"text": "hi"}']),
        ("POST", "/models/echo/call", {"content-type": "application/msgpack", "accept": "application/msgpack"},
         [packed]),
        ("POST", "/models/echo/call", {"content-type": "application/msgpack"}, [b"\xc1"]),
        ("POST", "/models/echo/call", {"content-type": "text/plain"}, [b"hi"]),
        ("POST", "/models/echo/call", {"content-type": ""}, [b"hi"]),  # given but empty: not JSON
        ("POST", "/models/nope/call", JSON, [b"{}"]),
        ("POST", "/v2/models/trap/infer", JSON, [ECHO]),
        ("POST", "/v2/models/spin/infer", JSON, [ECHO]),
        ("POST", "/v2/models/echo/infer", JSON, [b"x" * 3000, b"x" * 3000]),  # no content-length: over the limit
        ("POST", "/v2/models/echo/infer", JSON, None),  # the client went away
        ("POST", "/v2/models/echo/infer/", JSON, [ECHO]),  # not an inference path: Starlette's answer in both
        ("GET", "/v2/models/echo/infer", {}, [b""]),
        ("POST", "/v2/models//infer", JSON, [ECHO]),
    ]  # fmt: skip


async def _send(
    app: Any, method: str, path: str, headers: dict[str, str], chunks: list[bytes] | None, rid: str
) -> tuple[int, list[tuple[bytes, bytes]], bytes, dict[str, Any]]:
    """One request through the ASGI app; (status, headers, body, the scope after the request)."""
    raw = [(b"host", b"127.0.0.1")]
    if chunks is not None and len(chunks) == 1:
        raw.append((b"content-length", str(len(chunks[0])).encode()))
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    if "x-request-id" not in headers:
        raw.append((b"x-request-id", rid.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": raw,
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000)}  # fmt: skip
    if chunks is None:
        messages = [{"type": "http.request", "body": ECHO[:5], "more_body": True}, {"type": "http.disconnect"}]
    else:
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], start["headers"], body, scope


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = dict(getattr(record, "fields", {}))
        fields.pop("ms", None)
        if fields.get("kind") in DEADLINE:
            fields["kind"] = "deadline"
        self.fields.append(fields)


def _configs() -> list[ModelConfig]:
    quick = edgewasm.GuestOptions(timeout=0.2)
    return [
        ModelConfig("echo", WASM / "echo.wat"),
        ModelConfig("trap", WASM / "trap.wat", instances=1),
        ModelConfig("spin", WASM / "spin.wat", instances=1, options=quick),
    ]


def _counters(text: str) -> list[str]:
    """The metrics' lines that do not depend on timing (the spin model's do: which 504, and when its instance goes)."""
    lines = [line for line in text.splitlines() if not re.search(r'duration|^#|model="spin"', line)]
    failed = sum(metric(text, "edgewasm_inference_request_failure_total", model="spin", version="1", reason=k)
                 for k in DEADLINE)  # fmt: skip
    return sorted([*lines, f"spin failures {failed}"])


async def _answers(fast: bool) -> tuple[list[Any], list[dict[str, Any]], list[str], list[bool]]:
    app, svc = create_app(_configs(), ServerConfig(max_body_size=LIMIT), fast_routes=fast)
    handler = _Records()
    access = logging.getLogger("edgewasm.serve.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    answers: list[Any] = []
    routed: list[bool] = []
    try:
        async with svc.lifespan(app):  # type: ignore[arg-type]
            await _wait_ready(svc)
            for i, (method, path, headers, chunks) in enumerate(_requests()):
                status, raw_headers, body, scope = await _send(app, method, path, headers, chunks, f"req-{i}")
                if b"bad id" in repr(headers).encode():  # a new id, different in each app: not compared
                    new = dict(raw_headers)[b"x-request-id"]
                    assert re.fullmatch(rb"[0-9a-f]{32}", new)
                    raw_headers = [(k, b"new" if v == new else v) for k, v in raw_headers]
                    body = body.replace(new, b"new")
                if "/spin/" in path:  # the guest's epoch interrupt and the request's deadline race: either is 504
                    assert status == 504 and json.loads(body)["kind"] in DEADLINE, body
                    raw_headers, body = [], b"504"
                answers.append((method, path, status, raw_headers, body))
                routed.append("endpoint" in scope)  # Starlette's router puts the endpoint in the scope
            svc.draining = True  # as the shutdown does: every inference request is 503 from now on
            for i, path in enumerate(("/v2/models/echo/infer", "/models/echo/call")):
                status, raw_headers, body, _ = await _send(app, "POST", path, JSON, [ECHO], f"drain-{i}")
                answers.append(("POST", path, status, raw_headers, body))
            metrics = svc.metrics.render().decode()
    finally:
        access.removeHandler(handler)
    return answers, handler.fields, _counters(metrics), routed


async def _wait_ready(svc: Service) -> None:
    for _ in range(2000):
        if svc.ready:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the models never loaded")


@pytest.fixture(scope="module")
def both() -> tuple[Any, Any]:
    return asyncio.run(_answers(True)), asyncio.run(_answers(False))


def test_the_fast_routes_answer_byte_for_byte_as_starlette(both: Any) -> None:
    (fast, _, _, _), (slow, _, _, _) = both
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert a == b
    statuses = [a[2] for a in fast]
    # every kind of answer was compared: success, not found, bad request, media type, trap, deadline, too large,
    # client gone, Starlette's own redirect and 405, draining
    assert {200, 400, 404, 413, 415, 499, 500, 504, 503}.issubset(statuses), statuses
    assert any(h == (b"retry-after", b"1") for a in fast if a[2] == 503 for h in a[3])
    requests = _requests()
    for (_, _, headers, _), (_, path, status, _, _) in zip(requests, fast[: len(requests)], strict=True):
        if path.endswith("/call") and "content-type" in headers:  # given, even empty: JSON or msgpack, else 415
            assert (status == 415) == (headers["content-type"] in ("", "text/plain")), (headers, status)


def test_the_fast_routes_log_and_count_as_starlette(both: Any) -> None:
    (_, fast_log, fast_metrics, _), (_, slow_log, slow_metrics, _) = both
    for a in fast_log:  # the generated id differs; the rest is the same
        if a["request_id"] not in ("", None) and not a["request_id"].startswith(("req-", "drain-")):
            a["request_id"] = "new"
    for b in slow_log:
        if b["request_id"] not in ("", None) and not b["request_id"].startswith(("req-", "drain-")):
            b["request_id"] = "new"
    assert fast_log == slow_log
    assert any(f.get("kind") == "trap" and f.get("model") == "trap" for f in fast_log)
    assert fast_metrics == slow_metrics
    assert "spin failures 1.0" in fast_metrics
    assert any('edgewasm_http_requests_total{route="infer",status="200"}' in line for line in fast_metrics)


def test_only_the_inference_paths_skip_starlettes_router(both: Any) -> None:
    (_, _, _, fast), (_, _, _, slow) = both
    paths = [(m, p) for m, p, _, _ in _requests()]
    for (method, path), fast_routed, slow_routed in zip(paths, fast, slow, strict=True):
        if method == "POST" and match(path) is not None:
            assert slow_routed and not fast_routed, path
        else:
            assert fast_routed == slow_routed, (method, path)


def test_match() -> None:
    assert match("/v2/models/m/infer") == ("infer", "m", None)
    assert match("/v2/models/m/versions/3/infer") == ("infer", "m", "3")
    assert match("/models/m/call") == ("call", "m", None)
    for path in ("/v2/models//infer", "/v2/models/m/infer/", "/v2/models/m/versions//infer", "/models//call",
                 "/models/m/classify", "/v2/models/m", "/v2/models/a/b/infer", "/x/models/m/call"):  # fmt: skip
        assert match(path) is None, path
