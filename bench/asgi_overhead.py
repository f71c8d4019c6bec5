"""What `edgewasm serve`'s own Python costs per request: the ASGI app called in-process, no sockets, bounded.

    python bench/asgi_overhead.py                   # µs and Python calls per request, each path, a few rounds
    python bench/asgi_overhead.py --profile oip     # plus cProfile's top functions for one path (oip, call, bare)

Drives the real app (`edgewasm.serve.app.create_app`, the echo guest, no access log as in bench/serve_bench.py) and
a bare Starlette endpoint that echoes the body (bench/serve_baseline.py's `/echo`) with a fake `receive`/`send`, so
what is measured is the framework and our mapping, not the network or uvicorn. Rounds alternate the paths; compare
the ratios (other jobs share the machine). Python calls are counted with `sys.setprofile` (function entries on the
event loop's thread: with the inline lane open, that is the whole request).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edgewasm.serve.app import create_app
from edgewasm.serve.config import ModelConfig, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
ECHO_JSON = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello, edge"]}]})
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def bare_app() -> Starlette:
    """bench/serve_baseline.py's echo endpoint (that module also loads ONNX Runtime, so it is repeated here)."""

    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    return Starlette(routes=[Route("/echo", echo, methods=["POST"])])


def scope(method: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """An HTTP scope as uvicorn builds it."""
    raw = [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "scheme": "http", "method": method,
        "root_path": "", "path": path, "raw_path": path.encode(), "query_string": b"", "headers": raw, "state": {},
    }  # fmt: skip


class Case:
    """One request, replayed: its scope (copied per request, as a server makes a new one) and its body."""

    def __init__(self, app: App, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.app = app
        self.template = scope("POST", path, body, headers)
        self.body = body
        self.status = 0
        self.answer = b""

    async def once(self) -> None:
        s = dict(self.template)
        s["state"] = {}
        message = {"type": "http.request", "body": self.body, "more_body": False}

        async def receive() -> dict[str, Any]:
            return message

        async def send(m: dict[str, Any]) -> None:
            if m["type"] == "http.response.start":
                self.status = m["status"]
            elif m["type"] == "http.response.body":
                self.answer = m.get("body", b"")

        await self.app(s, receive, send)

    async def timed(self, n: int) -> float:
        """µs per request over `n` requests."""
        t0 = time.perf_counter()
        for _ in range(n):
            await self.once()
        return (time.perf_counter() - t0) / n * 1e6

    async def calls(self, n: int) -> float:
        """Python function entries per request on this thread."""
        count = 0

        def hook(frame: Any, event: str, arg: Any) -> None:
            nonlocal count
            if event == "call":
                count += 1

        sys.setprofile(hook)
        try:
            for _ in range(n):
                await self.once()
        finally:
            sys.setprofile(None)
        return count / n


def cases(app: App, bare: App) -> dict[str, Case]:
    packed = msgpack.packb({"text": "hello, edge"})
    return {
        "oip": Case(app, "/v2/models/echo/infer", ECHO_JSON.encode(), {"content-type": "application/json"}),
        "call": Case(app, "/models/echo/call", packed,
                     {"content-type": "application/msgpack", "accept": "application/msgpack"}),
        "bare": Case(bare, "/echo", ECHO_JSON.encode(), {"content-type": "application/json"}),
    }  # fmt: skip


async def main_async(args: argparse.Namespace) -> int:
    config = ModelConfig("echo", ROOT / "wasm" / "echo.wat").checked()
    app, svc = create_app([config], ServerConfig(access_log=False))
    bare = bare_app()
    async with svc.lifespan(app):  # type: ignore[arg-type]
        while not svc.ready:
            await asyncio.sleep(0.01)
        found = cases(app, bare)
        for c in found.values():  # warm up; 64 fast worker calls open the echo model's inline lane
            for _ in range(64):
                await c.once()
            if c.status != 200:
                raise SystemExit(f"{c.template['path']}: status {c.status}: {c.answer[:200]!r}")
        lane = (await svc.registry.get("echo")).inline
        rows: dict[str, dict[str, list[float]]] = {k: {"us": [], "calls": []} for k in found}
        for _ in range(args.rounds):
            for name, c in found.items():
                rows[name]["us"].append(await c.timed(args.requests))
        for name, c in found.items():
            rows[name]["calls"].append(await c.calls(200))
        bare_us = statistics.median(rows["bare"]["us"])
        print(f"inline lane open: {lane is not None and lane.open}; {args.rounds} rounds of {args.requests} requests")
        bare_min = min(rows["bare"]["us"])
        # The fastest round is the least disturbed by other jobs: the best estimate of the cost itself.
        print(f"{'path':6} {'us/request: median':>19} {'fastest round':>14} {'calls':>6} x bare (median, fastest)")
        for name, r in rows.items():
            med, low = statistics.median(r["us"]), min(r["us"])
            calls = r["calls"][0]
            print(f"{name:6} {med:19.1f} {low:14.1f} {calls:6.0f} {med / bare_us:15.2f}x {low / bare_min:6.2f}x")
        if args.profile:
            prof = cProfile.Profile()
            c = found[args.profile]
            prof.enable()
            for _ in range(args.requests):
                await c.once()
            prof.disable()
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500, help="per path and round")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--profile", choices=("oip", "call", "bare"))
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=30)
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
