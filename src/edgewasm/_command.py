"""WASI command guests (`_start`): stdin in, stdout and stderr out, an exit code.

Each run is a fresh instance, as a process would be. Output is either streamed to this process's stdout and
stderr as the guest writes it (`stream=True`, what `edgewasm run` does, like the wasmtime CLI), or captured within
`Sandbox.max_output` bytes per stream (see _output). Either way nothing the guest wrote before a trap is lost: a
captured run attaches it to the exception.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any

import wasmtime

from ._errors import GuestOutputLimit, GuestTrap
from ._instance import Instance, ProcExit
from ._loader import Loaded
from ._output import PipeCapture, StderrSink
from ._sandbox import Sandbox


@dataclasses.dataclass(frozen=True)
class CommandResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


def run_command(
    loaded: Loaded,
    pre: wasmtime.InstancePre,
    sandbox: Sandbox,
    stdin: bytes | None,
    nn: Any = None,
    *,
    stream: bool = False,
) -> CommandResult:
    """Run `_start` once. `stdin=None` gives the guest this process's stdin; `stream` passes its output through."""
    tee = sandbox.stderr_sink() if stream or sandbox.inherit_stderr else None
    if stream and stdin is None:
        # Nothing to keep on the host: no temporary directory, so a signal that ends the process leaves nothing.
        wasi = sandbox.wasi_config(loaded.name, tee)
        wasi.inherit_stdin()
        wasi.inherit_stdout()
        if tee is None:
            wasi.inherit_stderr()
        return _run(loaded, pre, sandbox, wasi, tee, {}, nn)
    with tempfile.TemporaryDirectory(prefix="edgewasm-run-") as tmp:
        captures: dict[str, PipeCapture] = {}
        try:
            wasi = sandbox.wasi_config(loaded.name, tee)
            if stdin is None:
                wasi.inherit_stdin()
            else:
                stdin_path = os.path.join(tmp, "stdin")
                with open(stdin_path, "wb") as f:
                    f.write(stdin)
                wasi.stdin_file = stdin_path
            if stream:
                wasi.inherit_stdout()
            else:
                captures["stdout"] = PipeCapture(tmp, "stdout", sandbox.max_output)
                wasi.stdout_file = captures["stdout"].path
            if stream or sandbox.inherit_stderr:
                if tee is None:
                    wasi.inherit_stderr()
            else:
                captures["stderr"] = PipeCapture(tmp, "stderr", sandbox.max_output)
                wasi.stderr_file = captures["stderr"].path
            return _run(loaded, pre, sandbox, wasi, tee, captures, nn)
        finally:
            for capture in captures.values():
                capture.close()


def _run(
    loaded: Loaded,
    pre: wasmtime.InstancePre,
    sandbox: Sandbox,
    wasi: wasmtime.WasiConfig,
    tee: StderrSink | None,
    captures: dict[str, PipeCapture],
    nn: Any,
) -> CommandResult:
    code = 0
    trap: GuestTrap | None = None
    inst = Instance(loaded, pre, sandbox, wasi=wasi, stderr=tee)
    try:
        inst.call_export("_start")
    except ProcExit as e:
        code = e.status
    except GuestTrap as e:
        trap = e
        if "stderr" in captures and e.trap_code == "UNREACHABLE" and type(e) is GuestTrap:
            # Captured, so the instance did not see it: did the guest say an allocation failed?
            text = captures["stderr"].finish().decode("utf-8", "replace")
            trap = inst.allocation_failure(text) or e
    finally:
        if nn is not None:
            nn.release(inst.store)  # a command's WASI-NN handles end with its run
        del inst
    out = captures["stdout"].finish() if "stdout" in captures else b""
    err = captures["stderr"].finish() if "stderr" in captures else b""
    if trap is not None:
        trap.stdout, trap.stderr = out, err
        raise trap.with_traceback(None)  # its frames would keep the instance (and its pool slot) alive
    dropped = {name: c.dropped for name, c in captures.items() if c.dropped}
    if dropped:
        what = " and ".join(f"{n} more bytes to {name}" for name, n in dropped.items())
        raise GuestOutputLimit(
            f"{loaded.name}: the command wrote {what} than the {sandbox.max_output}-byte output limit keeps "
            f"(exit code {code}); the rest was dropped",
            code=code,
            stdout=out,
            stderr=err,
        )
    return CommandResult(out, err, code)
