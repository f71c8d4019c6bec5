"""What a guest's instances enforce: limits, preopened directories, environment. Nothing of the host by default.

The values come from `GuestOptions` (_options), where they are parsed and checked; `Sandbox` is their view for an
instance (with the model store's mount added when the guest asks for it) and its WASI configuration.
"""

from __future__ import annotations

import dataclasses

import wasmtime

from . import _output
from ._options import DEFAULT_MAX_OUTPUT, WASM_PAGE, GuestOptions, Mount
from ._output import StderrSink

__all__ = ["WASM_PAGE", "Sandbox"]


@dataclasses.dataclass(frozen=True)
class Sandbox:
    """The limits, mounts, environment and arguments every instance of one guest gets."""

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
    def of(cls, options: GuestOptions) -> Sandbox:
        """What an instance of a guest loaded with these (already checked) options enforces."""
        return cls(
            timeout=options.timeout,
            memory_limit=options.memory_limit,
            fuel=options.fuel,
            mounts=options.dirs,
            env=options.env,
            args=options.args,
            inherit_stderr=options.stderr,
            max_output=options.max_output,
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
