"""The `edgewasm` command line. Every user mistake ends in one line on stderr and a non-zero exit code."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_args

import click
import msgpack

from . import _codec, _output
from ._cache import DiskCache
from ._engine import EngineSettings, OptLevel
from ._errors import AbiError, EdgeWasmError, GuestTrap, RequestError
from ._options import COMMAND_LINE_DEFAULTS, TEXT_KEYS, GuestOptions, format_size

F = TypeVar("F", bound=Callable[..., Any])

#: Exit code for an internal error (a bug in edgewasm, not the user's mistake).
EXIT_INTERNAL = 70
#: Exit code when a WASI command traps: 128 + SIGABRT, what the wasmtime CLI returns (a native program that
#: aborts looks the same), so a trap cannot be mistaken for an exit code the program chose (0..125).
EXIT_COMMAND_TRAP = 134
#: Exit code when a WASI command calls proc_exit with a status of 126 or more (the wasmtime CLI's, too).
EXIT_BAD_STATUS = 1


def _fail(message: str, code: int) -> None:
    click.echo(f"edgewasm: error: {message}", err=True)
    sys.exit(code)


def _errors(func: F) -> F:
    """One line per error; the traceback only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(click.get_current_context().find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except RecursionError:
            # Input nested deeper than Python's stack: a mistake in the input, not a bug, whatever raised it.
            if debug:
                raise
            _fail(
                "the request or the response nests too deeply (hint: keep messages under "
                f"{_codec.MAX_DEPTH} levels of nesting)",
                2,
            )
        except EdgeWasmError as e:
            if debug:
                raise
            _fail(e.one_line(), e.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:
            # The reader went away (`| head`): not an error worth a message.
            sys.stderr.close()
            sys.exit(0)
        except Exception as e:
            if debug:
                raise
            _fail(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


def _disk(ctx: click.Context) -> DiskCache:
    directory = ctx.find_root().params.get("cache_dir")
    return DiskCache(directory)


class _LazyGroup(click.Group):
    """Subcommands whose modules import heavy libraries load only when invoked, so `run` starts fast."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "models": ("edgewasm.models._cli", "models"),
        "serve": ("edgewasm.serve._cli", "serve"),
        "infer": ("edgewasm.serve._cli", "infer"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cache-dir", type=click.Path(file_okay=False), envvar="EDGEWASM_CACHE_DIR", help="artifact cache")
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.version_option(package_name="edgewasm")
def cli(cache_dir: str | None, debug: bool) -> None:
    """Run WebAssembly inference guests, ahead-of-time compiled and sandboxed."""


def _set_root(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value:  # given after the subcommand: it counts as if given before it
            ctx.find_root().params[name] = value

    return callback


def _with_global_options(command: click.Command) -> None:
    """`--debug` and `--cache-dir` also work after the subcommand (`edgewasm run m.wasm --debug`)."""
    if any(p.name == "debug" for p in command.params):
        return
    command.params.append(
        click.Option(["--debug"], is_flag=True, expose_value=False, callback=_set_root("debug"), help="show tracebacks")
    )
    command.params.append(
        click.Option(
            ["--cache-dir"],
            type=click.Path(file_okay=False),
            expose_value=False,
            callback=_set_root("cache_dir"),
            help="artifact cache",
        )
    )


# -- the guest's options, shared by `run` and `serve` ------------------------------------------------------------------

#: Every flag that sets a guest's options (`GuestOptions`), in one table so `run` and `serve` cannot drift: the
#: flag, its parameter name, and click's settings. The values are parsed by `GuestOptions.updated` (0: no limit).
_GUEST_FLAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--timeout", "timeout", {"metavar": "SECONDS", "default": f"{COMMAND_LINE_DEFAULTS.timeout:g}",
                              "show_default": True, "help": "seconds per call, or 500ms, 2m (0: none)"}),
    ("--memory-limit", "memory_limit", {"metavar": "SIZE", "default": format_size(
        COMMAND_LINE_DEFAULTS.memory_limit or 0), "show_default": True, "help": "guest memory, e.g. 256MiB (0: none)"}),
    ("--fuel", "fuel", {"type": click.IntRange(min=0), "help": "instruction budget per call (0: none)"}),
    ("--dir", "dirs", {"multiple": True, "metavar": "HOST::GUEST[:rw]", "help": "preopen a directory (read-only)"}),
    ("--env", "env", {"multiple": True, "metavar": "KEY=VALUE", "help": "set a guest environment variable"}),
    ("--models", "models_dir", {"type": click.Path(file_okay=False), "help": "model store to mount at /models"}),
    ("--no-models", "no_models", {"is_flag": True, "help": "never mount the model store"}),
    ("--nn-preload", "nn_preload", {
        "multiple": True, "metavar": "NAME:ENCODING:TARGET:PATH[:PATH] | NAME:store:ID[:FORMAT[:TARGET]] | ID",
        "help": "WASI-NN model preloaded for load_by_name (repeatable); see docs/wasi-nn.md"}),
    ("--nn-limit", "nn_limits", {
        "multiple": True, "metavar": "NAME=VALUE",
        "help": "raise a WASI-NN host budget: graphs=N, contexts=N, model-bytes=SIZE, tensor-bytes=SIZE (repeatable)"}),
    ("--no-cache", "no_cache", {"is_flag": True, "help": "compile without the artifact cache"}),
    ("--allow-precompiled", "allow_precompiled", {
        "is_flag": True, "help": "run a .cwasm: native code the sandbox cannot check"}),
)  # fmt: skip


def guest_options(base: GuestOptions, helps: dict[str, str] | None = None) -> Callable[[F], F]:
    """Add the guest's flags to a command, which then gets them as one `options: GuestOptions` (on top of `base`).

    Apply it below `_errors`, so a bad value is one line with a hint; `helps` rewords a flag's help for a command.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            raw = {name: kwargs.pop(name) for _, name, _ in _GUEST_FLAGS}
            kwargs["options"] = base.updated(_text_settings(raw))
            return func(*args, **kwargs)

        for flag, name, settings in reversed(_GUEST_FLAGS):
            help_text = (helps or {}).get(flag, settings.get("help"))
            click.option(flag, name, **{**settings, "help": help_text})(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate


def _text_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The flags that were given, as `GuestOptions.updated` reads them (the cache and model flags combined)."""
    values = {k: v for k, v in raw.items() if k in TEXT_KEYS and v not in (None, ())}
    if raw["allow_precompiled"] is False:
        values.pop("allow_precompiled")
    if raw["no_models"]:
        values["models"] = False
    elif raw["models_dir"] is not None:
        values["models"] = raw["models_dir"]
    cache_dir = click.get_current_context().find_root().params.get("cache_dir")
    if raw["no_cache"]:
        values["cache"] = False
    elif cache_dir:
        values["cache"] = cache_dir
    return values


# -- run ---------------------------------------------------------------------------------------------------------------


#: File signatures of the images `--image` sends, so an image piped to stdin gets the right hint.
_IMAGES = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF8", "a GIF image"))


def _read_request(data: bytes, fmt: str, module: str = "MODULE") -> Any:
    """The request from stdin or --request: JSON or msgpack, or one clear RequestError."""
    what = next((what for magic, what in _IMAGES if data.startswith(magic)), None)
    if what is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        what = "a WebP image"
    if what is not None:
        raise RequestError(
            f"the request is {what}, not JSON or msgpack",
            hint=f"send a photo with --image: edgewasm run {module} --image photo.jpg",
        )
    if fmt == "msgpack" or (fmt == "auto" and data[:1] not in b'{["0123456789-tfn \t\r\n'):
        try:
            return _codec.decode(data)
        except ValueError as e:
            what = "valid msgpack" if fmt == "msgpack" else "JSON or msgpack"
            raise RequestError(f"request is not {what}: {e}", hint="send a JSON or msgpack request on stdin") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(f"request is not UTF-8 JSON (byte {e.start})", hint="use --input msgpack") from None
    if not text.strip():
        raise RequestError("empty request on stdin", hint="pipe a JSON request: edgewasm run module.wasm < req.json")
    try:
        return json.loads(text)
    except RecursionError:
        raise RequestError(
            "request JSON nests too deeply", hint=f"keep requests under {_codec.MAX_DEPTH} levels of nesting"
        ) from None
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string"):
            raise RequestError(
                f"request JSON ends unexpectedly (unexpected EOF at byte {e.pos}): it was cut short",
                hint="send the whole request",
            ) from None
        raise RequestError(f"request is not valid JSON: {e}", hint="check the request file") from None


def _jsonable(obj: Any, depth: int = 0) -> Any:
    """A response as JSON can hold it: arrays as lists, bytes as {"$base64"}, ext types as {"$ext", "$base64"}."""
    if depth > _codec.MAX_DEPTH:
        raise AbiError(
            f"the guest's response nests deeper than {_codec.MAX_DEPTH} levels: too deep to print",
            hint="flatten the response, or call the guest from Python (edgewasm.load)",
        )
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # a numpy array from the response
        return obj.tolist()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$base64": base64.b64encode(bytes(obj)).decode()}
    # Loops, not comprehensions: a comprehension is a frame of its own, and deep responses count frames.
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out[str(k)] = _jsonable(v, depth + 1)
        return out
    if isinstance(obj, (list, tuple)) and not isinstance(obj, msgpack.ExtType):
        items = []
        for v in obj:
            items.append(_jsonable(v, depth + 1))
        return items
    if isinstance(obj, msgpack.ExtType):
        return {"$ext": obj.code, "$base64": base64.b64encode(obj.data).decode()}
    if isinstance(obj, msgpack.Timestamp):
        return {"$ext": -1, "$base64": base64.b64encode(obj.to_bytes()).decode()}
    return obj


def _request_fields(sets: tuple[str, ...], files: tuple[str, ...]) -> dict[str, Any]:
    """`--set KEY=VALUE` (VALUE as JSON when it parses, else the string) and `--file KEY=PATH` (the file's bytes)."""
    fields: dict[str, Any] = {}
    for option, items in (("--set", sets), ("--file", files)):
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
            if option == "--file":
                try:
                    fields[key] = Path(value).read_bytes()
                except OSError as e:
                    raise click.BadParameter(f"{value}: {e.strerror}", param_hint=option) from None
                continue
            try:
                fields[key] = json.loads(value)
            except ValueError:
                fields[key] = value
    return fields


@cli.command()
@click.argument("module", type=click.Path(dir_okay=False))
@click.argument("guest_args", nargs=-1)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="a request field (VALUE as JSON, or text)")
@click.option("--file", "files", multiple=True, metavar="KEY=PATH", help="a request field: the file's bytes")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="classifiers: send this JPEG/PNG")
@click.option("--model-id", default="efficientnet-lite0", show_default=True, help="model_id sent with --image")
@click.option("--top-k", type=click.IntRange(1, 1000), default=None, help="top_k sent with --image")
@click.option("--request", "request_file", type=click.File("rb"), help="read the request from a file, not stdin")
@click.option("--input", "input_fmt", type=click.Choice(["auto", "json", "msgpack"]), default="auto")
@click.option("--output", "output_fmt", type=click.Choice(["json", "msgpack"]), default="json")
@_errors
@guest_options(dataclasses.replace(COMMAND_LINE_DEFAULTS, stderr=True))
def run(
    module: str,
    guest_args: tuple[str, ...],
    sets: tuple[str, ...],
    files: tuple[str, ...],
    image: str | None,
    model_id: str,
    top_k: int | None,
    request_file: Any,
    input_fmt: str,
    output_fmt: str,
    options: GuestOptions,
) -> None:
    """Run MODULE (.wasm, .wat or .cwasm): an infer guest gets the request (JSON or msgpack on stdin, or the
    fields of --set/--file on top of --request's) and its answer is printed as JSON; a WASI command gets stdin,
    and its stdout and exit code are passed through."""
    from ._guest import load

    if image is not None:  # the classifiers' shorthand: their request as fields
        files = (*files, f"image={image}")
        sets = (f"model_id={json.dumps(model_id)}", *sets)
        if top_k is not None:
            sets = (*sets, f"top_k={top_k}")
    fields = _request_fields(sets, files)

    guest = load(module, options=dataclasses.replace(options, args=guest_args))
    if guest.kind == "command":
        if fields:
            what = "--image" if image else "--set and --file"
            raise RequestError(f"{module} is a WASI command; {what} is for infer guests", hint="pipe stdin instead")
        _run_command(guest, request_file.read() if request_file else None)
    if fields:  # stdin is not read: the request is these fields, on top of --request's map if given
        request: Any = _read_request(request_file.read(), input_fmt, module) if request_file else {}
        if not isinstance(request, dict):
            raise RequestError("--set and --file add fields to a map; the --request file holds something else")
        request.update(fields)
    else:
        if request_file is None and sys.stdin.isatty():
            raise RequestError(
                "no request", hint=f"pipe one: edgewasm run {module} < request.json, or use --set/--file (--image)"
            )
        data = request_file.read() if request_file else sys.stdin.buffer.read()
        request = _read_request(data, input_fmt, module)
    with _signals_end_the_process():
        reply = guest.infer(request)
    if output_fmt == "msgpack":
        sys.stdout.buffer.write(msgpack.packb(_jsonable(reply)))
    else:
        click.echo(json.dumps(_jsonable(reply), ensure_ascii=False))


def _run_command(guest: Any, stdin: bytes | None) -> None:
    """Run a WASI command as the wasmtime CLI does: stdin, stdout and stderr are this process's, streamed as the
    guest runs; its exit code is ours; a trap is one line on stderr after its output and exit code 134."""
    from ._errors import BadExitStatus

    sys.stdout.flush()
    try:
        with _signals_end_the_process():
            result = guest.run(stdin, stream=True)
    except BadExitStatus as e:
        _fail(e.one_line(), EXIT_BAD_STATUS)
    except GuestTrap as e:
        _fail(e.one_line(), EXIT_COMMAND_TRAP)
    sys.exit(result.exit_code)


@contextlib.contextmanager
def _signals_end_the_process() -> Iterator[None]:
    """While a guest runs, Ctrl-C (SIGINT) ends the process at once, as it ends the wasmtime CLI.

    Python would only see it when the guest's call returns (its handler runs between bytecodes), which for a guest
    without a timeout may be never. The shell then reports 128 + the signal number (130 for Ctrl-C).
    """
    old: Any = None
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        old = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


# -- compile, inspect, cache -------------------------------------------------------------------------------------------


@cli.command("compile")
@click.argument("module", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="artifact path (default: MODULE.cwasm)")
@click.option("--opt-level", type=click.Choice(get_args(OptLevel)), default="speed")
@click.option("--fuel", is_flag=True, help="compile with fuel metering (for `run --fuel`)")
@click.option("--no-timeout", is_flag=True, help="compile without interruption checks (for `run --timeout 0`)")
@_errors
def compile_cmd(module: str, output: str | None, opt_level: str, fuel: bool, no_timeout: bool) -> None:
    """Compile MODULE ahead of time for this machine (like `wasmtime compile`)."""
    from ._engine import Engines
    from ._loader import compile_to

    out = Path(output) if output else Path(module).with_suffix(".cwasm")
    settings = EngineSettings(opt_level=opt_level, fuel=fuel, epoch=not no_timeout)  # type: ignore[arg-type]
    loaded = compile_to(module, out, settings, Engines())
    click.echo(
        f"{out}: {loaded.verdict.kind} guest, {out.stat().st_size} bytes, for this host only "
        f"(run it with `edgewasm run --allow-precompiled {out}`)"
    )


@cli.command()
@click.argument("module", type=click.Path(dir_okay=False))
@click.pass_context
@_errors
def inspect(ctx: click.Context, module: str) -> None:
    """Show MODULE's imports, exports, ABI verdict and sizes."""
    import wasmtime

    from ._abi import describe_exports
    from ._engine import Engines
    from ._errors import AbiError
    from ._loader import load_module
    from ._source import open_source

    engines = Engines()
    try:
        loaded = load_module(module, EngineSettings(), _disk(ctx), engines=engines)
        wasm_module, sha256, needs, problem = loaded.module, loaded.module_sha256, loaded.needs, None
    except AbiError as e:
        # Not runnable, but still worth showing: compile it bare (a .cwasm never gets here, since
        # `edgewasm compile` refuses what the ABI rejects).
        loaded, problem = None, e
        source = open_source(module)
        wasm_module, sha256, needs = (
            wasmtime.Module(engines.engine_for(EngineSettings()), source.wasm),
            source.sha256,
            source.needs,
        )
    click.echo(f"module:  {module} ({os.path.getsize(module)} bytes, sha256 {sha256[:16]}...)")
    if loaded is not None and loaded.artifact is not None and loaded.artifact.exists():
        click.echo(f"compiled: {loaded.artifact} ({loaded.artifact.stat().st_size} bytes, {loaded.origin})")
    click.echo("imports:")
    for imp in wasm_module.imports:
        click.echo(f"  {imp.module}.{imp.name}")
    click.echo("exports:")
    for name, ty in describe_exports(wasm_module).items():
        click.echo(f"  {name}: {ty}")
    if loaded is None:
        click.echo(f"abi:     not runnable: {problem.one_line() if problem else ''}")
    else:
        extra = ", uses WASI-NN" if loaded.verdict.imports_wasi_nn else ""
        click.echo(
            f"abi:     {loaded.verdict.kind} (edgewasm ABI v1{extra})"
            if loaded.verdict.kind == "reactor"
            else f"abi:     WASI command (_start){extra}"
        )
    if needs:
        click.echo(f"needs:   {', '.join(sorted(needs))}")


@cli.group()
def cache() -> None:
    """List or clear the artifact cache."""


@cache.command("list")
@click.pass_context
@_errors
def cache_list(ctx: click.Context) -> None:
    disk = _disk(ctx)
    entries = disk.entries()
    click.echo(f"{disk.dir}: {len(entries)} artifacts, {sum(e.size for e in entries)} bytes")
    for e in entries:
        click.echo(f"  {e.path.name}  {e.size:>10}  {e.meta.get('source', '?')}")


@cache.command("clear")
@click.pass_context
@_errors
def cache_clear(ctx: click.Context) -> None:
    disk = _disk(ctx)
    click.echo(f"removed {disk.clear()} artifacts from {disk.dir}")


for _command in (*cli.commands.values(), *cache.commands.values()):
    _with_global_options(_command)


def main() -> None:
    """The `edgewasm` entry point. It ends with `os._exit` once output is flushed: no guest runs by then, and a
    store dropped while Python finalizes may take the process down with it (see _output), so it may tee stderr."""
    _output.callbacks_safe = True
    try:
        code = _main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that went away, or a stream closed on purpose
            stream.flush()
    os._exit(code)


def _main() -> int:
    # Room for messages as deep as msgpack allows, through json and _jsonable (Python frames are cheap here).
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 8 * _codec.MAX_DEPTH))
    try:
        cli.main(prog_name="edgewasm", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        # `edgewasm` alone: the usage, as click prints it for a group without a command (stderr, exit 2).
        click.echo(e.ctx.get_help() if e.ctx else cli.get_help(click.Context(cli)), err=True)
        return 2
    except click.UsageError as e:
        command = e.ctx.command_path if e.ctx else "edgewasm"
        _fail(f"{e.format_message()} (hint: see `{command} --help`)", 2)
    except click.ClickException as e:
        _fail(e.format_message(), e.exit_code)
    except click.Abort:
        _fail("aborted", 130)
    return 0
