"""Engines, one per configuration and runtime (`Engines`), their epoch tickers (`_ticker`) that make timeouts
work, and timeout values.

Every setting here changes the machine code wasmtime emits (or what an artifact needs at run time), so all of them
are part of an artifact's cache key, including those wasmtime accepts silently on a mismatch.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import numbers
import os
import threading
import weakref
from typing import Any, Literal

import wasmtime

from . import _hostinfo, _ticker, _wasmtime
from ._errors import ModuleLoadError, SandboxError

OptLevel = Literal["none", "speed", "speed_and_size"]

#: How often the ticker advances the epoch; a timeout is honoured to within about two ticks.
TICK_SECONDS = 0.005
#: Deadline for calls without a timeout: far enough that it never fires.
NO_DEADLINE_TICKS = 1 << 48


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """The code-generation settings of an engine. Two guests with equal settings share one engine."""

    opt_level: OptLevel = "speed"
    fuel: bool = False
    #: Epoch interruption, compiled in only for guests with a timeout: its checks at loop back-edges cost
    #: compute-bound guests a few percent (the classifier: 5%; an early kernel: 1.55x).
    epoch: bool = True
    simd: bool = True
    relaxed_simd: bool = False
    nan_canonicalization: bool = False
    max_wasm_stack: int = 1 << 20
    debug_info: bool = False
    pooling: bool = True

    def key(self) -> dict[str, Any]:
        """The settings and the host, as they enter a cache key."""
        return json.loads(self.key_json())  # type: ignore[no-any-return]

    def key_json(self) -> str:
        return _key_json(self)

    def to_config(self) -> wasmtime.Config:
        cfg = wasmtime.Config()
        cfg.cranelift_opt_level = self.opt_level
        cfg.consume_fuel = self.fuel
        cfg.epoch_interruption = self.epoch
        cfg.wasm_simd = self.simd
        cfg.wasm_relaxed_simd = self.relaxed_simd
        cfg.cranelift_nan_canonicalization = self.nan_canonicalization
        cfg.max_wasm_stack = self.max_wasm_stack
        cfg.debug_info = self.debug_info
        # Cache hits are what make start-up fast; on a miss, compile on every core.
        cfg.parallel_compilation = True
        if self.pooling:
            _wasmtime.enable_pooling(cfg, POOL_INSTANCES, POOL_MAX_MEMORY)
        return cfg


#: Instances alive at once per engine under the pooling allocator (a store per thread per guest).
POOL_INSTANCES = 1000
#: Largest linear memory a pooled instance may grow to.
POOL_MAX_MEMORY = 4 << 30


@functools.cache
def _key_json(settings: EngineSettings) -> str:
    key = {"settings": dataclasses.asdict(settings), "host": _hostinfo.fingerprint()}
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


#: Use the Python-thread ticker even where a POSIX timer is available (benchmarks compare the two).
PREFER_THREAD_TICKER = False


class Engines:
    """One runtime's engines, one per settings, and the epoch tickers it started for them (`edgewasm.Runtime`).

    `close()` stops the tickers and forgets the engines; an `Engines` dropped without it stops its tickers when it
    is collected (guests keep theirs alive through their `Loaded`)."""

    def __init__(self) -> None:
        self._engines: dict[EngineSettings, wasmtime.Engine] = {}
        self._tickers: dict[EngineSettings, _ticker.Ticker] = {}
        self._lock = threading.Lock()
        self.closed = False
        # Exit stops every ticker itself (`_at_exit`, after `_ticker.shutdown`), so the finalizer does not run then.
        weakref.finalize(self, _stop_all, self._tickers).atexit = False
        _live.add(self)

    def engine_for(self, settings: EngineSettings) -> wasmtime.Engine:
        with self._lock:
            self._refuse_if_closed()
            engine = self._engines.get(settings)
            if engine is None:
                engine = wasmtime.Engine(settings.to_config())
                self._engines[settings] = engine
            return engine

    def ensure_ticker(self, settings: EngineSettings) -> _ticker.Ticker:
        """Start what advances the engine's epoch, once, on the first instance that asks for a timeout."""
        with self._lock:
            self._refuse_if_closed()
            ticker = self._tickers.get(settings)
            if ticker is None:
                ticker = _ticker.start(self._engines[settings], TICK_SECONDS, prefer_thread=PREFER_THREAD_TICKER)
                self._tickers[settings] = ticker
            return ticker

    def stop_ticker(self, settings: EngineSettings) -> None:
        """Stop the engine's ticker (when none of its guests runs any more); the next new instance starts another.

        A call already running on this engine, or made later on an instance made before, has no timeout until then."""
        with self._lock:
            ticker = self._tickers.pop(settings, None)
        if ticker is not None:
            ticker.stop()

    def ticker_kind(self, settings: EngineSettings) -> str | None:
        """ "posix-timer" (ticks without the GIL), "thread", or None when the engine has no ticker."""
        ticker = self._tickers.get(settings)
        return ticker.kind if ticker is not None else None

    def close(self) -> None:
        """Stop every ticker and forget the engines; from now on asking for an engine or a ticker is refused."""
        with self._lock:
            self.closed = True
            self._engines.clear()
        _stop_all(self._tickers)

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise ModuleLoadError("this edgewasm.Runtime is closed", hint="make a new edgewasm.Runtime to load guests")

    def _restart_in_child(self) -> None:
        """A forked child inherits no timer and no thread: tick again for the engines that ticked in the parent
        (with Python threads: see `_ticker._forked`)."""
        self._lock = threading.Lock()  # the parent may have held it while forking
        for settings, old in list(self._tickers.items()):
            if isinstance(old, _ticker.PosixTimerTicker):
                old.abandon()
            try:
                self._tickers[settings] = _ticker.start(
                    self._engines[settings], TICK_SECONDS, prefer_thread=PREFER_THREAD_TICKER
                )
            except Exception:  # never break fork(); such a child's guests time out only once a new instance starts one
                del self._tickers[settings]


