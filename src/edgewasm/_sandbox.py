"""What a guest may touch: limits, preopened directories, environment. Nothing of the host by default."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import wasmtime

from ._errors import EdgeWasmError

WASM_PAGE = 65536
_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "page": WASM_PAGE, "pages": WASM_PAGE,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


class SandboxError(EdgeWasmError):
    """A limit or mount that cannot be honoured."""

    exit_code = 2


def parse_size(value: int | str | None) -> int | None:
    """Bytes from `268435456`, `"256MiB"`, `"4096 pages"`; None stays None (no limit)."""
    if value is None or isinstance(value, int):
        if value is not None and value <= 0:
            raise SandboxError(f"memory limit must be positive, got {value}")
        return value
    m = _SIZE.match(value)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise SandboxError(
            f"cannot read memory limit {value!r}", hint="write it like 256MiB, 1GiB, 4096pages or a byte count"
        )
    size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise SandboxError(f"memory limit must be positive, got {value!r}")
    return size


@dataclasses.dataclass(frozen=True)
class Mount:
    host: Path
    guest: str
    writable: bool = False

    @classmethod
    def parse(cls, spec: str) -> Mount:
        """`HOST::GUEST[:rw]` (wasmtime's syntax), `HOST` alone mounts at the same path."""
        writable = False
        if spec.endswith(":rw"):
            spec, writable = spec[:-3], True
        elif spec.endswith(":ro"):
            spec = spec[:-3]
        host, sep, guest = spec.partition("::")
        return cls(Path(host), guest if sep else host, writable)

    def checked(self) -> Mount:
        host = self.host.expanduser().resolve()
        if not host.is_dir():
            raise SandboxError(
                f"cannot preopen {self.host} for the guest: not a directory",
                hint="create it, or fix the --dir HOST::GUEST argument",
            )
        if not os.access(host, os.R_OK | os.X_OK):
            raise SandboxError(f"cannot preopen {self.host}: permission denied", hint="check the directory's mode")
        guest = self.guest if self.guest.startswith("/") else "/" + self.guest
        return Mount(host, guest, self.writable)


@dataclasses.dataclass(frozen=True)
class Sandbox:
    timeout: float | None = None
    memory_limit: int | None = None
    fuel: int | None = None
    mounts: tuple[Mount, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    inherit_stderr: bool = False

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
    ) -> Sandbox:
        if timeout is not None and not timeout > 0:
            raise SandboxError(f"timeout must be a positive number of seconds, got {timeout}")
        if fuel is not None and fuel <= 0:
            raise SandboxError(f"fuel must be a positive number of instructions, got {fuel}")
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
        )

    def wasi_config(self, argv0: str) -> wasmtime.WasiConfig:
        wasi = wasmtime.WasiConfig()
        wasi.argv = [argv0, *self.args]
        if self.env:
            wasi.env = [list(kv) for kv in self.env]
        for m in self.mounts:
            wasi.preopen_dir(str(m.host), m.guest, m.writable)
        if self.inherit_stderr:
            wasi.inherit_stderr()
        return wasi
