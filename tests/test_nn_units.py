"""Small pieces of the WASI-NN host: handle tables, tensor-type resolution, raw outputs, and its ABI tables against
the Rust guests' binding (guest/wasi-nn-sys)."""

from __future__ import annotations

import ctypes
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgewasm.nn import ExecutionTarget, GraphEncoding, NnErrno, NnError, resolve_tensor_type
from edgewasm.nn._enums import WITX_TENSOR_TYPES
from edgewasm.nn._functions import _raw_output
from edgewasm.nn._guestmem import GuestMemory
from edgewasm.nn._tables import HandleTable
from edgewasm.nn._watchdog import _Watchdog


def test_handles_start_at_zero_and_skip_live_ones_on_wrap() -> None:
    t: HandleTable[str] = HandleTable("graph", 10)
    assert [t.insert("a"), t.insert("b")] == [0, 1]
    t._next = 0xFFFFFFFF
    assert t.insert("c") == 0xFFFFFFFF
    assert t.insert("d") == 2  # 0 and 1 are still live
    assert t.get(-1) == "c"  # i32 -1 is handle 0xFFFFFFFF
    assert t.remove(0) == "a"
    with pytest.raises(NnError) as err:
        t.get(0)
    assert err.value.errno is NnErrno.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("code", "n", "nbytes", "numbering", "want"),
    [
        (1, 4, 16, "auto", "float32"),
        (0, 4, 8, "auto", "float16"),
        (2, 4, 32, "auto", "float64"),
        (2, 4, 4, "auto", "uint8"),
        (3, 4, 4, "auto", "uint8"),
        (3, 4, 16, "auto", "int32"),
        (4, 4, 16, "auto", "int32"),
        (5, 4, 32, "auto", "int64"),
        (2, 0, 0, "auto", "float64"),  # a tie: the current numbering wins
        (3, 4, 16, "legacy", "int32"),
        (2, 4, 32, "witx", "float64"),
    ],
)
def test_resolve_tensor_type(code: int, n: int, nbytes: int, numbering: str, want: str) -> None:
    assert resolve_tensor_type(code, n, nbytes, numbering) == np.dtype(want)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "n", "nbytes", "numbering"),
    [(6, 1, 1, "auto"), (1, 4, 12, "auto"), (4, 4, 16, "legacy"), (2, 4, 4, "witx"), (255, 1, 1, "witx")],
)
def test_resolve_tensor_type_refuses(code: int, n: int, nbytes: int, numbering: str) -> None:
    with pytest.raises(NnError) as err:
        resolve_tensor_type(code, n, nbytes, numbering)  # type: ignore[arg-type]
    assert err.value.errno is NnErrno.INVALID_ARGUMENT


def test_raw_output() -> None:
    big = np.arange(6, dtype=">f4").reshape(2, 3).T  # big-endian, not C-contiguous
    raw = _raw_output(big, 0)
    assert raw.flags.c_contiguous and raw.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(raw, big)
    with pytest.raises(NnError) as err:
        _raw_output(np.array(["a", "b"], dtype=object), 1)
    assert err.value.errno is NnErrno.RUNTIME_ERROR
    native = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert _raw_output(native, 0) is native  # already the guest's form: handed over as it is


def test_guest_memory_views_are_bounded_slices_of_the_current_memory() -> None:
    buf = (ctypes.c_uint8 * 64)()
    mem = GuestMemory.__new__(GuestMemory)
    mem.base, mem.length = ctypes.addressof(buf), 64
    v = mem.view(8, 4, "data")
    v[:] = [1, 2, 3, 4]
    assert bytes(buf[8:12]) == b"\x01\x02\x03\x04" and v.shape == (4,)
    with pytest.raises(NnError):
        mem.view(62, 4, "data")
    mem.length = 10  # the memory as a later call sees it (shrunk here): the cached whole view is not reused
    with pytest.raises(NnError):
        mem.view(8, 4, "data")
    assert mem.view(8, 2, "data").base is not v.base


def test_the_watchdog_fires_an_earlier_deadline_scheduled_after_a_later_one() -> None:
    dog = _Watchdog()
    fired: list[str] = []
    done = threading.Event()
    now = time.monotonic()
    cancel_late = dog.schedule(now + 60.0, lambda: fired.append("late"))
    time.sleep(0.05)  # the thread is now asleep until the late entry
    dog.schedule(now + 0.1, lambda: (fired.append("early"), done.set()))
    cancel_mid = dog.schedule(now + 0.05, lambda: fired.append("cancelled"))
    cancel_mid()
    assert done.wait(5.0), "an entry due before the one the thread sleeps for was not fired"
    assert fired == ["early"]
    cancel_late()


def test_the_watchdog_sheds_cancelled_entries() -> None:
    dog = _Watchdog()
    far = time.monotonic() + 3600.0
    for i in range(500):
        dog.schedule(far + i, lambda: None)()
    assert len(dog._heap) <= 64 + 1


GUEST = Path(__file__).resolve().parent.parent / "guest"
SYS = GUEST / "wasi-nn-sys" / "src" / "lib.rs"


def _rust_module(name: str) -> str:
    """The body of `pub mod <name> { ... }` in guest/wasi-nn-sys (the file's modules are flat, one level deep)."""
    found = re.search(rf"^pub mod {name} \{{\n(.*?)^\}}", SYS.read_text(), re.M | re.S)
    assert found, f"{SYS}: no `pub mod {name}`"
    return found[1]


def _rust_consts(name: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"pub const (\w+): \w+ = (\d+);", _rust_module(name))}


def test_rust_guests_binding_has_the_hosts_errno_table() -> None:
    """guest/wasi-nn-sys (both Rust WASI-NN guests' binding) and the host agree on every errno and its name."""
    assert _rust_consts("errno") == {e.name: e.value for e in NnErrno}
    names = {m[1]: m[2] for m in re.finditer(r'^\s+(\w+) => "(\w+)",$', _rust_module("errno"), re.M)}
    assert names == {e.name: e.name.lower() for e in NnErrno}


def test_rust_guests_binding_has_the_hosts_enum_values() -> None:
    """The witx encodings, targets and tensor types: WasmEdge's extras (GGML, AUTO) are the host's alone."""
    assert _rust_consts("encoding") == {e.name: e.value for e in GraphEncoding if e is not GraphEncoding.GGML}
    assert _rust_consts("target") == {t.name: t.value for t in ExecutionTarget if t is not ExecutionTarget.AUTO}
    dtypes = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "U8": "u1", "I32": "<i4", "I64": "<i8"}
    types = _rust_consts("tensor_type")
    assert types.keys() == dtypes.keys()
    assert {v: np.dtype(dtypes[k]) for k, v in types.items()} == WITX_TENSOR_TYPES


def test_one_wasi_nn_binding_in_the_rust_guests() -> None:
    """Only guest/wasi-nn-sys declares the `wasi_ephemeral_nn` imports; the guests use it, not a copy of their own."""
    declaring = sorted(
        p.relative_to(GUEST).as_posix()
        for p in GUEST.rglob("*.rs")
        if "target" not in p.relative_to(GUEST).parts and 'wasm_import_module = "wasi_ephemeral_nn"' in p.read_text()
    )
    assert declaring == ["wasi-nn-sys/src/lib.rs"]
    for guest in ("wasinn-classifier", "wasinn-compat"):
        assert 'wasi-nn-sys = { path = "../wasi-nn-sys" }' in (GUEST / guest / "Cargo.toml").read_text(), guest
