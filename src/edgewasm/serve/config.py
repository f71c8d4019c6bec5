"""What `edgewasm serve` serves: one `ModelConfig` per model, from the command line or a model repository.

A model repository is a folder with one sub-folder per model, each holding its module and a `model.toml`:

    module = "classifier.wasm"        # default: the only .wasm/.wat/.cwasm in the folder
    version = "1"
    task = "image-classification"     # image uploads, the page, the classifier's tensor description
    instances = 2                     # guest instances (worker threads) of this model
    queue = 8                         # requests that may wait for an instance; more get 503
    timeout = 10                      # seconds per request, queue time included; also the guest's call timeout
    memory_limit = "512MiB"
    nn_preload = ["efficientnet-lite0"]
    dirs = ["data::/data"]            # HOST::GUEST[:rw], HOST relative to the model folder
    env = { MODE = "prod" }

The guest's settings (timeout, memory_limit, fuel, dirs, env, models, nn_preload, nn_limits) are read by
`GuestOptions.updated`, as the command line's flags are: `ModelConfig.options` is what `edgewasm.load` gets.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import EdgeWasmError
from .._options import COMMAND_LINE_DEFAULTS, TEXT_KEYS, GuestOptions

#: The file that describes a model in a repository folder.
CONFIG_FILE = "model.toml"
MODULE_SUFFIXES = (".wasm", ".wat", ".cwasm")
TASKS = ("image-classification",)
DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES",
)  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(EdgeWasmError):
    """A model or server setting that cannot be served."""

    exit_code = 2


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """An input or output as the model metadata describes it (-1: a variable dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One served model: its module, its sandbox, its share of the server."""

    name: str
    module: Path
    version: str = "1"
    description: str = ""
    task: str | None = None
    instances: int = 2
    queue: int = 16
    #: The guest's limits and sandbox (the command line's defaults unless told otherwise).
    options: GuestOptions = COMMAND_LINE_DEFAULTS
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    @property
    def timeout(self) -> float | None:
        """Seconds a request may take, queue time included; also the guest's call timeout."""
        return self.options.timeout

    def checked(self) -> ModelConfig:
        """Validate everything that can be checked without loading the module; one-line errors."""
        where = f"model {self.name!r}"
        if not _NAME.match(self.name):
            raise ConfigError(
                f"{where}: bad model name", hint="use letters, digits, '_', '.', '-' (up to 64, no leading symbol)"
            )
        if not _NAME.match(self.version):
            raise ConfigError(f"{where}: bad version {self.version!r}", hint='use a short token such as "1"')
        if not self.module.is_file():
            raise ConfigError(f"{where}: module {self.module} does not exist", hint="check the path")
        if self.task is not None and self.task not in TASKS:
            raise ConfigError(f"{where}: unknown task {self.task!r}", hint=f"use one of: {', '.join(TASKS)}")
        if self.instances < 1 or self.instances > 64:
            raise ConfigError(f"{where}: instances must be 1..64, got {self.instances}")
        if self.queue < 0:
            raise ConfigError(f"{where}: queue must be 0 or more, got {self.queue}")
        if not isinstance(self.options, GuestOptions):
            raise ConfigError(f"{where}: options must be an edgewasm.GuestOptions, got {type(self.options).__name__}")
        for t in (*self.inputs, *self.outputs):
            if t.datatype not in DATATYPES:
                raise ConfigError(f"{where}: tensor {t.name!r} has unknown datatype {t.datatype!r}")
        return self

    def describe_inputs(self) -> tuple[TensorSpec, ...]:
        if self.inputs or self.task != "image-classification":
            return self.inputs
        return CLASSIFIER_INPUTS

    def describe_outputs(self) -> tuple[TensorSpec, ...]:
        if self.outputs or self.task != "image-classification":
            return self.outputs
        return CLASSIFIER_OUTPUTS


#: The bundled classifiers' request and response (docs/classifier.md) as OIP tensors; options are parameters.
CLASSIFIER_INPUTS = (
    TensorSpec("image", "BYTES", (1,), "an encoded JPEG or PNG"),
    TensorSpec("pixels", "UINT8", (-1, -1, 3), "RGB pixels, HxWx3"),
    TensorSpec("tensor", "FP32", (224, 224, 3), "the preprocessed network input, NHWC"),
)
CLASSIFIER_OUTPUTS = (
    TensorSpec("label", "BYTES", (1,)),
    TensorSpec("class_id", "INT64", (1,)),
    TensorSpec("confidence", "FP64", (1,)),
    TensorSpec("top_k", "BYTES", (1,), "JSON: [{class_id, label, confidence}, ...], the top_k best"),
    TensorSpec("latency_ms", "FP64", (1,)),
    TensorSpec("model_version", "BYTES", (1,)),
    TensorSpec("stages_ms", "BYTES", (1,), "JSON: {load, decode, preprocess, inference, postprocess}"),
)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """The server's own settings (the models are separate)."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Guests kept loaded at once (an LRU); 0 keeps every model loaded.
    max_loaded: int = 0
    max_body_size: int = 64 << 20
    #: Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    grace: float = 10.0
    log_format: str = "text"
    #: One log line per request.
    access_log: bool = True
    log_level: str = "info"
    #: Seconds a client is told to wait (Retry-After) when a queue is full.
    retry_after: int = 1


# -- module arguments --------------------------------------------------------------------------------------------------


def parse_module_arg(arg: str) -> tuple[str, Path]:
    """`[NAME=]MODULE`: the name defaults to the file's stem."""
    name, sep, path = arg.partition("=")
    if not sep or os.sep in name or not name:
        name, path = Path(arg).stem, arg
    return name, Path(path)


def unique_names(configs: Sequence[ModelConfig]) -> list[ModelConfig]:
    seen: dict[str, Path] = {}
    for c in configs:
        if c.name in seen:
            raise ConfigError(
                f"two models are named {c.name!r} ({seen[c.name]} and {c.module})",
                hint="name one of them: edgewasm serve NAME=MODULE",
            )
        seen[c.name] = c.module
    return list(configs)


# -- repositories ------------------------------------------------------------------------------------------------------


def _toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}", hint="fix the TOML syntax") from None


