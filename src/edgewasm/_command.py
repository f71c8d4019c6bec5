"""WASI command guests (`_start`): request on stdin, response on stdout, an exit code.

Each run is a fresh instance, as a process would be. stdout goes to a temporary file: wasmtime-py's custom output
callbacks cost ~85 µs a write and run on another thread.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any

import wasmtime

from ._instance import Instance, ProcExit
from ._loader import Loaded
from ._sandbox import Sandbox


@dataclasses.dataclass(frozen=True)
class CommandResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


def run_command(
    loaded: Loaded, pre: wasmtime.InstancePre, sandbox: Sandbox, stdin: bytes, nn: Any = None
) -> CommandResult:
    with tempfile.TemporaryDirectory(prefix="edgewasm-") as tmp:
        paths = {name: os.path.join(tmp, name) for name in ("stdin", "stdout", "stderr")}
        with open(paths["stdin"], "wb") as f:
            f.write(stdin)
        wasi = sandbox.wasi_config(loaded.name)
        wasi.stdin_file = paths["stdin"]
        wasi.stdout_file = paths["stdout"]
        if not sandbox.inherit_stderr:
            wasi.stderr_file = paths["stderr"]
        inst = Instance(loaded, pre, sandbox, wasi=wasi)
        code = 0
        try:
            inst.call_export("_start")
        except ProcExit as e:
            code = e.status
        finally:
            if nn is not None:
                nn.release(inst.store)  # a command's WASI-NN handles end with its run
        with open(paths["stdout"], "rb") as f:
            out = f.read()
        err = b""
        if not sandbox.inherit_stderr:
            with open(paths["stderr"], "rb") as f:
                err = f.read()
    return CommandResult(out, err, code)
