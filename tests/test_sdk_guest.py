"""wasm/hello.wasm, built from guest/examples/hello with the edgewasm-guest SDK, against the ABI (docs/abi.md).

The first half drives the raw ABI with wasmtime-py, exactly as docs/abi.md describes it, so that the SDK is
checked independently of the host; the second half goes through `edgewasm.load`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import wasmtime

import edgewasm

HELLO = Path(__file__).resolve().parent.parent / "wasm" / "hello.wasm"


# -- the raw ABI, through wasmtime-py ----------------------------------------------------------------------------


@dataclass
class Raw:
    """One instance of hello.wasm and the ABI calls on it."""

    store: wasmtime.Store
    exports: Any
    memory: wasmtime.Memory

    def call(self, name: str, *args: int) -> Any:
        return self.exports[name](self.store, *args)

    def infer_bytes(self, request: bytes) -> bytes:
        ptr = self.call("edge_alloc", len(request))
        assert ptr != 0
        self.memory.write(self.store, request, ptr)
        packed = self.call("infer", ptr, len(request)) & 0xFFFF_FFFF_FFFF_FFFF
        out_ptr, out_len = packed >> 32, packed & 0xFFFF_FFFF
        assert out_len > 0 and out_ptr + out_len <= self.memory.data_len(self.store)
        out = self.memory.read(self.store, out_ptr, out_ptr + out_len)
        self.call("edge_free", out_ptr, out_len)
        self.call("edge_free", ptr, len(request))
        return bytes(out)

    def infer(self, request: Any) -> Any:
        return msgpack.unpackb(self.infer_bytes(msgpack.packb(request)))


def _instantiate(memory_limit: int | None = None) -> Raw:
    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, str(HELLO))
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    if memory_limit is not None:
        store.set_limits(memory_size=memory_limit)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, module)
    exports = instance.exports(store)
    if "_initialize" in {e.name for e in module.exports}:
        initialize = exports["_initialize"]
        assert isinstance(initialize, wasmtime.Func)
        initialize(store)
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.Memory)
    return Raw(store, exports, memory)


@pytest.fixture
def raw() -> Raw:
    return _instantiate()


def _float32_map(values: np.ndarray) -> dict[str, Any]:
    """The numpy encoding of docs/abi.md, built by hand (no edgewasm codec involved)."""
    return {"dtype": "float32", "shape": list(values.shape), "data": values.astype("<f4").tobytes()}


def test_exports_match_abi_v1() -> None:
    module = wasmtime.Module.from_file(wasmtime.Engine(), str(HELLO))
    exports = {e.name: e.type for e in module.exports}
    assert isinstance(exports["memory"], wasmtime.MemoryType)
    signatures = {
        "edge_alloc": ([wasmtime.ValType.i32()], [wasmtime.ValType.i32()]),
        "edge_free": ([wasmtime.ValType.i32()] * 2, []),
        "infer": ([wasmtime.ValType.i32()] * 2, [wasmtime.ValType.i64()]),
        "edge_abi_version": ([], [wasmtime.ValType.i32()]),
    }
    for name, (params, results) in signatures.items():
        ty = exports[name]
        assert isinstance(ty, wasmtime.FuncType), name
        assert (ty.params, ty.results) == (params, results), name
    assert "_start" not in exports  # a reactor, not a command


def test_abi_version_and_allocator_edges(raw: Raw) -> None:
    assert raw.call("edge_abi_version") == 1
    empty = raw.call("edge_alloc", 0)
    assert empty != 0  # 0 means "cannot allocate"; a zero-size buffer is a non-null dangling pointer
    raw.call("edge_free", empty, 0)
    assert raw.call("edge_alloc", -1) == 0
    a, b = raw.call("edge_alloc", 100), raw.call("edge_alloc", 100)
    assert a % 16 == 0 and b % 16 == 0 and abs(a - b) >= 100
    raw.call("edge_free", a, 100)
    raw.call("edge_free", b, 100)


def test_allocation_failure_returns_zero_instead_of_trapping() -> None:
    guest = _instantiate(memory_limit=32 * 1024 * 1024)
    assert guest.call("edge_alloc", 256 * 1024 * 1024) == 0
    assert guest.infer({"name": "still alive"})["greeting"] == "hello, still alive"


def test_raw_success(raw: Raw) -> None:
    assert raw.infer({"name": "Ada"}) == {"greeting": "hello, Ada", "sum": 0.0, "count": 0, "doubled": None}


def test_raw_numpy_round_trip(raw: Raw) -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    reply = raw.infer({"name": "n", "values": _float32_map(values)})
    assert reply["count"] == 12
    assert reply["sum"] == pytest.approx(float(values.sum()))
    doubled = reply["doubled"]
    assert list(doubled) == ["dtype", "shape", "data"]  # exactly the three keys, in the documented order
    assert doubled["dtype"] == "float32" and doubled["shape"] == [3, 4]
    assert isinstance(doubled["data"], bytes)  # msgpack bin, not a list of numbers
    np.testing.assert_array_equal(np.frombuffer(doubled["data"], "<f4").reshape(3, 4), values * 2)


def test_raw_guest_reported_error(raw: Raw) -> None:
    assert raw.infer({"values": _float32_map(np.ones(2, np.float32))}) == {
        "error": {"kind": "bad_request", "message": "missing `name`"}
    }


@pytest.mark.parametrize("request_bytes", [b"\xc1", b"not msgpack at all", b"\x85", b""])
def test_raw_malformed_request_is_an_error_map(raw: Raw, request_bytes: bytes) -> None:
    if request_bytes:
        reply = msgpack.unpackb(raw.infer_bytes(request_bytes))
    else:  # an empty request: edge_alloc(0) gives a dangling pointer, infer must not read it
        packed = raw.call("infer", raw.call("edge_alloc", 0), 0) & 0xFFFF_FFFF_FFFF_FFFF
        out_ptr, out_len = packed >> 32, packed & 0xFFFF_FFFF
        reply = msgpack.unpackb(raw.memory.read(raw.store, out_ptr, out_ptr + out_len))
        raw.call("edge_free", out_ptr, out_len)
    assert reply["error"]["kind"] == "bad_request"
    assert reply["error"]["message"].startswith("request does not decode")
    assert raw.infer({"name": "after"})["greeting"] == "hello, after"  # the instance is unharmed


def test_raw_buffers_are_freed(raw: Raw) -> None:
    """Request and response buffers go back to the allocator: 500 calls of 400 KB do not grow memory."""
    request = {"name": "x", "values": _float32_map(np.ones(100_000, np.float32))}
    raw.infer(request)
    size = raw.memory.data_len(raw.store)
    for _ in range(500):
        raw.infer(request)
    assert raw.memory.data_len(raw.store) == size


# -- through the host: edgewasm.load -------------------------------------------------------------------------------


@pytest.fixture
def hello() -> Iterator[edgewasm.Guest]:
    with edgewasm.load(HELLO, timeout=10.0, memory_limit="256MiB") as guest:
        yield guest


def test_hello_greets(hello: edgewasm.Guest) -> None:
    assert hello.infer({"name": "Grace"})["greeting"] == "hello, Grace"


@pytest.mark.parametrize("shape", [(5,), (224, 224, 3), (0,), ()])
def test_numpy_arrays_round_trip(hello: edgewasm.Guest, shape: tuple[int, ...]) -> None:
    values = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    reply = hello.infer({"name": "np", "values": values})
    assert reply["count"] == values.size
    assert reply["sum"] == pytest.approx(float(values.astype(np.float64).sum()), rel=1e-5, abs=1e-6)
    assert isinstance(reply["doubled"], np.ndarray) and reply["doubled"].dtype == np.float32
    np.testing.assert_array_equal(reply["doubled"], values * 2)


def test_missing_name_raises_guest_error(hello: edgewasm.Guest) -> None:
    with pytest.raises(edgewasm.GuestError) as info:
        hello.infer({"values": np.ones(3, np.float32)})
    assert (info.value.kind, info.value.message) == ("bad_request", "missing `name`")


def test_wrong_dtype_is_a_bad_request(hello: edgewasm.Guest) -> None:
    with pytest.raises(edgewasm.GuestError) as info:
        hello.infer({"name": "x", "values": np.ones(3, np.int64)})
    assert info.value.kind == "bad_request"
    assert info.value.message == "expected a float32 array, got int64"


def test_inconsistent_array_map_is_a_bad_request(hello: edgewasm.Guest) -> None:
    """A hand-made array map whose data does not match its shape is refused by the SDK, not misread."""
    bad = {"name": "x", "values": {"dtype": "float32", "shape": [3], "data": b"\0" * 8}}
    reply = msgpack.unpackb(hello.infer_bytes(msgpack.packb(bad)))
    assert reply["error"]["kind"] == "bad_request"
    assert "needs 12 bytes of data, got 8" in reply["error"]["message"]


def test_malformed_request_is_an_error_map_not_a_trap(hello: edgewasm.Guest) -> None:
    reply = msgpack.unpackb(hello.infer_bytes(b"\xc1\xc1\xc1"))
    assert reply["error"]["kind"] == "bad_request"
    with pytest.raises(edgewasm.GuestError, match="request does not decode"):
        hello.infer([1, 2, 3])  # msgpack, but not a map with the expected fields


def test_panic_traps_and_the_guest_recovers(hello: edgewasm.Guest) -> None:
    with pytest.raises(edgewasm.GuestTrap):
        hello.infer({"name": "x", "panic": True})
    assert hello.infer({"name": "again"})["greeting"] == "hello, again"


# -- what the SDK refuses before the handler runs (issue 8) -------------------------------------------------------


def test_a_struct_request_is_a_map_never_a_list(hello: edgewasm.Guest) -> None:
    """serde's derive reads a struct from an array by position: ["Ada"] was greeted as {"name": "Ada"}."""
    for request in (["Ada"], ["Ada", None, False], "Ada", 7, None):
        with pytest.raises(edgewasm.GuestError) as info:
            hello.infer(request)
        assert info.value.kind == "bad_request"
        assert "the request must be a msgpack map of field names to values" in info.value.message
    assert hello.infer({"name": "Ada"})["greeting"] == "hello, Ada"


