"""What a guest may touch: limits, preopened directories, environment. Nothing of the host by default."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import wasmtime

from . import _output
from ._errors import EdgeWasmError, GuestOutOfMemory
from ._output import StderrSink

WASM_PAGE = 65536
#: What `Guest.run` keeps of a command's stdout, and of its stderr, in host memory unless told otherwise.
DEFAULT_MAX_OUTPUT = 16 * 2**20
_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "page": WASM_PAGE, "pages": WASM_PAGE,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


class SandboxError(EdgeWasmError):
    """A limit or mount that cannot be honoured."""

    exit_code = 2


class MemoryLimitTooSmall(SandboxError, GuestOutOfMemory):
    """The memory limit is below what the module declares it needs to start: a setting to fix, not a guest trap."""

    exit_code = 2


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


@dataclasses.dataclass(frozen=True)
class Mount:
    host: Path
    guest: str
    writable: bool = False

    @classmethod
    def parse(cls, spec: str) -> Mount:
        """`HOST::GUEST[:rw]` (wasmtime's syntax), `HOST` alone mounts under the same name, as given."""
        writable = False
        if spec.endswith(":rw"):
            spec, writable = spec[:-3], True
        elif spec.endswith(":ro"):
            spec = spec[:-3]
        host, sep, guest = spec.partition("::")
        return cls(Path(host), guest if sep else host, writable)

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


@dataclasses.dataclass(frozen=True)
class Sandbox:
    timeout: float | None = None
    memory_limit: int | None = None
    fuel: int | None = None
    mounts: tuple[Mount, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    inherit_stderr: bool = False
    #: Bytes of a command's stdout (and of its stderr) that `Guest.run` keeps in host memory.
    max_output: int = DEFAULT_MAX_OUTPUT

    @classmethod
    def build(
        cls,
        *,
        timeout: float | None = None,
        memory_limit: int | str | None = None,
        fuel: int | None = None,
        dirs: Mapping[str, str | os.PathLike[str]] | Sequence[Mount | str] | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        inherit_stderr: bool = False,
        max_output: int | str = DEFAULT_MAX_OUTPUT,
    ) -> Sandbox:
        if timeout is not None and not timeout > 0:
            raise SandboxError(f"timeout must be a positive number of seconds, got {timeout}")
        if fuel is not None and (isinstance(fuel, bool) or not isinstance(fuel, int) or fuel <= 0):
            raise SandboxError(f"fuel must be a positive number of instructions, got {fuel!r}")
        for key, value in (env or {}).items():
            if not isinstance(key, str) or not isinstance(value, str) or not key or "=" in key or "\0" in key + value:
                raise SandboxError(
                    f"cannot pass the environment variable {key!r}={value!r} to the guest",
                    hint="names are non-empty without '=' or NUL, values strings without NUL",
                )
        for arg in args:
            if not isinstance(arg, str) or "\0" in arg:
                raise SandboxError(
                    f"cannot pass the argument {arg!r} to the guest", hint="arguments are strings without NUL"
                )
        mounts: list[Mount] = []
        if isinstance(dirs, Mapping):
            # {guest_path: host_path}, as in `dirs={"/models": "/srv/models"}`.
            mounts = [Mount(Path(host), guest) for guest, host in dirs.items()]
        elif dirs is not None:
            mounts = [d if isinstance(d, Mount) else Mount.parse(d) for d in dirs]
        return cls(
            timeout=timeout,
            memory_limit=parse_size(memory_limit),
            fuel=fuel,
            mounts=tuple(m.checked() for m in mounts),
            env=tuple(sorted((env or {}).items())),
            args=tuple(args),
            inherit_stderr=inherit_stderr,
            max_output=parse_size(max_output, "max_output") or DEFAULT_MAX_OUTPUT,
        )

    def wasi_config(self, argv0: str, stderr: StderrSink | None = None) -> wasmtime.WasiConfig:
        """The guest's WASI view; `stderr` receives what it writes there (else it is inherited or dropped)."""
        wasi = wasmtime.WasiConfig()
        wasi.argv = [argv0, *self.args]
        if self.env:
            wasi.env = [list(kv) for kv in self.env]
        for m in self.mounts:
            wasi.preopen_dir(str(m.host), m.guest, m.writable)
        if stderr is not None:
            wasi.stderr_custom = stderr
        elif self.inherit_stderr:
            wasi.inherit_stderr()
        return wasi

    def stderr_sink(self) -> StderrSink | None:
        """For a guest whose stderr the user sees: a tee that keeps its tail to explain a trap, where this process
        may use one (see _output); otherwise None (stderr is inherited, or dropped)."""
        if self.inherit_stderr and _output.callbacks_safe:
            return StderrSink()
        return None
