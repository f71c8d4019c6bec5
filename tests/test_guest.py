"""The host API against real guests: round trips, limits, sandbox, misbehaving guests, threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import edgewasm


@pytest.fixture
def echo(wasm_dir: Path) -> edgewasm.Guest:
    return edgewasm.load(wasm_dir / "echo.wat", timeout=5.0)


def test_echo_round_trip(echo: edgewasm.Guest) -> None:
    req = {"model_id": "m", "values": [1.0, 2.0], "nested": {"a": [1, "two", None]}}
    assert echo.infer(req) == req


def test_numpy_round_trip_through_guest_memory(echo: edgewasm.Guest) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    reply = echo.infer({"pixels": pixels, "scale": np.float32(0.5)})
    np.testing.assert_array_equal(reply["pixels"], pixels)
    assert reply["scale"] == 0.5


def test_raw_bytes_round_trip(echo: edgewasm.Guest) -> None:
    blob = bytes(range(256)) * 1000
    assert echo.infer_bytes(blob) == blob


def test_requests_of_changing_sizes_round_trip(echo: edgewasm.Guest) -> None:
    """Larger, then smaller requests: each answered whole (whether the buffer is reused: the counter test below)."""
    for size in (10, 100_000, 50, 3_000_000, 7):
        data = np.full(size, size % 251, np.uint8)
        np.testing.assert_array_equal(echo.infer({"d": data})["d"], data)


#: A guest that counts its edge_alloc calls and answers every request with the count (a msgpack fixint).
_ALLOC_COUNTER = """
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $allocs (mut i32) (i32.const 0))
  (func (export "edge_alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32)
    (global.set $allocs (i32.add (global.get $allocs) (i32.const 1)))
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then (if (i32.eq (i32.const -1) (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16))
                                                             (i32.const 1))))
              (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))
  (func (export "edge_free") (param i32 i32))
  (func (export "infer") (param i32 i32) (result i64)
    (i32.store8 (i32.const 8) (i32.and (global.get $allocs) (i32.const 127)))
    (i64.const 34359738369)))  ;; (8 << 32) | 1
"""


def test_request_buffer_is_reused_until_a_request_outgrows_it(tmp_path: Path) -> None:
    """The host allocates its request buffer once and again only when a request is larger than it."""
    module = tmp_path / "alloc_counter.wat"
    module.write_text(_ALLOC_COUNTER)
    guest = edgewasm.load(module, cache=False)
    counts = [guest.infer({"d": bytes(size)}) for size in (10, 100_000, 50, 3_000_000, 7, 3_000_000, 99_999)]
    assert counts == [1, 2, 2, 3, 3, 3, 3]


def test_many_calls_do_not_leak_guest_memory(wasm_dir: Path) -> None:
    """300 calls of 200 KB each within 1 MiB of guest memory (one call needs about 450 KiB): a request or
    response buffer leaked per call would hit the limit within a few calls."""
    echo = edgewasm.load(wasm_dir / "echo.wat", memory_limit="1MiB")
    big = {"d": np.arange(200_000, dtype=np.uint32).astype(np.uint8)}
    for _ in range(300):
        np.testing.assert_array_equal(echo.infer(big)["d"], big["d"])


def test_timeout_interrupts_an_endless_loop_and_the_guest_recovers(wasm_dir: Path) -> None:
    spin = edgewasm.load(wasm_dir / "spin.wat", timeout=0.2)
    for _ in range(2):  # a fresh instance after each interruption
        start = time.monotonic()
        with pytest.raises(edgewasm.GuestTimeout, match=r"timeout of 0\.2 s"):
            spin.infer({"x": 1})
        assert time.monotonic() - start < 3.0


def test_memory_limit_stops_a_guest_that_grows_forever(wasm_dir: Path) -> None:
    grow = edgewasm.load(wasm_dir / "grow.wat", memory_limit="32MiB")
    with pytest.raises(edgewasm.GuestOutOfMemory, match=r"ran out of linear memory.*32 MiB limit"):
        grow.infer({})


def test_initial_memory_over_the_limit_fails_at_load(wasm_dir: Path) -> None:
    with pytest.raises(edgewasm.GuestOutOfMemory, match="initial memory"):
        edgewasm.load(wasm_dir / "echo.wat", memory_limit=65536)  # echo starts with 2 pages


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("trap.wat", edgewasm.GuestTrap, "integer divide by zero"),
        ("bad_range.wat", edgewasm.AbiError, "outside its memory"),
        ("absurd_len.wat", edgewasm.AbiError, "absurd response length"),
    ],
)
def test_misbehaving_guests_get_clear_errors(wasm_dir: Path, name: str, error: type, message: str) -> None:
    guest = edgewasm.load(wasm_dir / name)
    for _ in range(2):  # the host survives and the next call runs on a fresh instance
        with pytest.raises(error, match=message):
            guest.infer({"x": 1})


def test_a_trap_replaces_the_instance() -> None:
    body = """(module (memory (export "memory") 1)
      (global $n (mut i32) (i32.const 0))
      (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "edge_free") (param i32 i32))
      ;; counts its calls; a request of msgpack `true` (0xc3) traps
      (func (export "infer") (param $p i32) (param i32) (result i64)
        (global.set $n (i32.add (global.get $n) (i32.const 1)))
        (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 0xc3)) (then unreachable))
        (i32.store8 (i32.const 2048) (global.get $n))
        (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 1))))"""
    guest = edgewasm.load(body.encode())
    assert [guest.infer(0), guest.infer(0)] == [1, 2]
    with pytest.raises(edgewasm.GuestTrap, match="unreachable"):
        guest.infer(True)
    assert guest.infer(0) == 1  # a fresh instance: nothing of the trapped one survives


def test_guest_reported_errors_become_exceptions() -> None:
    # msgpack of {"error": {"kind": "bad_request", "message": "no"}}
    import msgpack

    payload = msgpack.packb({"error": {"kind": "bad_request", "message": "width is missing"}})
    data = "".join(f"\\{b:02x}" for b in payload)
    body = f"""(module (memory (export "memory") 1)
      (data (i32.const 2048) "{data}")
      (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "edge_free") (param i32 i32))
      (func (export "infer") (param i32 i32) (result i64)
        (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const {len(payload)}))))"""
    guest = edgewasm.load(body.encode())
    with pytest.raises(edgewasm.GuestError, match="guest reported bad_request: width is missing") as info:
        guest.infer({})
    assert info.value.kind == "bad_request" and info.value.message == "width is missing"


def test_fuel_limits_work_per_call(wasm_dir: Path) -> None:
    spin = edgewasm.load(wasm_dir / "spin.wat", fuel=100_000)
    with pytest.raises(edgewasm.GuestOutOfFuel):
        spin.infer({})
    echo = edgewasm.load(wasm_dir / "echo.wat", fuel=1_000_000)
    for _ in range(3):  # the budget is per call, not per instance
        assert echo.infer({"a": 1}) == {"a": 1}


#: A guest that answers every call with how many calls its instance has had (a msgpack fixint, mod 128).
_CALL_COUNTER = """
(module
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "edge_free") (param i32 i32))
  (func (export "infer") (param i32 i32) (result i64)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store8 (i32.const 8) (i32.and (global.get $calls) (i32.const 127)))
    (i64.const 34359738369)))  ;; (8 << 32) | 1