#: A model.toml's keys: the model's own, and its guest's (everything `GuestOptions.updated` reads but the cache,
#: which is the server's: --cache-dir, --no-cache).
_GUEST_KEYS = tuple(k for k in TEXT_KEYS if k != "cache")
_KEYS = {"module", "version", "description", "task", "instances", "queue", "inputs", "outputs", *_GUEST_KEYS}


def _typed(path: Path, data: Mapping[str, Any], key: str, types: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types))):
        names = "/".join(t.__name__ for t in _tuple(types))
        raise ConfigError(f"{path}: {key} must be {names}, got {value!r}")
    return value


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _tensors(path: Path, items: Any, key: str) -> tuple[TensorSpec, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError(f"{path}: {key} must be a list of tables ([[{key}]])")
    out = []
    for item in items:
        try:
            shape = tuple(int(d) for d in item["shape"])
            out.append(
                TensorSpec(str(item["name"]), str(item["datatype"]).upper(), shape, str(item.get("description", "")))
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: each [[{key}]] needs name, datatype and shape (a list of ints)") from None
    return tuple(out)


def _module_in(folder: Path, data: Mapping[str, Any], path: Path) -> Path:
    named = _typed(path, data, "module", str)
    if named:
        return (folder / str(named)).resolve()
    found = sorted(p for p in folder.iterdir() if p.suffix in MODULE_SUFFIXES and p.is_file())
    if len(found) != 1:
        what = "no module" if not found else f"{len(found)} modules"
        raise ConfigError(f"{folder}: {what} in the folder", hint=f'name one with module = "..." in {CONFIG_FILE}')
    return found[0].resolve()


def model_from_folder(folder: Path, base: ModelConfig | None = None) -> ModelConfig:
    """Read `folder/model.toml` (optional when the folder holds one module); `base` gives the defaults."""
    path = folder / CONFIG_FILE
    data = _toml(path) if path.is_file() else {}
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown setting {', '.join(unknown)}", hint=f"known: {', '.join(sorted(_KEYS))}")
    base = base or ModelConfig(name=folder.name, module=Path())
    try:
        options = base.options.updated({k: data[k] for k in _GUEST_KEYS if k in data}, relative_to=folder)
    except EdgeWasmError as e:
        raise ConfigError(f"{path}: {e.message}", hint=e.hint) from None
    version = data.get("version", base.version)
    config = dataclasses.replace(
        base,
        name=folder.name,
        module=_module_in(folder, data, path),
        version=str(version),
        description=_typed(path, data, "description", str) or "",
        task=_typed(path, data, "task", str),
        instances=_typed(path, data, "instances", int) or base.instances,
        queue=base.queue if data.get("queue") is None else _typed(path, data, "queue", int),
        options=options,
        inputs=_tensors(path, data.get("inputs"), "inputs"),
        outputs=_tensors(path, data.get("outputs"), "outputs"),
    )
    return config.checked()


def read_repository(root: Path, base: ModelConfig | None = None) -> list[ModelConfig]:
    """Every sub-folder of `root` that holds a module or a model.toml is a model, named for the folder."""
    if not root.is_dir():
        raise ConfigError(f"model repository {root} is not a directory", hint="pass --repository DIR")
    folders = [
        p
        for p in sorted(root.iterdir())
        if p.is_dir() and ((p / CONFIG_FILE).is_file() or any(q.suffix in MODULE_SUFFIXES for q in p.iterdir()))
    ]
    if not folders:
        raise ConfigError(
            f"model repository {root} has no models",
            hint=f"make one sub-folder per model holding its module and a {CONFIG_FILE}",
        )
    return unique_names([model_from_folder(p, base) for p in folders])
