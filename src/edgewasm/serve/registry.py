"""The served models: their configurations, and an LRU of the ones loaded now (each an `InstancePool`).

With `max_loaded` N > 0 at most N guests are loaded at once (the article's `InferencePipeline` with
`max_cache_size`, Ray Serve's multiplexing): a request for another model loads it, and the least recently used
loaded model is evicted once its queued requests are done. Loads and evictions are counted in the metrics.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time

import edgewasm

from .config import ModelConfig
from .errors import ModelNotFound
from .inline import InlineLane, eligible, load_inline
from .metrics import Metrics
from .pool import InstancePool

log = logging.getLogger("edgewasm.serve")


class Registry:
    def __init__(self, configs: list[ModelConfig], metrics: Metrics, max_loaded: int = 0) -> None:
        self.configs = {c.name: c for c in configs}
        self.metrics = metrics
        self.max_loaded = max_loaded if max_loaded > 0 else len(configs)
        self._loaded: collections.OrderedDict[str, InstancePool] = collections.OrderedDict()
        self._locks = {name: asyncio.Lock() for name in self.configs}
        self.ready = False
        #: The server's own engines, tickers and caches: `stop()` closes it, `start()` makes a new one if needed.
        self.runtime = edgewasm.Runtime()
        for c in configs:  # read when /metrics is (on the event loop), not set by every request
            metrics.model(c.name, c.version).pending.set_function(functools.partial(self.pending, c.name))

    def config(self, name: str, version: str | None = None) -> ModelConfig:
        c = self.configs.get(name)
        if c is None:
            raise ModelNotFound(
                f"no model named {name!r}", hint=f"served models: {', '.join(self.configs) or 'none'} (GET /models)"
            )
        if version is not None and version != c.version:
            raise ModelNotFound(f"model {name!r} has no version {version!r}", hint=f"it serves version {c.version}")
        return c

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def pending(self, name: str) -> int:
        """Requests queued or running for a model now (0 when it is not loaded)."""
        pool = self._loaded.get(name)
        return pool.pending if pool is not None else 0

    # -- loading -------------------------------------------------------------------------------------------------------

    def _load_blocking(self, config: ModelConfig) -> InstancePool:
        started = time.perf_counter()
        guest = self.runtime.load(config.module, options=config.options)
        m = self.metrics.model(config.name, config.version)
        lane = None
        if eligible(guest, config.timeout):
            lane = InlineLane(config.name, lambda: load_inline(self.runtime, config.module, config.options))
        pool = InstancePool(
            config.name,
            guest,
            config.instances,
            config.queue,
            on_queued=lambda s: m.queue_us.inc(s * 1e6),
            on_trap=m.replacements.inc,
            on_busy=m.instances_in_use.set,
            inline=lane,
        )
        try:
            pool.start()
        except BaseException:
            guest.close()
            raise
        log.info(
            "loaded %s (%s, %s, %d instances) in %.0f ms",
            config.name,
            config.module.name,
            guest.origin,
            config.instances,
            (time.perf_counter() - started) * 1e3,
            extra={"fields": {"model": config.name, "origin": guest.origin}},
        )
        return pool

    def _prepare_blocking(self, config: ModelConfig) -> None:
        """Compile (or verify the cached artifact) and instantiate once, without keeping it loaded."""
        self.runtime.load(config.module, options=config.options).close()

    async def start(self) -> None:
        """Load the first `max_loaded` models and prepare the rest; ready when every module has instantiated."""
        if self.runtime.closed:
            self.runtime = edgewasm.Runtime()
        for i, config in enumerate(self.configs.values()):
            if i < self.max_loaded:
                await self._load(config)
            else:
                await asyncio.to_thread(self._prepare_blocking, config)
        self.ready = True

    async def _load(self, config: ModelConfig) -> InstancePool:
        pool = await asyncio.to_thread(self._load_blocking, config)
        labels = (config.name, config.version)
        self.metrics.loads.labels(*labels).inc()
        self.metrics.instances.labels(*labels).set(config.instances)
        self._loaded[config.name] = pool
        self.metrics.loaded.set(len(self._loaded))
        while len(self._loaded) > self.max_loaded:
            victim, old = next(iter(self._loaded.items()))
            await self._evict(victim, old)
        return pool

    async def _evict(self, name: str, pool: InstancePool) -> None:
        config = self.configs[name]
        del self._loaded[name]
        self.metrics.loaded.set(len(self._loaded))
        self.metrics.evictions.labels(config.name, config.version).inc()
        self.metrics.instances.labels(config.name, config.version).set(0)
        log.info("evicted %s (least recently used)", name, extra={"fields": {"model": name}})
        # Its workers finish what was queued first (FIFO), then stop; nothing new reaches it.
        asyncio.get_running_loop().run_in_executor(None, pool.stop, config.timeout)

    async def get(self, name: str) -> InstancePool:
        """The model's pool, loading it (and evicting the least recently used) if needed."""
        pool = self._loaded.get(name)
        if pool is not None:
            self._loaded.move_to_end(name)
            return pool
        config = self.config(name)
        async with self._locks[name]:
            pool = self._loaded.get(name)
            if pool is None:
                pool = await self._load(config)
            self._loaded.move_to_end(name)
            return pool

    async def stop(self, timeout: float | None) -> None:
        pools = list(self._loaded.values())
        self._loaded.clear()
        self.ready = False
        await asyncio.gather(*(asyncio.to_thread(p.stop, timeout) for p in pools))
        # After the pools: a call still running past the grace period would lose its timeout (the process is ending).
        self.runtime.close()