"""


def test_threads_get_their_own_instances(echo: edgewasm.Guest, tmp_path: Path) -> None:
    """Four threads call at once; each sees only its own calls in its instance's state, and echoes stay whole."""
    module = tmp_path / "call_counter.wat"
    module.write_text(_CALL_COUNTER)
    counter = edgewasm.load(module, cache=False)
    errors: list[BaseException] = []
    seen: list[list[int]] = []
    barrier = threading.Barrier(4)

    def work(k: int) -> None:
        try:
            barrier.wait(timeout=30)
            seen.append([counter.infer({}) for _ in range(50)])
            for i in range(200):
                arr = np.full(1000 + k, i % 256, np.uint8)
                reply = echo.infer({"k": k, "i": i, "a": arr})
                assert reply["k"] == k and reply["i"] == i
                np.testing.assert_array_equal(reply["a"], arr)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert seen == [list(range(1, 51))] * 4  # one shared instance would have counted to 200


def test_command_guest_stdin_stdout_exit_code(wasm_dir: Path) -> None:
    cat = edgewasm.load(wasm_dir / "cat.wat")
    assert cat.run(b"hello world").stdout == b"hello world"
    result = cat.run(b"")
    assert result.exit_code == 3 and result.stdout == b""
    with pytest.raises(edgewasm.AbiError, match="not an infer guest"):
        cat.infer({})


def test_nothing_of_the_host_is_visible_by_default(wasm_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SECRET_TOKEN", "s3cret")
    (tmp_path / "hello.txt").write_text("hi")
    files = edgewasm.load(wasm_dir / "files.wat")
    result = files.run()
    assert result.exit_code == 2  # no preopened directory at all
    assert b"s3cret" not in result.stdout


def test_dirs_are_read_only_unless_asked(wasm_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hi there")
    ro = edgewasm.load(wasm_dir / "files.wat", dirs={"/data": tmp_path}, env={"MODE": "test"})
    result = ro.run()
    assert result.stdout.startswith(b"MODE=test\0hi there")
    assert result.exit_code == 3 and not (tmp_path / "written.txt").exists()
    rw = edgewasm.load(wasm_dir / "files.wat", dirs=[f"{tmp_path}::/data:rw"])
    assert rw.run().exit_code == 0
    assert (tmp_path / "written.txt").exists()


def test_bad_sandbox_settings_are_clear(wasm_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(edgewasm.SandboxError, match="not a directory"):
        edgewasm.load(wasm_dir / "echo.wat", dirs={"/x": tmp_path / "missing"})
    with pytest.raises(edgewasm.SandboxError, match="cannot read memory limit"):
        edgewasm.load(wasm_dir / "echo.wat", memory_limit="lots")
    with pytest.raises(edgewasm.SandboxError, match="timeout"):
        edgewasm.load(wasm_dir / "echo.wat", timeout=-1)


def test_memory_limit_units() -> None:
    from edgewasm._options import parse_size

    assert parse_size("256MiB") == 256 << 20
    assert parse_size("1 GiB") == 1 << 30
    assert parse_size("4096pages") == 4096 * 65536
    assert parse_size(1234) == 1234
    assert parse_size(None) is None


def test_a_directory_the_host_may_not_read_is_refused(
    wasm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # Tests run as root here, which reads any directory; pretend the permission bits apply.
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    with pytest.raises(edgewasm.SandboxError, match="permission denied"):
        edgewasm.load(wasm_dir / "cat.wat", dirs={"/data": locked})
