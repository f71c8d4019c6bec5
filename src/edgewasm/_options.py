"""Every setting a guest is loaded with, parsed and validated in one place: `GuestOptions`.

`edgewasm.load`'s keywords, the command line's guest flags (`run` and `serve` share one table of them, in `_cli`)
and a model repository's `model.toml` all become one `GuestOptions`; what one accepts, all accept. The library
takes Python values (`memory_limit=268435456` or `"256MiB"`, `timeout=None` for no limit); the command line and the
config file take text, where 0 means "no limit" (`GuestOptions.updated`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, get_args

from ._cache import DiskCache
from ._engine import EngineSettings, OptLevel, check_timeout
from ._errors import SandboxError

if TYPE_CHECKING:
    from .nn import NnLimits, Preload

WASM_PAGE = 65536
#: What `Guest.run` keeps of a command's stdout, and of its stderr, in host memory unless told otherwise.
DEFAULT_MAX_OUTPUT = 16 * 2**20
_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "page": WASM_PAGE, "pages": WASM_PAGE,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SECONDS = {"": 1.0, "s": 1.0, "ms": 1e-3, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | str | None, what: str = "memory limit") -> int | None:
    """Bytes from `268435456`, `"256MiB"`, `"4096 pages"`; None stays None (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SandboxError(f"{what} must be a byte count or a string like 256MiB, got {type(value).__name__}")
    if isinstance(value, int):
        if value <= 0:
            raise SandboxError(f"{what} must be positive, got {value}")
        return value
    m = _SIZE.match(value)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise SandboxError(
            f"cannot read {what} {value!r}", hint="write it like 256MiB, 1GiB, 4096pages or a byte count"
        )
    size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise SandboxError(f"{what} must be positive, got {value!r}")
    return size


def format_size(size: int) -> str:
    """The shortest exact spelling `parse_size` reads back: 1073741824 -> "1GiB"."""
    for unit in ("GiB", "MiB", "KiB"):
        if size % _UNITS[unit.lower()] == 0:
            return f"{size // _UNITS[unit.lower()]}{unit}"
    return str(size)


def parse_duration(value: float | str, what: str = "timeout") -> float | None:
    """Seconds from `30`, `2.5`, `"500ms"`, `"2m"` as the command line and config files write them; 0: no limit."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SandboxError(f"{what} must be a number of seconds, got {value!r}", hint="write seconds; 0: none")
    if isinstance(value, str):
        try:
            return parse_duration(float(value), what)  # "30", "1e300", "inf"; NaN and negatives are refused
        except ValueError:
            pass
        m = _DURATION.match(value)
        unit = m.group(2).lower() if m else ""
        if not m or unit not in _SECONDS:
            raise SandboxError(f"cannot read {what} {value!r}", hint="write seconds like 30, 2.5, 500ms or 2m; 0: none")
        value = float(m.group(1)) * _SECONDS[unit]
    if value == 0:
        return None
    return check_timeout(value)


def _whole(value: Any, what: str) -> int | None:
    """A count as text gives it (`fuel = 1000`, `--fuel 1000`); 0: no limit."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # refused below, with the text as given
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SandboxError(f"{what} must be a whole number (0: none), got {value!r}")
    return value or None


def _host_path(host: str | os.PathLike[str], guest: str) -> Path:
    if isinstance(host, (str, os.PathLike)) and os.fspath(host) == "":
        # Path("") is ".": an empty HOST must not preopen the working directory.
        raise SandboxError(
            f"cannot preopen '' as {guest!r}: no host directory",
            hint="write --dir HOST::GUEST, e.g. --dir ./data::/data",
        )
    return Path(host)


@dataclasses.dataclass(frozen=True)
class Mount:
    """A host directory preopened for the guest under the name `guest`, read-only unless `writable`."""

    host: Path
    guest: str
    writable: bool = False

    @classmethod
    def parse(cls, spec: str, relative_to: Path | None = None) -> Mount:
        """`HOST::GUEST[:rw]` (wasmtime's syntax), `HOST` alone mounts under the same name, as given; a relative
        HOST is taken relative to `relative_to` when given (a model repository's folder)."""
        if not isinstance(spec, str):
            raise SandboxError(f"cannot preopen {spec!r}: not a HOST::GUEST[:rw] string")
        writable = False
        if spec.endswith(":rw"):
            spec, writable = spec[:-3], True
        elif spec.endswith(":ro"):
            spec = spec[:-3]
        host, sep, guest = spec.partition("::")
        path = _host_path(host, guest if sep else host)
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        return cls(path, guest if sep else host, writable)

    def checked(self) -> Mount:
        """The host side resolved and checked; the guest name is kept exactly as given (a relative name such as
        `data` is preopened as `data`, as the wasmtime CLI does: programs that look preopens up by name need it)."""
        if not str(self.host) or not self.guest or "\0" in self.guest or "\0" in str(self.host):
            raise SandboxError(
                f"cannot preopen {str(self.host)!r} as {self.guest!r}: empty or invalid path",
                hint="write --dir HOST::GUEST, e.g. --dir ./data::/data",
            )
        try:
            host = self.host.expanduser().resolve()
        except (RuntimeError, OSError) as e:  # `~nobody/x` for a user that does not exist, a symlink loop
            raise SandboxError(
                f"cannot preopen {self.host} for the guest: {e}", hint="fix the --dir HOST::GUEST argument"
            ) from None
        if not host.is_dir():
            raise SandboxError(
                f"cannot preopen {self.host} for the guest: not a directory",
                hint="create it, or fix the --dir HOST::GUEST argument",
            )
        if not os.access(host, os.R_OK | os.X_OK):
            raise SandboxError(f"cannot preopen {self.host}: permission denied", hint="check the directory's mode")
        return Mount(host, self.guest, self.writable)

    def __str__(self) -> str:
        return f"{self.host}::{self.guest}" + (":rw" if self.writable else "")


#: What `dirs=` takes: `{guest_path: host_path}`, or `Mount`s and `HOST::GUEST[:rw]` strings.
Dirs: TypeAlias = Mapping[str, str | os.PathLike[str]] | Sequence[Mount | str]


def _mounts(dirs: Dirs | None) -> tuple[Mount, ...]:
    if dirs is None:
        return ()
    if isinstance(dirs, Mapping):  # {guest_path: host_path}, as in `dirs={"/models": "/srv/models"}`
        mounts = [Mount(_host_path(host, guest), guest) for guest, host in dirs.items()]
    elif isinstance(dirs, (str, bytes)) or not isinstance(dirs, Iterable):
        raise SandboxError(f"dirs must be a list of HOST::GUEST[:rw] or a mapping, got {dirs!r}")
    else:
        mounts = [d if isinstance(d, Mount) else Mount.parse(d) for d in dirs]
    return tuple(m.checked() for m in mounts)


def _env(env: Mapping[str, str] | Iterable[str | tuple[str, str]] | None) -> tuple[tuple[str, str], ...]:
    """`{KEY: VALUE}`, `KEY=VALUE` strings (the command line) or pairs, checked and sorted."""
    pairs: dict[Any, Any] = {}
    if env is None:
        pass
    elif isinstance(env, Mapping):
        pairs = dict(env)
    elif isinstance(env, (str, bytes)) or not isinstance(env, Iterable):
        raise SandboxError(f"env must be a mapping or a list of KEY=VALUE, got {env!r}")
    else:
        for item in env:
            if isinstance(item, str):
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise SandboxError(f"cannot read the environment variable {item!r}", hint="write it KEY=VALUE")
            elif isinstance(item, tuple) and len(item) == 2:
                key, value = item
            else:
                raise SandboxError(f"cannot read the environment variable {item!r}", hint="write it KEY=VALUE")
            pairs[key] = value
    for key, value in pairs.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key or "=" in key or "\0" in key + value:
            raise SandboxError(
                f"cannot pass the environment variable {key!r}={value!r} to the guest",
                hint="names are non-empty without '=' or NUL, values strings without NUL",
            )
    return tuple(sorted(pairs.items()))


def _args(args: Sequence[str]) -> tuple[str, ...]:
    if isinstance(args, (str, bytes)):
        raise SandboxError("args must be a list of strings, not one string", hint="pass args=[...]")
    for arg in args:
        if not isinstance(arg, str) or "\0" in arg:
            raise SandboxError(
                f"cannot pass the argument {arg!r} to the guest", hint="arguments are strings without NUL"
            )
    return tuple(args)


def _preloads(specs: Sequence[Preload | str]) -> tuple[Preload, ...]:
    if isinstance(specs, (str, bytes)):
        raise SandboxError("nn_preload must be a list of specs, not one string", hint="pass nn_preload=[...]")
    if not specs:
        return ()
    from .nn import Preload, parse_preload  # imported only for guests that use WASI-NN

    out = []
    for spec in specs:
        try:
            out.append(spec if isinstance(spec, Preload) else parse_preload(spec))
        except (ValueError, TypeError, AttributeError) as e:
            raise SandboxError(f"bad WASI-NN preload: {e}", hint="see docs/wasi-nn.md for the syntax") from None
    return tuple(out)


def _nn_limits(limits: NnLimits | Mapping[str, int | str] | Iterable[str] | None) -> NnLimits | None:
    if limits is None:
        return None
    from .nn import NnLimits

    if isinstance(limits, NnLimits):
        return limits
    try:
        items = [f"{k}={v}" for k, v in limits.items()] if isinstance(limits, Mapping) else list(limits)
        if not all(isinstance(item, str) for item in items):
            raise TypeError(f"bad --nn-limit {limits!r}: expected NAME=VALUE items")
        return NnLimits.parse(items)
    except (ValueError, TypeError) as e:
        raise SandboxError(str(e), hint="graphs=N, contexts=N, model-bytes=SIZE, tensor-bytes=SIZE") from None


def _scalar_text(value: object) -> object:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise SandboxError(f"{what} must be true or false, got {value!r}")
    return value


def _path_or_flag(value: object, what: str) -> bool | Path | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value)
    raise SandboxError(f"{what} must be true, false or a directory, got {value!r}")


