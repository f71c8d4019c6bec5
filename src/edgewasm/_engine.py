"""Engines, one per configuration, their epoch tickers (`_ticker`) that make timeouts work, and timeout values.

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
from typing import Any, Literal

import wasmtime
from wasmtime import _ffi as ffi

from . import _host, _ticker
from ._sandbox import SandboxError

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
        # Cache hits are what make start-up fast; on a miss, use both cores.
        cfg.parallel_compilation = True
        if self.pooling:
            _enable_pooling(cfg)
        return cfg


#: Instances alive at once per engine under the pooling allocator (a store per thread per guest).
POOL_INSTANCES = 1000
#: Largest linear memory a pooled instance may grow to.
POOL_MAX_MEMORY = 4 << 30


@functools.cache
def _key_json(settings: EngineSettings) -> str:
    key = {"settings": dataclasses.asdict(settings), "host": _host.fingerprint()}
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _enable_pooling(cfg: wasmtime.Config) -> None:
    """The pooling allocator is not exposed by wasmtime-py's Config; its C functions are bound, so use them."""
    pool = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pool, POOL_INSTANCES)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pool, POOL_INSTANCES)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pool, POOL_INSTANCES)
        ffi.wasmtime_pooling_allocation_config_total_stacks_set(pool, POOL_INSTANCES)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pool, POOL_MAX_MEMORY)
        ffi.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pool)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pool)


_engines: dict[EngineSettings, wasmtime.Engine] = {}
_tickers: dict[EngineSettings, _ticker.Ticker] = {}
_lock = threading.Lock()
#: Use the Python-thread ticker even where a POSIX timer is available (benchmarks compare the two).
PREFER_THREAD_TICKER = False


def engine_for(settings: EngineSettings) -> wasmtime.Engine:
    with _lock:
        engine = _engines.get(settings)
        if engine is None:
            engine = wasmtime.Engine(settings.to_config())
            _engines[settings] = engine
        return engine


def ensure_ticker(settings: EngineSettings) -> _ticker.Ticker:
    """Start what advances the engine's epoch, once, on the first guest that asks for a timeout."""
    with _lock:
        ticker = _tickers.get(settings)
        if ticker is None:
            ticker = _ticker.start(_engines[settings], TICK_SECONDS, prefer_thread=PREFER_THREAD_TICKER)
            _tickers[settings] = ticker
        return ticker


def stop_ticker(settings: EngineSettings) -> None:
    """Stop the engine's ticker (when none of its guests runs any more); the next new instance starts another.

    A call already running on this engine, or made later on an instance made before, has no timeout until then."""
    with _lock:
        ticker = _tickers.pop(settings, None)
    if ticker is not None:
        ticker.stop()


def stop_tickers() -> None:
    """Stop every engine's ticker."""
    with _lock:
        tickers = list(_tickers.values())
        _tickers.clear()
    for ticker in tickers:
        ticker.stop()


def ticker_kind(settings: EngineSettings) -> str | None:
    """ "posix-timer" (ticks without the GIL), "thread", or None when the engine has no ticker."""
    ticker = _tickers.get(settings)
    return ticker.kind if ticker is not None else None


def _restart_tickers_in_child() -> None:
    """A forked child inherits no timer and no thread: tick again for the engines that ticked in the parent
    (with Python threads: see `_ticker._forked`)."""
    global _lock
    _lock = threading.Lock()  # the parent may have held it while forking
    _ticker.forked()
    for settings, old in list(_tickers.items()):
        if isinstance(old, _ticker.PosixTimerTicker):
            old.abandon()
        try:
            _tickers[settings] = _ticker.start(_engines[settings], TICK_SECONDS, prefer_thread=PREFER_THREAD_TICKER)
        except Exception:  # never break fork(); such a child's guests time out only once a new instance starts one
            del _tickers[settings]


def _at_exit() -> None:
    _ticker.shutdown()
    stop_tickers()


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
