"""Engines, one per configuration, and the epoch ticker that makes timeouts work.

Every setting here changes the machine code wasmtime emits (or what an artifact needs at run time), so all of them
are part of an artifact's cache key, including those wasmtime accepts silently on a mismatch.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
from typing import Any, Literal

import wasmtime
from wasmtime import _ffi as ffi

from . import _host

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
_tickers: dict[EngineSettings, threading.Thread] = {}
_lock = threading.Lock()


def engine_for(settings: EngineSettings) -> wasmtime.Engine:
    with _lock:
        engine = _engines.get(settings)
        if engine is None:
            engine = wasmtime.Engine(settings.to_config())
            _engines[settings] = engine
        return engine


def ensure_ticker(settings: EngineSettings) -> None:
    """Start the thread that advances the engine's epoch, once, on the first guest that asks for a timeout."""
    with _lock:
        if settings in _tickers:
            return
        engine = _engines[settings]

        def tick() -> None:
            while True:
                time.sleep(TICK_SECONDS)
                engine.increment_epoch()

        thread = threading.Thread(target=tick, name="edgewasm-epoch", daemon=True)
        thread.start()
        _tickers[settings] = thread


def deadline_ticks(timeout: float | None) -> int:
    if timeout is None:
        return NO_DEADLINE_TICKS
    return max(1, int(timeout / TICK_SECONDS + 0.999999)) + 1