@dataclasses.dataclass(frozen=True, init=False)
class GuestOptions:
    """A guest's limits and sandbox and how it is compiled: `edgewasm.load`'s keywords, parsed and checked.

    Made from the same keywords as `load` (which documents them); every value is normalized (sizes in bytes,
    mounts resolved and checked, preload specs parsed), so a `GuestOptions` that exists is one that can be used.
    `dataclasses.replace` works and checks again.
    """

    timeout: float | None
    memory_limit: int | None
    fuel: int | None
    dirs: tuple[Mount, ...]
    env: tuple[tuple[str, str], ...]
    args: tuple[str, ...]
    models: bool | Path | None
    nn_preload: tuple[Preload, ...]
    nn_limits: NnLimits | None
    cache: bool | Path | DiskCache
    opt_level: OptLevel
    stderr: bool
    allow_precompiled: bool
    max_output: int

    def __init__(
        self,
        *,
        timeout: float | None = None,
        memory_limit: int | str | None = None,
        fuel: int | None = None,
        dirs: Dirs | None = None,
        env: Mapping[str, str] | Iterable[str | tuple[str, str]] | None = None,
        args: Sequence[str] = (),
        models: bool | str | os.PathLike[str] | None = None,
        nn_preload: Sequence[Any] = (),
        nn_limits: NnLimits | Mapping[str, int | str] | Iterable[str] | None = None,
        cache: bool | str | os.PathLike[str] | DiskCache = True,
        opt_level: OptLevel = "speed",
        stderr: bool = False,
        allow_precompiled: bool = False,
        max_output: int | str = DEFAULT_MAX_OUTPUT,
    ) -> None:
        if fuel is not None and (isinstance(fuel, bool) or not isinstance(fuel, int) or fuel <= 0):
            raise SandboxError(f"fuel must be a positive number of instructions, got {fuel!r}")
        if opt_level not in get_args(OptLevel):
            raise SandboxError(f"unknown opt_level {opt_level!r}", hint=f"use one of {', '.join(get_args(OptLevel))}")
        values = {
            "timeout": check_timeout(timeout),
            "memory_limit": parse_size(memory_limit),
            "fuel": fuel,
            "dirs": _mounts(dirs),
            "env": _env(env),
            "args": _args(args),
            "models": _path_or_flag(models, "models"),
            "nn_preload": _preloads(nn_preload),
            "nn_limits": _nn_limits(nn_limits),
            "cache": cache if isinstance(cache, DiskCache) else _path_or_flag(cache, "cache"),
            "opt_level": opt_level,
            "stderr": _flag(stderr, "stderr"),
            "allow_precompiled": _flag(allow_precompiled, "allow_precompiled"),
            "max_output": parse_size(max_output, "max_output") or DEFAULT_MAX_OUTPUT,
        }
        if values["cache"] is None:
            raise SandboxError("cache must be true, false, a directory or a DiskCache, got None")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def updated(self, values: Mapping[str, Any], relative_to: Path | None = None) -> GuestOptions:
        """These options with settings written as text (the command line, a `model.toml`) on top.

        Keys are the field names; 0 means no limit for timeout, memory_limit and fuel; dirs are `HOST::GUEST[:rw]`
        and env, nn_limits `KEY=VALUE` lists or tables; relative paths (dirs, models) are relative to
        `relative_to` when given. Unknown keys are refused (the caller names where they came from).
        """
        unknown = sorted(set(values) - set(TEXT_KEYS))
        if unknown:
            raise SandboxError(f"unknown setting {', '.join(unknown)}", hint=f"known: {', '.join(TEXT_KEYS)}")
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key == "timeout":
                changes[key] = parse_duration(value)
            elif key == "memory_limit":
                changes[key] = None if value in (0, "0", "") else value
            elif key == "fuel":
                changes[key] = _whole(value, "fuel")
            elif key == "dirs":
                if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                    raise SandboxError(f"dirs must be a list of HOST::GUEST[:rw], got {value!r}")
                changes[key] = [Mount.parse(spec, relative_to) for spec in value]
            elif key == "env" and isinstance(value, Mapping):  # a TOML table: `PORT = 8080` is the string "8080"
                changes[key] = {k: _scalar_text(v) for k, v in value.items()}
            elif key == "models" and isinstance(value, str) and relative_to is not None:
                changes[key] = relative_to / value if value else value
            elif key == "nn_preload" and (isinstance(value, str) or not isinstance(value, Sequence)):
                raise SandboxError(f"nn_preload must be a list of specs, got {value!r}")
            else:
                changes[key] = value
        return dataclasses.replace(self, **changes)

    def engine_settings(self) -> EngineSettings:
        """The code generation these options need: fuel metering, epoch checks only where a limit uses them."""
        return EngineSettings(opt_level=self.opt_level, fuel=self.fuel is not None, epoch=self.timeout is not None)

    def disk_cache(self) -> DiskCache | None:
        """The artifact cache to use: a given one, one in a given directory, the default (True) or none (False)."""
        if isinstance(self.cache, DiskCache):
            return self.cache
        if self.cache is True:
            return DiskCache()
        if self.cache is False:
            return None
        return DiskCache(self.cache)


#: The settings text can give (`GuestOptions.updated`): a `model.toml`'s keys, what the command line's flags set.
TEXT_KEYS = (
    "timeout", "memory_limit", "fuel", "dirs", "env", "models", "nn_preload", "nn_limits", "cache",
    "allow_precompiled",
)  # fmt: skip

#: What a guest gets from the command line (`run`, `serve`) and a served model unless told otherwise.
COMMAND_LINE_DEFAULTS = GuestOptions(timeout=30.0, memory_limit="1GiB")
