"""A small closed-loop HTTP/1.1 load generator for the serving benchmarks (loopback only, bounded).

It writes pre-built requests on keep-alive connections and reads just enough of each answer (status line,
Content-Length) to find its end, so the client spends as little of the shared CPUs as possible, and equally for
every server it measures. Each of `concurrency` workers sends its next request when the last one is answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Sequence

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass(frozen=True)
class Request:
    kind: str  # how the results are grouped ("good", "spin", ...)
    raw: bytes  # the whole HTTP request


def http_request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclasses.dataclass
class Sample:
    kind: str
    status: int
    seconds: float


@dataclasses.dataclass
class Run:
    samples: list[Sample]
    wall: float

    def of(self, kind: str | None = None) -> list[Sample]:
        return [s for s in self.samples if kind is None or s.kind == kind]

    def throughput(self, kind: str | None = None) -> float:
        return len(self.of(kind)) / self.wall if self.wall else 0.0

    def quantile_ms(self, q: float, kind: str | None = None) -> float:
        xs = sorted(s.seconds for s in self.of(kind))
        if not xs:
            return float("nan")
        i = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
        return xs[i] * 1e3

    def median_ms(self, kind: str | None = None) -> float:
        xs = [s.seconds for s in self.of(kind)]
        return statistics.median(xs) * 1e3 if xs else float("nan")

    def failures(self, kind: str | None = None, ok: Sequence[int] = (200,)) -> int:
        return sum(1 for s in self.of(kind) if s.status not in ok)


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    if b"\r\nconnection: close" in head.lower():
        raise ConnectionResetError("server closed the connection")
    return status


async def _worker(
    host: str, port: int, requests: Sequence[Request], start: int, step: int, stop_at: float, budget: list[int],
    out: list[Sample],
) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    i = start
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            req = requests[i % len(requests)]
            i += step
            t0 = time.perf_counter()
            writer.write(req.raw)
            try:
                status = await _read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                status = 599
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            out.append(Sample(req.kind, status, time.perf_counter() - t0))
    finally:
        writer.close()


async def _run(host: str, port: int, requests: Sequence[Request], concurrency: int, seconds: float, count: int) -> Run:
    if host not in LOOPBACK:
        raise ValueError(f"load goes to loopback only, not {host}")
    out: list[Sample] = []
    budget = [count]
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(
        *(_worker(host, port, requests, w, concurrency, stop_at, budget, out) for w in range(concurrency))
    )
    return Run(out, time.perf_counter() - t0)


def run_load(host: str, port: int, requests: Sequence[Request], concurrency: int, seconds: float, count: int) -> Run:
    """Send up to `count` requests for at most `seconds` (both bounds hold), `concurrency` at a time."""
    return asyncio.run(_run(host, port, requests, concurrency, seconds, count))
