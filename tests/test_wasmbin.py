"""The host's own reader of the WebAssembly binary format (custom sections, the bundler's section list)."""

from __future__ import annotations

import pytest
import wasmtime

from edgewasm import _wasmbin
from edgewasm._errors import BundleError
from edgewasm._source import custom_sections
from edgewasm.models import _bundle


@pytest.mark.parametrize("n", [0, 1, 63, 64, 127, 128, 300, 2**21, 2**31 - 1, 2**32 - 1])
def test_uleb_round_trip(n: int) -> None:
    raw = _wasmbin.enc_uleb(n) + b"\xff"
    assert _wasmbin.uleb(raw, 0) == (n, len(raw) - 1)


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, -65, 2**31 - 1, -(2**31)])
def test_sleb32_round_trip(n: int) -> None:
    raw = _wasmbin.enc_sleb32(n)
    assert _wasmbin.sleb32(raw, 0) == (n, len(raw))


@pytest.mark.parametrize("raw", [b"", b"\x80", b"\x80\x80\x80\x80\x80\x01"])
def test_bad_leb128_is_refused(raw: bytes) -> None:
    """A number that ends early or runs past 32 bits (six bytes) is malformed."""
    with pytest.raises(ValueError, match="bad LEB128"):
        _wasmbin.uleb(raw, 0)
    with pytest.raises(ValueError, match="bad LEB128"):
        _wasmbin.sleb32(raw, 0)


def _custom(name: str, payload: bytes) -> bytes:
    return _wasmbin.section(_wasmbin.CUSTOM, _wasmbin.enc_uleb(len(name)) + name.encode() + payload)


def test_sections_and_custom_sections() -> None:
    module = bytes(wasmtime.wat2wasm('(module (memory 1) (func (export "f")))'))
    wasm = module + _custom("edgewasm.needs", b"relaxed-simd") + _custom("other", b"")
    ids = [sid for sid, _ in _wasmbin.sections(wasm)]
    assert _wasmbin.MEMORY in ids and _wasmbin.CODE in ids and ids[-2:] == [0, 0]
    assert custom_sections(wasm) == {"edgewasm.needs": b"relaxed-simd", "other": b""}
    wasmtime.Module(wasmtime.Engine(), wasm)  # what the reader reads is a module wasmtime takes


def test_malformed_modules() -> None:
    module = bytes(wasmtime.wat2wasm("(module)")) + _custom("a", b"x")
    with pytest.raises(ValueError, match="bad magic"):
        list(_wasmbin.sections(b"\0asm\x02\0\0\0"))
    with pytest.raises(ValueError, match="runs past the end"):
        list(_wasmbin.sections(module[:-1]))
    assert custom_sections(module[:-1]) == {}  # the host reads what it can; wasmtime refuses the module
    with pytest.raises(BundleError, match="not a WebAssembly module"):
        _bundle.bundle(b"GIF89a..", b"", "m")
    with pytest.raises(BundleError, match="runs past the end"):
        _bundle.bundle(module[:-1], b"", "m")
    assert _bundle.bundle_info(module[:-1]) is None
