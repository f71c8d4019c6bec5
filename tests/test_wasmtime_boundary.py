"""wasmtime-py's private API is reached from one module only (`edgewasm._wasmtime`), which checks at import that
everything it relies on exists, so a wasmtime upgrade fails there with a name instead of in a call."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import wasmtime

from edgewasm import _wasmtime

SRC = Path(__file__).resolve().parent.parent / "src" / "edgewasm"
#: Private names of wasmtime-py that edgewasm uses (all of them through _wasmtime).
PRIVATE = {"_ffi", "_context", "_memory", "_func", "_invalidate", "_consume", "LAST_EXCEPTION", "_from_ptr"}


def test_only_the_boundary_module_touches_wasmtime_internals() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "_wasmtime.py":
            continue
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
