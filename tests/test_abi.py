"""Load-time ABI checks: each broken module gets an error that names what is wrong."""

from __future__ import annotations

import pytest

import edgewasm

ALLOC = """
  (memory (export "memory") 1)
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edge_free") (param i32 i32))
"""


def _wat(body: str) -> bytes:
    return f"(module {body})".encode()


def test_echo_is_a_reactor(wasm_dir) -> None:  # type: ignore[no-untyped-def]
    guest = edgewasm.load(wasm_dir / "echo.wat")
    assert guest.kind == "reactor"


def test_cat_is_a_command(wasm_dir) -> None:  # type: ignore[no-untyped-def]
    assert edgewasm.load(wasm_dir / "cat.wat").kind == "command"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            ALLOC + '(func (export "infer") (param i32 i32) (result i32) (i32.const 0))',
            r"export infer has type \(i32, i32\) -> i32 \(an i32 result is a pointer without a length\)",
        ),
        (
            '(memory (export "memory") 1) (func (export "edge_free") (param i32 i32))'
            '(func (export "infer") (param i32 i32) (result i64) (i64.const 0))',
            "not edge_alloc",
        ),
        (
            '(func (export "edge_alloc") (param i32) (result i32) (i32.const 0))'
            '(func (export "edge_free") (param i32 i32))'
            '(func (export "infer") (param i32 i32) (result i64) (i64.const 0))',
            "no memory named 'memory'",
        ),
        (
            ALLOC + '(func (export "edge_abi_version") (result i64) (i64.const 1))'
            '(func (export "infer") (param i32 i32) (result i64) (i64.const 0))',
            "edge_abi_version has type",
        ),
        ('(memory (export "memory") 1) (func (export "run"))', "undefined export infer .*exports run"),
    ],
)
def test_broken_exports_are_named(body: str, message: str) -> None:
    with pytest.raises(edgewasm.AbiError, match=message):
        edgewasm.load(_wat(body))


def test_unknown_abi_version_is_refused() -> None:
    body = ALLOC + (
        '(func (export "edge_abi_version") (result i32) (i32.const 7))'
        '(func (export "infer") (param i32 i32) (result i64) (i64.const 0))'
    )
    with pytest.raises(edgewasm.AbiError, match="unknown ABI version 7"):
        edgewasm.load(_wat(body))


def test_initialize_runs_once_per_instance() -> None:
    body = (
        ALLOC
        + """
      (global $calls (mut i32) (i32.const 0))
      (func (export "_initialize") (global.set $calls (i32.add (global.get $calls) (i32.const 1))))
      ;; answers msgpack positive fixint = number of _initialize calls so far
      (func (export "infer") (param i32 i32) (result i64)
        (i32.store8 (i32.const 2048) (global.get $calls))
        (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 1)))
    """
    )
    guest = edgewasm.load(_wat(body))
    assert guest.infer({}) == 1
    assert guest.infer({}) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\0asm\x01\0\0\0\x01\x05", "not a valid WebAssembly module"),
        (b"\0asm\x01", "unexpected EOF"),
        (b'(module (func (export "infer")', "invalid WAT"),
        (b"\xff\xfe\x00garbage", "neither WebAssembly"),
        (b"", "empty"),
    ],
)
def test_invalid_or_corrupt_modules(data: bytes, message: str) -> None:
    with pytest.raises(edgewasm.ModuleLoadError, match=message):
        edgewasm.load(data)


def test_missing_file() -> None:
    with pytest.raises(edgewasm.ModuleLoadError, match="no such module file"):
        edgewasm.load("does/not/exist.wasm")


def test_unknown_import_is_a_load_error() -> None:
    body = (
        '(import "env" "mystery" (func)) '
        + ALLOC
        + ('(func (export "infer") (param i32 i32) (result i64) (i64.const 0))')
    )
    with pytest.raises(edgewasm.ModuleLoadError, match="mystery"):
        edgewasm.load(_wat(body))
