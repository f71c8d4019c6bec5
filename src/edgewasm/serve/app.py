"""The HTTP routes: the Open Inference Protocol (KServe v2) REST API, the two conveniences, metrics, the page.

| route | what |
|---|---|
| `GET /v2/health/live`, `/v2/health/ready` | liveness; readiness (every module compiled, instantiated; not draining) |
| `GET /v2` | server metadata |
| `GET /v2/models/{m}[/versions/{v}]`, `.../ready` | model metadata and readiness (loaded now) |
| `POST /v2/models/{m}[/versions/{v}]/infer` | inference with JSON tensors or the binary tensor data extension |
| `POST /v2/repository/index` | the models and their state (Triton's repository extension, read-only) |
| `POST /models/{m}/call` | the guest's own request as JSON or msgpack |
| `POST /models/{m}/classify` | an image file (raw body or multipart form) for a classifier |
| `GET /models`, `GET /metrics`, `GET /openapi.json`, `GET /` | the model list, Prometheus, OpenAPI, the page |

`POST .../infer` and `POST /models/{m}/call` are answered by `fastroute.InferenceRoutes` in front of Starlette (the
same `Service` methods, without Starlette's per-request objects); their Starlette routes below answer the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.resources
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .. import __version__
from .._errors import EdgeWasmError
from .answers import Answer, exception_answer, json_answer, to_response
from .config import ModelConfig, ServerConfig
from .errors import BadRequest, NotReady, UnsupportedMediaType, error_body, status_and_kind
from .fastroute import InferenceRoutes
from .inference import Result, call_media_type, call_native, classify_image, infer_oip
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .middleware import RequestContext
from .openapi import openapi_document
from .registry import Registry
from .tensors import HEADER_LENGTH

log = logging.getLogger("edgewasm.serve")
Handler = Callable[[Request], Awaitable[Response]]
SERVER_NAME = "edgewasm"
EXTENSIONS = ["binary_tensor_data"]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status, headers)


class Service:
    """The state behind the routes: the registry, the metrics, readiness and draining."""

    def __init__(
        self, configs: list[ModelConfig], server: ServerConfig, on_fatal: Callable[[EdgeWasmError], None]
    ) -> None:
        self.server = server
        self.metrics = Metrics()
        self.registry = Registry(configs, self.metrics, server.max_loaded)
        self.draining = False
        self._on_fatal = on_fatal
        self._start_task: asyncio.Task[None] | None = None
        self.page = {
            name: (importlib.resources.files("edgewasm.serve") / "static" / name).read_bytes()
            for name in ("index.html", "app.js", "style.css")
        }

    @property
    def ready(self) -> bool:
        return self.registry.ready and not self.draining

    # -- life ----------------------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._start_task = asyncio.create_task(self._start())
        try:
            yield
        finally:
            self.draining = True
            if not self._start_task.done():
                self._start_task.cancel()
            await self.registry.stop(self.server.grace)

    async def _start(self) -> None:
        started = time.perf_counter()
        try:
            await self.registry.start()
        except EdgeWasmError as e:
            log.error("cannot serve: %s", e.one_line())
            self._on_fatal(e)
            return
        except Exception as e:  # a bug in edgewasm: say so, with the traceback, and stop
            log.exception("cannot serve: internal error: %s", e)
            self._on_fatal(EdgeWasmError(f"internal error: {type(e).__name__}: {e}"))
            return
        log.info(
            "ready: %d models in %.0f ms",
            len(self.registry.configs),
            (time.perf_counter() - started) * 1e3,
            extra={"fields": {"models": list(self.registry.configs)}},
        )

    # -- helpers -------------------------------------------------------------------------------------------------------

    def _failure(self, state: dict[str, Any], exc: EdgeWasmError, config: ModelConfig) -> Answer:
        status, kind = status_and_kind(exc)
        state["error_kind"] = kind
        self.metrics.model(config.name, config.version).failure(kind).inc()
        headers = {"Retry-After": str(self.server.retry_after)} if status == 503 else None
        return json_answer(error_body(exc), status, headers)

    async def _run(
        self, state: dict[str, Any], config: ModelConfig, size: int, job: Callable[..., Result], *args: Any
    ) -> Answer:
        """Run `job(guest, *args)` on one of the model's instances, within the request's deadline."""
        arrived = state["arrived"]
        timeout = config.timeout
        deadline = arrived + timeout if timeout is not None else float("inf")
        m = self.metrics.model(config.name, config.version)
        try:
            if not self.ready:
                raise NotReady("the server is starting or shutting down", hint="retry when /v2/health/ready is 200")
            pool = await self.registry.get(config.name)
            result: Result = await pool.submit(_bind(job, args), deadline, size)
        except EdgeWasmError as e:
            return self._failure(state, e, config)
        m.succeeded(time.monotonic() - arrived, result.input_s, result.infer_s, result.output_s)
        for stage, ms in result.stages_ms.items():
            series = m.stage(stage)
            if series is not None:
                series.inc(ms * 1e3)
        headers = {HEADER_LENGTH: str(result.header_length)} if result.header_length is not None else None
        return Answer(200, result.body, result.media_type, headers)

    # -- health and metadata -------------------------------------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def ready_route(self, request: Request) -> Response:
        return _json({"ready": self.ready}, 200 if self.ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        return _json({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})

    def _model(self, request: Request) -> ModelConfig:
        return self.lookup(request.scope["state"], request.path_params["model"], request.path_params.get("version"))

    def lookup(self, state: dict[str, Any], name: str, version: str | None) -> ModelConfig:
        """The model a request names (ModelNotFound if none), kept in its state for the access log."""
        state["model"] = name
        return self.registry.config(name, version)

    async def model_metadata(self, request: Request) -> Response:
        c = self._model(request)
        return _json(
            {
                "name": c.name,
                "versions": [c.version],
                "platform": "edgewasm",
                "inputs": [t.to_json() for t in c.describe_inputs()],
                "outputs": [t.to_json() for t in c.describe_outputs()],
                "parameters": {"task": c.task or "", "description": c.description, "module": c.module.name},
            }
        )

    async def model_ready(self, request: Request) -> Response:
        c = self._model(request)
        ready = self.ready and self.registry.is_loaded(c.name)
        return _json({"name": c.name, "ready": ready}, 200 if ready else 503)

    def _index(self) -> list[dict[str, Any]]:
        return [
            {
                "name": c.name,
                "version": c.version,
                "state": "READY" if self.registry.is_loaded(c.name) else "UNAVAILABLE",
                "task": c.task or "",
                "description": c.description,
            }
            for c in self.registry.configs.values()
        ]

    async def repository_index(self, request: Request) -> Response:
        return _json([{k: m[k] for k in ("name", "version", "state")} for m in self._index()])

    async def models(self, request: Request) -> Response:
        return _json({"models": self._index(), "ready": self.ready})

    # -- inference -----------------------------------------------------------------------------------------------------

    async def infer(self, request: Request) -> Response:
        c = self._model(request)
        body = await request.body()
        return to_response(await self.infer_answer(request.scope["state"], c, body, request.headers.get(HEADER_LENGTH)))

    async def infer_answer(
        self, state: dict[str, Any], c: ModelConfig, body: bytes, header_length: str | None
    ) -> Answer:
        return await self._run(
            state, c, len(body), infer_oip, body, header_length, c.name, c.version, state["request_id"]
        )

    async def call(self, request: Request) -> Response:
        c = self._model(request)
        ctype = call_media_type(request.headers.get("content-type"))
        body = await request.body()
        return to_response(
            await self.call_answer(request.scope["state"], c, body, ctype, request.headers.get("accept"))
        )

    async def call_answer(
        self, state: dict[str, Any], c: ModelConfig, body: bytes, ctype: str, accept: str | None
    ) -> Answer:
        return await self._run(state, c, len(body), call_native, body, ctype, accept or "")

    async def classify(self, request: Request) -> Response:
        c = self._model(request)
        if c.task != "image-classification":
            raise BadRequest(f"model {c.name!r} is not an image classifier", hint="POST its own request to /call")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fields: dict[str, str] = dict(request.query_params)
        if ctype == "multipart/form-data":
            image = None
            async with request.form(max_files=1, max_fields=16) as form:
                for key, value in form.multi_items():
                    if isinstance(value, str):
                        fields[key] = value
                    elif image is None:
                        image = await value.read()
            if image is None:
                raise BadRequest("the form has no file", hint="send the image as a file field, e.g. -F image=@cat.jpg")
        elif ctype.startswith("image/") or ctype in ("application/octet-stream", ""):
            image = await request.body()
        else:
            raise UnsupportedMediaType(
                f"cannot read a {ctype} body as an image", hint="send image/jpeg, image/png or a form"
            )
        if not image:
            raise BadRequest("empty image", hint="send the image file's bytes")
        answer = await self._run(
            request.scope["state"], c, len(image), classify_image, image, _classify_options(fields)
        )
        return to_response(answer)

    # -- the rest ------------------------------------------------------------------------------------------------------

    async def metrics_route(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, request: Request) -> Response:
        return _json(openapi_document())

    async def page_file(self, request: Request) -> Response:
        name = request.path_params.get("file", "index.html")
        if name not in self.page:
            raise HTTPException(404, "Not Found")
        types = {"html": "text/html; charset=utf-8", "js": "text/javascript", "css": "text/css"}
        return Response(self.page[name], media_type=types[name.rsplit(".", 1)[1]])


def _bind(job: Callable[..., Result], args: tuple[Any, ...]) -> Callable[[Any], Result]:
    def run(guest: Any) -> Result:
        return job(guest, *args)

    return run


def _classify_options(fields: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "top_k":
            try:
                options["top_k"] = int(value)
            except ValueError:
                raise BadRequest(f"top_k must be an integer, got {value[:20]!r}") from None
        elif key == "model_id":
            options["model_id"] = value
        elif key == "return_logits":
            options["return_logits"] = value.lower() in ("1", "true", "yes", "on")
        else:
            raise BadRequest(f"unknown option {key!r}", hint="options: top_k, model_id, return_logits")
    return options


def _guarded(svc: Service, route: str, handler: Handler) -> Handler:
    """Every error becomes `{"error": ...}` with its status; only a bug in edgewasm is logged with a traceback."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        state = request.scope.setdefault("state", {})
        state["route"] = route
        state["arrived"] = time.monotonic()
        try:
            return await handler(request)
        except HTTPException:
            raise
        except BaseException as e:
            answer = exception_answer(e, state, svc.draining, request.method, request.url.path)
            if answer is None:
                raise
            return to_response(answer)

    return wrapper


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _json({"error": f"{exc.detail}: {request.method} {request.url.path}", "kind": "http"}, exc.status_code)


