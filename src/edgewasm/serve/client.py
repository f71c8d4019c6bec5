"""A small Open Inference Protocol client: `edgewasm.Client(url).infer(model, request)` answers what
`edgewasm.load(module).infer(request)` would, over HTTP (the standard library's http.client, numpy).

The request map is sent with the binary tensor data extension (arrays and bytes as raw bytes), scalars as request
parameters, anything else as JSON text; the outputs come back binary and are mapped back by the same rules
(`mapping.py`). Errors raise the same exceptions as a local guest: `GuestError` for what the guest reported,
`GuestTimeout`/`GuestTrap`/`GuestOutOfMemory` for its traps, `ServiceError` for the rest (status and kind).
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from .._errors import EdgeWasmError, GuestError, GuestOutOfFuel, GuestOutOfMemory, GuestTimeout, GuestTrap
from .errors import ServiceError
from .mapping import request_tensors, response_value
from .tensors import HEADER_LENGTH, read_tensors, split_body, write_body

_TRAPS: dict[str, type[GuestTrap]] = {
    "timeout": GuestTimeout,
    "deadline_exceeded": GuestTimeout,  # the server's deadline (queue time included) passed first
    "out_of_memory": GuestOutOfMemory,
    "out_of_fuel": GuestOutOfFuel,
    "trap": GuestTrap,
}


def _error(status: int, body: bytes) -> EdgeWasmError:
    try:
        data = json.loads(body)
        message, kind = str(data["error"]), str(data.get("kind", "error"))
    except (ValueError, KeyError, TypeError):
        text = body[:200].decode("utf-8", "replace")
        return ServiceError(f"HTTP {status}: {text}", status=status, kind="http")
    hint = data.get("hint") if isinstance(data.get("hint"), str) else None
    if "message" in data and status in (400, 422):
        return GuestError(kind, str(data["message"]), hint=hint)
    if kind in _TRAPS:
        return _TRAPS[kind](message, trap_code=data.get("trap_code"), hint=hint)
    return ServiceError(message, status=status, kind=kind, hint=hint)


class Client:
    """One keep-alive connection to an `edgewasm serve`; safe to share between threads (calls take turns)."""

    def __init__(self, url: str = "http://127.0.0.1:8000", *, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServiceError(f"cannot use {url!r} as a server URL", status=0, kind="url", hint="http://HOST:PORT")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP exchange (retried once on a fresh connection if the kept-alive one was closed)."""
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                try:
                    conn.request(method, self._prefix + path, body=body, headers=dict(headers or {}))
                    resp = conn.getresponse()
                    data = resp.read()
                    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                    self.close_connection()
                    if attempt:
                        raise ServiceError(f"{self.url}: connection lost: {e}", status=0, kind="connection") from None
                except OSError as e:
                    self.close_connection()
                    raise ServiceError(
                        f"cannot reach {self.url}: {e}",
                        status=0,
                        kind="connection",
                        hint="is `edgewasm serve` running?",
                    ) from None
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str) -> Any:
        status, _, data = self.request(method, path)
        if status != 200:
            raise _error(status, data)
        return json.loads(data)

    # -- the API -------------------------------------------------------------------------------------------------------

    def infer(self, model: str, request: Mapping[str, Any], *, version: str | None = None) -> Any:
        """Send a guest request map (numpy arrays, bytes, str, numbers, lists, maps) and return the guest's answer."""
        inputs, params = request_tensors(request)
        header: dict[str, Any] = {"inputs": []}
        params["binary_data_output"] = True
        header["parameters"] = params
        binary = {t.name for t in inputs if t.datatype != "BYTES" or t.content_type != "json"}
        body, length = write_body(header, "inputs", inputs, binary)
        headers = {"Content-Type": "application/octet-stream" if length is not None else "application/json"}
        if length is not None:
            headers[HEADER_LENGTH] = str(length)
        path = f"/v2/models/{urllib.parse.quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{urllib.parse.quote(version, safe='')}"
        status, resp_headers, data = self.request("POST", path + "/infer", body, headers)
        if status != 200:
            raise _error(status, data)
        head, rest = split_body(data, resp_headers.get(HEADER_LENGTH.lower()))
        outputs = read_tensors(head.get("outputs"), rest, "output")
        return {t.name: response_value(t) for t in outputs}

    def ready(self) -> bool:
        """Whether the server says it is ready (`/v2/health/ready` answers 200): every model loaded."""
        status, _, _ = self.request("GET", "/v2/health/ready")
        return status == 200

    def metadata(self, model: str | None = None) -> Any:
        """The server's metadata, or a model's."""
        return self._json("GET", "/v2" if model is None else f"/v2/models/{urllib.parse.quote(model, safe='')}")

    def close_connection(self) -> None:
        """Close the kept-alive connection (the next request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection; the client may still be used, it reconnects."""
        with self._lock:
            self.close_connection()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
