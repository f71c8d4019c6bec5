"""Run the service on uvicorn: bind, serve, and on SIGTERM/SIGINT drain in-flight requests and exit 0.

uvicorn re-raises a caught signal after its graceful shutdown (so the process would die of SIGTERM, or raise
KeyboardInterrupt); a service that drained cleanly should exit 0, so `_Server` forgets the signal instead.

A shutdown has a bound: the connections' drain and the pools' each get the grace period, and a watchdog woken by
the signal ends the process (exit 1, every thread's stack on stderr) if it is still alive `2 * grace + WATCHDOG_SLACK`
seconds later, so that nothing a stuck thread does can keep a stopping server alive until an orchestrator kills it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

import uvicorn

from .._errors import EdgeWasmError
from . import logs
from .app import Service, create_app
from .config import ConfigError, ModelConfig, ServerConfig

log = logging.getLogger("edgewasm.serve")

#: Seconds beyond the two grace periods a stopping server may take before the watchdog ends it.
WATCHDOG_SLACK = 10.0


def _watchdog(seconds: float, stopping: threading.Event | None = None, drain: float = 0.0) -> None:
    """Once `stopping` is set (at once without one), say that the server drains, then end the process if it is
    still alive `seconds` later. It runs on its own thread from the start so that the signal handler only sets
    the event: a handler that logs itself can interrupt the main thread inside a write to stderr, and the
    reentrant write raises out of the handler before uvicorn learns of the signal (a server that never stopped)."""
    if stopping is not None:
        stopping.wait()
        log.info("draining: no new connections, in-flight requests get %g s", drain)
    time.sleep(seconds)
    log.error("shutdown did not finish within %g s: exiting; the threads were:", seconds)
    for handler in logging.getLogger().handlers:
        handler.flush()
    faulthandler.dump_traceback(sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(1)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.service: Service | None = None
        #: Set by the first signal; the watchdog thread waits for it (see `_watchdog`).
        self.stopping = threading.Event()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: flags only, no I/O, no lock the interrupted main thread may hold.
        if self.service is not None and not self.service.draining:
            self.service.draining = True
            self.stopping.set()
        super().handle_exit(sig, frame)

    def start_watchdog(self) -> None:
        grace = self.service.server.grace if self.service is not None else 0.0
        drain = float(self.config.timeout_graceful_shutdown or 0)
        limit = 2 * max(grace, drain) + WATCHDOG_SLACK
        threading.Thread(
            target=_watchdog, args=(limit, self.stopping, drain), name="edgewasm-shutdown-watchdog", daemon=True
        ).start()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are TCP; without it
    # a response's body waits for the ACK of its headers, which a client delays by ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {e.strerror}", hint="choose another --port or --host"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(models: list[ModelConfig], server: ServerConfig) -> None:
    """Serve until SIGTERM/SIGINT; raises the EdgeWasmError that made serving impossible (a module that fails)."""
    fatal: list[EdgeWasmError] = []
    uv: _Server | None = None

    def on_fatal(e: EdgeWasmError) -> None:
        fatal.append(e)
        if uv is not None:
            uv.should_exit = True

    app, svc = create_app(models, server, on_fatal)
    sock = _bind(server.host, server.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        log_config=logs.uvicorn_log_config(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(server.grace) if server.grace >= 1 else 1,
        server_header=False,
        log_level=server.log_level,
    )
    logs.setup(server.log_format, server.log_level)  # after uvicorn.Config, which runs logging.config itself
    uv = _Server(config)
    uv.service = svc
    uv.start_watchdog()
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "listening on http://%s:%d (%d models; ready when every module is loaded)",
        shown,
        port,
        len(models),
        extra={"fields": {"url": f"http://{shown}:{port}"}},
    )
    try:
        uv.run(sockets=[sock])
    finally:
        sock.close()
    if fatal:
        raise fatal[0]
    log.info("stopped")
    sys.stderr.flush()
