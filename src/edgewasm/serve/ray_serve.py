"""`edgewasm serve` on Ray Serve: the same serving core (the Starlette app, its worker pools, errors and metrics)
inside a Ray Serve deployment, with the LRU of loaded guests as `@serve.multiplexed` and autoscaling by ongoing
requests. For users who already run Ray: Ray places, scales and routes replicas; edgewasm runs the guests.

Extra `ray` (`pip install 'edgewasm[ray]'`); Ray is imported only by `deployment()`. See docs/deploy.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import edgewasm

from .._errors import EdgeWasmError
from .app import create_app
from .config import ConfigError, ModelConfig, ServerConfig
from .pool import InstancePool
from .registry import Registry

if TYPE_CHECKING:
    from .metrics import Metrics

#: Ray Serve's autoscaling: a replica runs one request per instance and queues a few more (as `--queue` does).
AUTOSCALING: dict[str, Any] = {
    "min_replicas": 1,
    "max_replicas": 4,
    "target_ongoing_requests": 2,
    "upscale_delay_s": 10,
    "downscale_delay_s": 60,
}
#: The header Ray Serve routes multiplexed requests by: a request that carries its model's name goes to a replica
#: that has that guest loaded.
MODEL_HEADER = "serve_multiplexed_model_id"


class LoadedModel:
    """One guest's worker pool, as Ray Serve's multiplexing LRU holds it; stopped when Ray evicts it."""

    def __init__(self, pool: InstancePool, timeout: float | None, on_stop: Callable[[], None]) -> None:
        self.pool = pool
        self._timeout = timeout
        self._on_stop = on_stop
        self._stopped = False

    def __del__(self) -> None:  # Ray Serve calls it on eviction (in an executor), the GC perhaps later
        if not self._stopped:
            self._stopped = True
            self._on_stop()
            self.pool.stop(self._timeout)


class MultiplexedRegistry(Registry):
    """The registry of `edgewasm serve` whose loaded models are Ray Serve's multiplexed ones: every module is
    compiled (into the artifact cache) when the replica starts; a guest is loaded when a request first needs it."""

    def __init__(self, configs: list[ModelConfig], metrics: Metrics, load: Any) -> None:
        super().__init__(configs, metrics, 0)
        self._load_model = load  # the deployment's @serve.multiplexed method
        self._pools: dict[str, InstancePool] = {}

    def prepare(self) -> None:
        if self.runtime.closed:
            self.runtime = edgewasm.Runtime()
        for config in self.configs.values():
            self._prepare_blocking(config)
        self.ready = True

    def load_pool(self, name: str) -> LoadedModel:
        config = self.config(name)
        pool = self._load_blocking(config)
        self._pools[name] = pool
        self.metrics.loads.labels(name, config.version).inc()
        self.metrics.loaded.set(len(self._pools))
        return LoadedModel(pool, config.timeout, lambda: self._forget(name, pool))

    def _forget(self, name: str, pool: InstancePool) -> None:
        if self._pools.get(name) is pool:
            del self._pools[name]
        self.metrics.loaded.set(len(self._pools))
        self.metrics.evictions.labels(name, self.configs[name].version).inc()

    def is_loaded(self, name: str) -> bool:
        return name in self._pools

    def pending(self, name: str) -> int:
        pool = self._pools.get(name)
        return pool.pending if pool is not None else 0

    async def get(self, name: str) -> InstancePool:
        self.config(name)  # a 404 for an unknown model, before Ray's LRU sees the name
        loaded: LoadedModel = await self._load_model(name)
        return loaded.pool

    async def stop(self, timeout: float | None) -> None:
        self.ready = False
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(asyncio.to_thread(p.stop, timeout) for p in pools))
        self.runtime.close()


def deployment(
    configs: list[ModelConfig],
    *,
    max_models_per_replica: int = 2,
    autoscaling: Mapping[str, Any] | None = None,
    server: ServerConfig | None = None,
    name: str = "edgewasm",
    num_cpus: float = 1.0,
) -> Any:
    """A bound Ray Serve application serving `configs` over the Open Inference Protocol (`serve.run(app)`).

    Each replica keeps at most `max_models_per_replica` guests loaded (Ray's multiplexing LRU) and takes up to
    `instances + queue` of a model's requests at once; `autoscaling` is Ray Serve's autoscaling_config.
    """
    try:
        from ray import serve
        from starlette.requests import Request
        from starlette.responses import Response
    except ImportError as e:
        raise ConfigError(
            f"the Ray Serve integration needs its extra ({e.name} is missing)", hint="pip install 'edgewasm[ray]'"
        ) from None
    if not configs:
        raise ConfigError("no model to serve", hint="pass at least one ModelConfig")
    server = server or ServerConfig()
    concurrency = max(c.instances + c.queue for c in configs)

    # Ray's decorators are applied as calls (typed Any), so mypy checks this module alike with Ray or without it.
    multiplexed: Any = serve.multiplexed(max_num_models_per_replica=max_models_per_replica)

    class EdgeWasm:
        def __init__(self, configs: list[ModelConfig], server: ServerConfig) -> None:
            self.app, self.service = create_app(configs, server)
            self.registry = MultiplexedRegistry(configs, self.service.metrics, self.get_model)
            self.service.registry = self.registry
            self.registry.prepare()  # compiled where the replica runs: its CPU is known

        async def get_model(self, model_id: str) -> LoadedModel:
            return await asyncio.to_thread(self.registry.load_pool, model_id)

        get_model = multiplexed(get_model)  # its own name: Ray finds `self` by it

        def check_health(self) -> None:
            if not self.service.ready:
                raise EdgeWasmError("edgewasm replica not ready")

        async def __call__(self, request: Request) -> Response:
            """Hand the HTTP request to edgewasm's ASGI app unchanged and return its whole answer."""
            start: dict[str, Any] = {}
            body: list[bytes] = []

            async def send(message: Mapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    start.update(message)
                elif message["type"] == "http.response.body":
                    body.append(bytes(message.get("body", b"")))

            await self.app(request.scope, request.receive, send)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])}
            headers.pop("content-length", None)
            return Response(b"".join(body), status_code=int(start.get("status", 500)), headers=headers)

        async def __del__(self) -> None:
            await self.registry.stop(self.service.server.grace)

    app: Any = serve.deployment(
        name=name,
        autoscaling_config=dict(autoscaling or AUTOSCALING),
        max_ongoing_requests=concurrency,
        ray_actor_options={"num_cpus": num_cpus},
        health_check_period_s=10,
    )(EdgeWasm)
    return app.bind(configs, server)