def create_app(
    configs: list[ModelConfig],
    server: ServerConfig,
    on_fatal: Callable[[EdgeWasmError], None] | None = None,
    fast_routes: bool = True,
) -> tuple[ASGIApp, Service]:
    """The service's ASGI app; `fast_routes=False` leaves the inference routes to Starlette (the tests compare)."""

    def fatal(e: EdgeWasmError) -> None:
        raise e

    svc = Service(configs, server, on_fatal or fatal)

    def r(path: str, handler: Handler, methods: list[str], route: str) -> Route:
        return Route(path, _guarded(svc, route, handler), methods=methods)

    get, post = ["GET"], ["POST"]
    # Starlette tries routes in order: the inference routes first (their paths overlap no other route's).
    routes = [
        r("/v2/models/{model}/infer", svc.infer, post, "infer"),
        r("/v2/models/{model}/versions/{version}/infer", svc.infer, post, "infer"),
        r("/models/{model}/call", svc.call, post, "call"),
        r("/models/{model}/classify", svc.classify, post, "classify"),
        r("/v2/health/live", svc.live, get, "live"),
        r("/v2/health/ready", svc.ready_route, get, "ready"),
        r("/v2", svc.server_metadata, get, "server_metadata"),
        r("/v2/models/{model}", svc.model_metadata, get, "model_metadata"),
        r("/v2/models/{model}/versions/{version}", svc.model_metadata, get, "model_metadata"),
        r("/v2/models/{model}/ready", svc.model_ready, get, "model_ready"),
        r("/v2/models/{model}/versions/{version}/ready", svc.model_ready, get, "model_ready"),
        r("/v2/repository/index", svc.repository_index, post, "repository_index"),
        r("/models", svc.models, get, "models"),
        r("/metrics", svc.metrics_route, get, "metrics"),
        r("/openapi.json", svc.openapi, get, "openapi"),
        r("/", svc.page_file, get, "page"),
        r("/static/{file:str}", svc.page_file, get, "page"),
    ]
    app = Starlette(routes=routes, lifespan=svc.lifespan, exception_handlers={HTTPException: _http_error})
    app.state.service = svc
    inner: ASGIApp = InferenceRoutes(app, svc) if fast_routes else app
    return RequestContext(inner, svc.metrics, server.max_body_size, server.access_log), svc