def _stop_all(tickers: dict[EngineSettings, _ticker.Ticker]) -> None:
    # Pop one at a time: a ticker stopped twice (close, then the finalizer or exit) stops once.
    while tickers:
        try:
            _, ticker = tickers.popitem()
        except KeyError:
            return
        ticker.stop()


#: Every Engines not yet collected: a forked child restarts their tickers, exit stops them.
_live: weakref.WeakSet[Engines] = weakref.WeakSet()


def _restart_tickers_in_child() -> None:
    _ticker.forked()
    for engines in list(_live):
        engines._restart_in_child()


def _at_exit() -> None:
    _ticker.shutdown()
    for engines in list(_live):
        _stop_all(engines._tickers)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_tickers_in_child)
atexit.register(_at_exit)


#: Timeouts above this (in seconds) never fire before the deadline counter would: they mean "no limit".
MAX_TIMEOUT = NO_DEADLINE_TICKS * TICK_SECONDS


def check_timeout(timeout: object) -> float | None:
    """A timeout as the caller gave it, as seconds or None (no limit).

    None, +inf and values beyond MAX_TIMEOUT mean no limit; 0, negative numbers, NaN and non-numbers are refused
    (on the command line, `--timeout 0` means no limit)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise SandboxError(
            f"timeout must be a number of seconds, got {timeout!r}", hint="pass seconds, or None for no limit"
        )
    seconds = float(timeout)
    if not seconds > 0:  # NaN too
        raise SandboxError(
            f"timeout must be a positive number of seconds, got {timeout!r}", hint="pass None for no limit"
        )
    return None if seconds >= MAX_TIMEOUT else seconds


def deadline_ticks(timeout: float | None) -> int:
    if timeout is None or not timeout < MAX_TIMEOUT:
        return NO_DEADLINE_TICKS
    return max(1, int(timeout / TICK_SECONDS + 0.999999)) + 1