def test_an_array_is_a_map_never_a_list(hello: edgewasm.Guest) -> None:
    positional = {"name": "x", "values": ["float32", [2], np.ones(2, np.float32).tobytes()]}
    with pytest.raises(edgewasm.GuestError, match=r"expected a numpy array map \{dtype, shape, data\}"):
        hello.infer(positional)


def test_exactly_one_msgpack_value(hello: edgewasm.Guest) -> None:
    good = msgpack.packb({"name": "x"})
    reply = msgpack.unpackb(hello.infer_bytes(good + b"\xc0\xc0"))
    assert reply["error"] == {
        "kind": "bad_request",
        "message": "request does not decode: 2 bytes follow the request's msgpack value (send exactly one value)",
    }
    assert "truncated" in msgpack.unpackb(hello.infer_bytes(good[:-1]))["error"]["message"]
    deep = b"\x91" * 200_000 + b"\xc0"  # no stack is spent on nesting: refused, not a stack overflow trap
    assert msgpack.unpackb(hello.infer_bytes(deep))["error"]["kind"] == "bad_request"
    assert hello.infer_bytes(good) == msgpack.packb({"greeting": "hello, x", "sum": 0.0, "count": 0, "doubled": None})


def test_decode_messages_are_one_bounded_line(hello: edgewasm.Guest) -> None:
    """serde echoes an unknown key verbatim: a newline in it, or 100 KB of it, must not reach the message."""
    key = "a\nb" + "k" * 100_000
    request = {"name": "x", "values": {"dtype": "float32", "shape": [0], "data": b"", key: 1}}
    reply = msgpack.unpackb(hello.infer_bytes(msgpack.packb(request)))
    message = reply["error"]["message"]
    assert "\n" not in message and len(message) <= 403 and "unknown field `a\\nbkkk" in message
