"""wasmtime-py's private API is reached from one package only (`edgewasm._wasmtime`), which checks at import that
everything its fast route relies on exists, and otherwise takes its public-API fallback with one warning that names
what is missing, so a wasmtime upgrade degrades there, by name, instead of crashing in a call."""

from __future__ import annotations

import ast
import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from edgewasm import _wasmtime

SRC = Path(__file__).resolve().parent.parent / "src" / "edgewasm"
ECHO = SRC.parent.parent / "wasm" / "echo.wat"
NN_GUEST = SRC.parent.parent / "wasm" / "nn_script.wat"
#: Private names of wasmtime-py that edgewasm uses (all of them in _wasmtime's check and fast route).
PRIVATE = {"_ffi", "_context", "_memory", "_func", "_invalidate", "_consume", "LAST_EXCEPTION", "_from_ptr"}


def test_only_the_boundary_module_touches_wasmtime_internals() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).as_posix() in ("_wasmtime/__init__.py", "_wasmtime/private.py"):
            continue  # the check and the fast route; _wasmtime/public.py, the fallback, must stay off them too
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wasmtime"):
                names = {a.name for a in node.names} | set((node.module or "").split("."))
                if names & PRIVATE:
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} imports {node.module}")
            elif isinstance(node, ast.Attribute) and node.attr in PRIVATE:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} uses .{node.attr}")
    assert not offenders, offenders


def test_a_missing_private_method_fails_the_check_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _wasmtime.check()
    monkeypatch.delattr(wasmtime.Store, "_context")
    with pytest.raises(ImportError, match=r"lacks Store\._context"):
        _wasmtime.check()


@pytest.mark.parametrize(("owner", "attr"), [(wasmtime.Memory, "_memory"), (wasmtime.Func, "_func")])
def test_a_struct_field_declared_otherwise_fails_the_check(
    monkeypatch: pytest.MonkeyPatch, owner: type, attr: str
) -> None:
    """The address of these fields goes to C: a wasmtime-py that stores something else there must not get it."""
    monkeypatch.setitem(owner.__annotations__, attr, object)
    with pytest.raises(ImportError, match=rf"{owner.__name__}\.{attr} \(a wasmtime_"):
        _wasmtime.check()


def test_a_missing_c_binding_fails_the_check_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(_wasmtime.ffi, "wasmtime_engine_clone")
    with pytest.raises(ImportError, match="lacks wasmtime_engine_clone"):
        _wasmtime.check()


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != _wasmtime.PUBLIC_ENV} | env
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120, env=environ
    )


#: A guest call in a fresh interpreter, after `BREAK` (if any) took something of wasmtime-py's private API away.
_INFER = """
import wasmtime
{BREAK}
import edgewasm
from edgewasm import _wasmtime
print("route", _wasmtime.ROUTE)
with edgewasm.load({wasm!r}, timeout=2.0, fuel=10**9) as guest:
    print("reply", guest.infer({{"x": 1}}))
"""


def test_a_wasmtime_py_without_a_private_name_takes_the_public_route_with_one_warning() -> None:
    """What a wasmtime upgrade that drops a private name looks like: one warning naming it, and guests still run."""
    gone = "del wasmtime._ffi.wasmtime_engine_clone; wasmtime.Memory.__annotations__['_memory'] = object"
    code = _INFER.format(BREAK=gone, wasm=str(ECHO))
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert "route public" in out.stdout and "reply {'x': 1}" in out.stdout
    warning = [line for line in out.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(warning) == 1, out.stderr
    assert "lacks wasmtime_engine_clone, Memory._memory (a wasmtime_memory" in warning[0]


def test_the_environment_variable_forces_the_public_route_silently() -> None:
    out = _python(_INFER.format(BREAK="", wasm=str(ECHO)), **{_wasmtime.PUBLIC_ENV: "1"})
    assert out.returncode == 0, out.stderr
    assert "route public" in out.stdout and "reply {'x': 1}" in out.stdout
    assert "Warning" not in out.stderr


def test_the_fast_route_is_the_default() -> None:
    out = _python(_INFER.format(BREAK="", wasm=str(ECHO)))
    assert out.returncode == 0, out.stderr
    assert "route private" in out.stdout and "Warning" not in out.stderr


@pytest.mark.parametrize("fast", [True, False], ids=["unchecked", "define_func"])
def test_host_functions_are_freed_with_their_guests(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    """Every WASI-NN guest registers nine host functions through _wasmtime; dropping the guest frees them all."""
    import gc

    import edgewasm

    if not fast:
        monkeypatch.setattr(_wasmtime, "define_host_function", _wasmtime.define_checked_host_function)
    gc.collect()
    before = _wasmtime.live_host_functions()
    guest = edgewasm.load(NN_GUEST)
    assert _wasmtime.live_host_functions() == before + 9  # counted: the check below could not pass by accident
    guest.close()
    del guest
    for _ in range(40):
        edgewasm.load(NN_GUEST).close()
    gc.collect()
    assert _wasmtime.live_host_functions() == before


_MEMORY_PROBE = """(module
  (import "probe" "seen" (func $seen (param i32) (result i32)))
  {memory}
  (func (export "run") (result i32) (call $seen (i32.const 7))))"""


@pytest.mark.parametrize("fast", [True, False], ids=["unchecked", "define_func"])
@pytest.mark.parametrize("exported", [True, False], ids=["memory", "no-memory"])
def test_caller_memory_is_the_calling_instances_memory(fast: bool, exported: bool) -> None:
    """`caller_memory` (what every WASI-NN call reads guest memory through) gives the base and length the public
    API gives, on both host function registrations, and None for an instance without a memory export."""
    engine = wasmtime.Engine()
    memory = '(memory (export "memory") 3)' if exported else "(memory 1)"
    module = wasmtime.Module(engine, _MEMORY_PROBE.format(memory=memory))
    store = wasmtime.Store(engine)
    seen: list[object] = []

    def probe(caller: wasmtime.Caller, arg: int) -> int:
        seen.append((arg, _wasmtime.caller_memory(caller)))
        return 0

    linker = wasmtime.Linker(engine)
    define = _wasmtime.define_host_function if fast else _wasmtime.define_checked_host_function
    define(linker, "probe", "seen", 1, probe)
    instance = linker.instantiate(store, module)
    with _wasmtime.calling(store):
        instance.exports(store)["run"](store)
    if not exported:
        assert seen == [(7, None)]
        return
    mem = instance.exports(store)["memory"]
    assert isinstance(mem, wasmtime.Memory)
    base = ctypes.cast(mem.data_ptr(store), ctypes.c_void_p).value
    assert seen == [(7, (base, 3 * 65536))]
