"""`edgewasm serve` and `edgewasm infer --url`: imported only when one of them runs (see `_LazyGroup`)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click

from .._cli import _errors, _jsonable, _read_request, guest_options
from .._errors import RequestError
from .._options import COMMAND_LINE_DEFAULTS, GuestOptions, parse_size
from .config import TASKS, ConfigError, ModelConfig, ServerConfig, parse_module_arg, read_repository, unique_names


def _tasks(items: tuple[str, ...], names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, task = item.rpartition("=")
        if task not in TASKS:
            raise click.BadParameter(f"unknown task {task!r} (known: {', '.join(TASKS)})", param_hint="--task")
        for n in [name] if sep else names:
            out[n] = task
    return out


@click.command()
@click.argument("modules", nargs=-1, metavar="[NAME=]MODULE...")
@click.option("--repository", type=click.Path(file_okay=False, exists=True), help="serve a model repository")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port")
@click.option("--instances", type=click.IntRange(1, 64), default=2, show_default=True, help="instances per model")
@click.option("--queue", type=click.IntRange(min=0), default=16, show_default=True, help="waiting requests per model")
@click.option("--max-loaded", type=click.IntRange(min=0), default=0, help="guests loaded at once, an LRU (0: all)")
@click.option("--max-body-size", default="64MiB", show_default=True, help="largest request body")
@click.option("--grace", type=float, default=10.0, show_default=True, help="seconds to drain on SIGTERM/SIGINT")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="one log line per request")
@click.option("--task", "tasks", multiple=True, metavar="[NAME=]TASK", help="e.g. image-classification (repeatable)")
@_errors
@guest_options(COMMAND_LINE_DEFAULTS, {"--timeout": "seconds per request, queue time included, or 500ms, 2m (0: none)"})
def serve(
    modules: tuple[str, ...],
    repository: str | None,
    host: str,
    port: int,
    instances: int,
    queue: int,
    max_loaded: int,
    max_body_size: str,
    grace: float,
    log_format: str,
    log_level: str,
    access_log: bool,
    tasks: tuple[str, ...],
    options: GuestOptions,
) -> None:
    """Serve MODULEs (or a --repository, or with neither the bundled classifiers) over the Open Inference
    Protocol; see docs/serving.md."""
    if modules and repository:
        raise ConfigError("give modules or --repository, not both")
    base = ModelConfig(name="model", module=Path(), instances=instances, queue=queue, options=options)
    configs: list[ModelConfig]
    if repository:
        configs = read_repository(Path(repository), base)
    elif modules:
        named = [parse_module_arg(m) for m in modules]
        task_of = _tasks(tasks, [n for n, _ in named])
        configs = unique_names(
            [dataclasses.replace(base, name=n, module=p, task=task_of.get(n)).checked() for n, p in named]
        )
    else:
        from .bundled import bundled_models

        configs = bundled_models(base)
    size = parse_size(max_body_size)
    server = ServerConfig(
        host=host,
        port=port,
        max_loaded=max_loaded,
        max_body_size=size or ServerConfig.max_body_size,
        grace=grace,
        log_format=log_format,
        log_level=log_level,
        access_log=access_log,
    )
    try:
        from .server import serve as run_server  # the ASGI stack, imported only now
    except ImportError as e:
        raise ConfigError(
            f"edgewasm serve needs its extra ({e.name} is missing)", hint="pip install 'edgewasm[serve]'"
        ) from None

    run_server(configs, server)


@click.command()
@click.argument("model")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="the server")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="send this JPEG/PNG as `image`")
@click.option("--top-k", type=click.IntRange(1, 1000), default=None, help="top_k sent with --image")
@click.option("--request", "request_file", type=click.File("rb"), help="read the request from a file, not stdin")
@click.option("--input", "input_fmt", type=click.Choice(["auto", "json", "msgpack"]), default="auto")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="seconds to wait for the answer")
@_errors
def infer(
    model: str,
    url: str,
    image: str | None,
    top_k: int | None,
    request_file: Any,
    input_fmt: str,
    timeout: float,
) -> None:
    """Send one request to MODEL on a running `edgewasm serve` (over OIP) and print the answer as JSON."""
    from .client import Client

    if image:
        request: Any = {"image": Path(image).read_bytes()}
        if top_k is not None:
            request["top_k"] = top_k
    else:
        if request_file is None and sys.stdin.isatty():
            raise RequestError("no request", hint=f"pipe one: edgewasm infer {model} < request.json, or use --image")
        request = _read_request(request_file.read() if request_file else sys.stdin.buffer.read(), input_fmt)
    if not isinstance(request, dict):
        raise RequestError("the request must be a map", hint="send a JSON object")
    with Client(url, timeout=timeout) as client:
        reply = client.infer(model, request)
    click.echo(json.dumps(_jsonable(reply), ensure_ascii=False))
