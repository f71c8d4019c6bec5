"""The `wasi_ephemeral_nn` ABI through real guests: every misuse gets its errno and the host keeps serving.

The WAT guests (wasm/nn_misuse.wat, nn_probe.wat, nn_nomemory.wat) are linked with raw wasmtime-py and
`WasiNN.define` only, and again through `edgewasm.load(..., nn_preload=...)`.
"""

from __future__ import annotations

import logging
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import wasmtime

from _nn_support import RawGuest, tiny_expected, tiny_onnx
from conftest import require
from edgewasm.nn import NnErrno, NnLimits, WasiNN, imports_wasi_nn

E = NnErrno

#: Scenarios that reach a backend (loading OpenVINO's two builders, reading a TFLite file) and so need it installed.
NEEDS = {"wrong_builder_count": "openvino", "not_a_model_tflite": "ai_edge_litert"}

# scenario export of nn_misuse.wat -> the errno it must get
MISUSES: dict[str, NnErrno] = {
    "bad_graph_handle": E.INVALID_ARGUMENT,
    "bad_context_handle": E.INVALID_ARGUMENT,
    "bad_context_handle_all_ones": E.INVALID_ARGUMENT,
    "unload_then_init": E.INVALID_ARGUMENT,
    "finalize_twice": E.INVALID_ARGUMENT,
    "bad_encoding": E.INVALID_ENCODING,
    "unsupported_encoding": E.INVALID_ENCODING,
    "bad_target": E.INVALID_ARGUMENT,
    "tpu_target": E.UNSUPPORTED_OPERATION,
    "wrong_builder_count": E.INVALID_ARGUMENT,
    "not_a_model": E.RUNTIME_ERROR,
    "not_a_model_tflite": E.RUNTIME_ERROR,
    "unknown_name": E.NOT_FOUND,
    "name_not_utf8": E.INVALID_ARGUMENT,
    "oob_builder_array": E.INVALID_ARGUMENT,
    "oob_builder_blob": E.INVALID_ARGUMENT,
    "huge_builder_count": E.INVALID_ARGUMENT,
    "oob_graph_out": E.INVALID_ARGUMENT,
    "oob_name": E.INVALID_ARGUMENT,
    "oob_tensor_record": E.INVALID_ARGUMENT,
    "oob_tensor_dims": E.INVALID_ARGUMENT,
    "oob_tensor_data": E.INVALID_ARGUMENT,
    "oob_output_buffer": E.INVALID_ARGUMENT,
    "oob_bytes_written": E.INVALID_ARGUMENT,
    "wrong_tensor_size": E.INVALID_ARGUMENT,
    "wrong_dims": E.INVALID_ARGUMENT,
    "wrong_type": E.INVALID_ARGUMENT,
    "unknown_type": E.INVALID_ARGUMENT,
    "huge_rank": E.INVALID_ARGUMENT,
    "bad_input_index": E.INVALID_ARGUMENT,
    "compute_without_input": E.INVALID_ARGUMENT,
    "output_before_compute": E.INVALID_ARGUMENT,
    "bad_output_index": E.INVALID_ARGUMENT,
    "small_output": E.TOO_LARGE,
}

X = np.array([1, 2, 3, 4], dtype=np.float32)


@pytest.fixture(autouse=True)
def fresh_log_limits() -> None:
    """Unexpected host errors are logged at most once a minute per kind; each test starts with a clean slate."""
    from edgewasm.nn import _functions as _host

    _host._ratelog.reset()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require("onnxruntime")  # the tiny model runs on the ONNX backend
    path = tmp_path_factory.mktemp("nn") / "tiny.onnx"
    path.write_bytes(tiny_onnx())
    return path


@pytest.fixture(scope="module", params=[True, False], ids=["unchecked-calls", "define_func"])
def nn(tiny_model: Path, request: pytest.FixtureRequest) -> WasiNN:
    """Both ways of registering the host functions: wasmtime's unchecked C API (default) and Linker.define_func.
    nn_misuse.wat makes a context per scenario and never frees one: its budget allows all of them."""
    return WasiNN([f"default:ONNX:CPU:{tiny_model}"], fast_calls=request.param, limits=NnLimits(contexts=1024))


@pytest.fixture(scope="module")
def misuse(nn: WasiNN) -> RawGuest:
    """One instance shared by every scenario: the host must keep serving it after each misuse."""
    return RawGuest(nn, "nn_misuse.wat")


def _roundtrip_ok(g: RawGuest) -> None:
    assert g.call("roundtrip") == 0
    (written,) = struct.unpack("<I", g.read(0x108, 0x10C))
    assert written == 12
    np.testing.assert_allclose(np.frombuffer(g.read(0x800, 0x80C), "<f4"), tiny_expected(X)[0], rtol=1e-6)


def test_roundtrip(misuse: RawGuest) -> None:
    _roundtrip_ok(misuse)


@pytest.mark.parametrize("scenario", sorted(MISUSES))
def test_misuse_gets_errno_and_host_keeps_serving(
    misuse: RawGuest, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    if scenario in NEEDS:
        require(NEEDS[scenario])  # without the backend the encoding is refused before the builders are read
    with caplog.at_level(logging.ERROR, logger="edgewasm.nn"):
        rc = misuse.call(scenario)
    assert rc == MISUSES[scenario], f"{scenario}: errno {rc}, expected {MISUSES[scenario].name}"
    assert not caplog.records, "a guest misuse must not look like a host bug (logged exception)"
    _roundtrip_ok(misuse)


def test_too_large_reports_needed_size(misuse: RawGuest) -> None:
    misuse.write(b"\0" * 4, 0x108)
    assert misuse.call("small_output") == E.TOO_LARGE
    assert struct.unpack("<I", misuse.read(0x108, 0x10C)) == (12,)


def test_type_padding_bytes_are_ignored(misuse: RawGuest) -> None:
    # byte 8 = 0x01 (f32); bytes 9..11 garbage, as the wasi-nn crate's low-level Tensor may leave them
    assert misuse.call("type_padding_ignored") == 0


def test_missing_memory(nn: WasiNN) -> None:
    assert RawGuest(nn, "nn_nomemory.wat").call("run") == E.MISSING_MEMORY


def _probe_context(nn: WasiNN) -> tuple[RawGuest, int]:
    g = RawGuest(nn, "nn_probe.wat")
    g.write(b"default", 0)
    assert g.call("load_by_name", 0, 7, 0x100) == 0
    assert g.call("init_execution_context", struct.unpack("<I", g.read(0x100, 0x104))[0], 0x104) == 0
    return g, struct.unpack("<I", g.read(0x104, 0x108))[0]


def _set_x(g: RawGuest, ctx: int, x: np.ndarray, data_at: int = 0x1000) -> int:
    g.write(struct.pack("<II", 1, 4), 0x200)
    g.write(np.asarray(x, np.float32).tobytes(), data_at)
    g.write(struct.pack("<IIIII", 0x200, 2, 1, data_at, 16), 0x300)
    return int(g.call("set_input", ctx, 0, 0x300))


def test_unexpected_host_error_is_an_errno_not_an_exception(
    nn: WasiNN, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a backend must not raise through wasmtime: the guest gets runtime_error, the host logs it."""
    g, ctx = _probe_context(nn)
    assert _set_x(g, ctx, X) == 0

    def boom(_: object) -> list[np.ndarray]:
        raise ZeroDivisionError("backend bug")

    from edgewasm.nn.backends.onnx import OnnxContext  # onnxruntime: the fixtures require it

    monkeypatch.setattr(OnnxContext, "compute", boom)  # the backend's own code, where such a bug would be
    with caplog.at_level(logging.ERROR, logger="edgewasm.nn"):
        assert g.call("compute", ctx) == E.RUNTIME_ERROR
    assert any("unexpected host error" in r.getMessage() and r.exc_info for r in caplog.records)
    monkeypatch.undo()
    assert g.call("compute", ctx) == 0
    assert g.call("get_output", ctx, 0, 0x2000, 12, 0x108) == 0


def test_probe_signed_and_huge_arguments(nn: WasiNN) -> None:
    """i32 arguments arrive signed: negative pointers and lengths are masked to u32 and refused, not wrapped."""
    g = RawGuest(nn, "nn_probe.wat")
    g.write(b"default", 0)
    assert g.call("load_by_name", 0, -1, 0x100) == E.INVALID_ARGUMENT  # length 0xFFFFFFFF
    assert g.call("load_by_name", -2147483648, 7, 0x100) == E.INVALID_ARGUMENT
    assert g.call("load_by_name", 0, 7, 0x100) == 0
    graph = struct.unpack("<I", g.read(0x100, 0x104))[0]
    assert g.call("init_execution_context", graph, 0x104) == 0
    ctx = struct.unpack("<I", g.read(0x104, 0x108))[0]
    # the same name twice gives the same graph handle (one preload, loaded once)
    assert g.call("load_by_name", 0, 7, 0x110) == 0
    assert g.read(0x110, 0x114) == g.read(0x100, 0x104)
    # a tensor record whose data range wraps past 4 GiB
    g.write(struct.pack("<II", 1, 4), 0x200)
    g.write(struct.pack("<IIIII", 0x200, 2, 1, 0xFFFFFFF0, 0x20), 0x300)
    assert g.call("set_input", ctx, 0, 0x300) == E.INVALID_ARGUMENT
    # load_by_name_with_config: config bytes are bounds-checked, then ignored
    assert g.call("load_by_name_with_config", 0, 7, 0x400, 16, 0x120) == 0
    assert g.call("load_by_name_with_config", 0, 7, 0xFFFF0000, 16, 0x120) == E.INVALID_ARGUMENT


def test_a_repeated_tensor_record_is_revalidated_when_its_dims_change_in_place(nn: WasiNN) -> None:
    """The host skips re-validating a record identical to the last one it checked; dims rewritten behind the
    same pointers make it a different record, refused as any other."""
    g, ctx = _probe_context(nn)
    assert _set_x(g, ctx, X) == 0
    assert g.call("set_input", ctx, 0, 0x300) == 0  # the same bytes: accepted again
    g.write(struct.pack("<II", 1, 5), 0x200)  # 1x5 over the same 16 data bytes
    assert g.call("set_input", ctx, 0, 0x300) == E.INVALID_ARGUMENT
    g.write(struct.pack("<II", 1, 4), 0x200)
    g.write(struct.pack("<IIIII", 0x200, 2, 1, 0xFFFFFFF8, 16), 0x300)  # the data now past memory's end
    assert g.call("set_input", ctx, 0, 0x300) == E.INVALID_ARGUMENT
    assert _set_x(g, ctx, X) == 0
    assert g.call("compute", ctx) == 0
    assert g.call("get_output", ctx, 0, 0x2000, 12, 0x108) == 0
    np.testing.assert_allclose(np.frombuffer(g.read(0x2000, 0x200C), "<f4"), tiny_expected(X)[0], rtol=1e-6)


def test_input_read_at_compute_after_memory_growth(nn: WasiNN) -> None:
    """Inputs are read zero-copy at compute from the memory's current base, even after the guest grew it."""
    g = RawGuest(nn, "nn_probe.wat")
    g.write(b"default", 0)
    assert g.call("load_by_name", 0, 7, 0x100) == 0
    assert g.call("init_execution_context", struct.unpack("<I", g.read(0x100, 0x104))[0], 0x104) == 0
    ctx = struct.unpack("<I", g.read(0x104, 0x108))[0]
    x = np.array([0.5, -1, 2, 8], np.float32)
    g.write(struct.pack("<II", 1, 4), 0x200)
    g.write(x.tobytes(), 0x1000)
    g.write(struct.pack("<IIIII", 0x200, 2, 1, 0x1000, 16), 0x300)
    assert g.call("set_input", ctx, 0, 0x300) == 0
    assert g.call("grow", 200) >= 0
    assert g.call("compute", ctx) == 0
    assert g.call("get_output", ctx, 0, 0x2000, 64, 0x108) == 0
    np.testing.assert_allclose(np.frombuffer(g.read(0x2000, 0x200C), "<f4"), tiny_expected(x)[0], rtol=1e-6)


def test_copy_inputs_mode_snapshots_at_set_input(tiny_model: Path) -> None:
    nn = WasiNN([f"default:ONNX:CPU:{tiny_model}"], copy_inputs=True)
    g = RawGuest(nn, "nn_probe.wat")
    g.write(b"default", 0)
    assert g.call("load_by_name", 0, 7, 0x100) == 0
    assert g.call("init_execution_context", struct.unpack("<I", g.read(0x100, 0x104))[0], 0x104) == 0
    ctx = struct.unpack("<I", g.read(0x104, 0x108))[0]
    g.write(struct.pack("<II", 1, 4), 0x200)
    g.write(X.tobytes(), 0x1000)
    g.write(struct.pack("<IIIII", 0x200, 2, 1, 0x1000, 16), 0x300)
    assert g.call("set_input", ctx, 0, 0x300) == 0
    g.write(b"\0" * 16, 0x1000)  # the guest reuses its buffer before compute
    assert g.call("compute", ctx) == 0
    assert g.call("get_output", ctx, 0, 0x2000, 12, 0x108) == 0
    np.testing.assert_allclose(np.frombuffer(g.read(0x2000, 0x200C), "<f4"), tiny_expected(X)[0], rtol=1e-6)


def test_load_from_guest_bytes_and_unload(nn: WasiNN) -> None:
    g = RawGuest(nn, "nn_probe.wat")
    blob = tiny_onnx()
    g.write(blob, 0x4000)
    g.write(struct.pack("<II", 0x4000, len(blob)), 0x100)
    assert g.call("load", 0x100, 1, 1, 0, 0x200) == 0
    graph = struct.unpack("<I", g.read(0x200, 0x204))[0]
    assert g.call("init_execution_context", graph, 0x204) == 0
    ctx = struct.unpack("<I", g.read(0x204, 0x208))[0]
    assert g.call("unload", graph) == 0
    assert g.call("unload", graph) == E.INVALID_ARGUMENT
    assert g.call("init_execution_context", graph, 0x204) == E.INVALID_ARGUMENT
    # a context outlives the unload of its graph handle (it holds the graph)
    g.write(struct.pack("<II", 1, 4), 0x300)
    g.write(X.tobytes(), 0x310)
    g.write(struct.pack("<IIIII", 0x300, 2, 1, 0x310, 16), 0x320)
    assert g.call("set_input", ctx, 0, 0x320) == 0
    assert g.call("compute", ctx) == 0
    assert g.call("finalize_execution_context", ctx) == 0
    assert g.call("compute", ctx) == E.INVALID_ARGUMENT


def test_handle_limits(tiny_model: Path) -> None:
    nn = WasiNN([f"default:ONNX:CPU:{tiny_model}"], limits=NnLimits(contexts=3))
    g = RawGuest(nn, "nn_probe.wat")
    g.write(b"default", 0)
    assert g.call("load_by_name", 0, 7, 0x100) == 0
    graph = struct.unpack("<I", g.read(0x100, 0x104))[0]
    assert [g.call("init_execution_context", graph, 0x104) for _ in range(4)] == [0, 0, 0, E.RUNTIME_ERROR]
    assert g.call("finalize_execution_context", 0) == 0
    assert g.call("init_execution_context", graph, 0x104) == 0


def test_threads_share_one_wasinn(nn: WasiNN) -> None:
    """One WasiNN serving instances in several threads: locked tables, distinct handles, right answers."""
    errors: list[BaseException] = []
    engine = wasmtime.Engine()

    def worker(seed: int) -> None:
        try:
            g = RawGuest(nn, "nn_probe.wat", engine)
            g.write(b"default", 0)
            assert g.call("load_by_name", 0, 7, 0x100) == 0
            assert g.call("init_execution_context", struct.unpack("<I", g.read(0x100, 0x104))[0], 0x104) == 0
            ctx = struct.unpack("<I", g.read(0x104, 0x108))[0]
            g.write(struct.pack("<II", 1, 4), 0x200)
            rng = np.random.default_rng(seed)
            for _ in range(50):
                x = rng.standard_normal(4).astype(np.float32)
                g.write(x.tobytes(), 0x1000)
                g.write(struct.pack("<IIIII", 0x200, 2, 1, 0x1000, 16), 0x300)
                assert g.call("set_input", ctx, 0, 0x300) == 0
                assert g.call("compute", ctx) == 0
                assert g.call("get_output", ctx, 0, 0x2000, 12, 0x108) == 0
                got = np.frombuffer(g.read(0x2000, 0x200C), "<f4")
                np.testing.assert_allclose(got, tiny_expected(x)[0], rtol=1e-5, atol=1e-6)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_imports_wasi_nn_detection() -> None:
    engine = wasmtime.Engine()
    root = Path(__file__).resolve().parent.parent / "wasm"
    assert imports_wasi_nn(wasmtime.Module.from_file(engine, str(root / "nn_probe.wat")))
    assert not imports_wasi_nn(wasmtime.Module(engine, "(module)"))


def test_misuse_command_through_edgewasm_load(tiny_model: Path) -> None:
    """The core host wires WASI-NN from `nn_preload`: a command guest's misuses get their errnos, then it infers."""
    import edgewasm

    module = Path(__file__).resolve().parent.parent / "wasm" / "nn_misuse_cmd.wat"
    with edgewasm.load(module, nn_preload=[f"default:ONNX:CPU:{tiny_model}"]) as guest:
        for _ in range(2):  # a fresh instance per run, the preloaded graph shared
            assert guest.run().exit_code == 0
    with edgewasm.load(module) as guest:  # no preload: step 6 (load_by_name "default") fails
        assert guest.run().exit_code == 6


def test_handles_are_per_store_and_released(tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Each store has its own handles (from 0); release/bind drop them; an unbounded churn evicts the oldest."""
    import gc

    nn = WasiNN([f"default:ONNX:CPU:{tiny_model}"], max_stores=3)
    a, ctx_a = _probe_context(nn)
    b, ctx_b = _probe_context(nn)
    assert ctx_a == ctx_b == 0  # the same number, different contexts
    assert _set_x(a, ctx_a, X) == 0
    assert b.call("compute", ctx_b) == E.INVALID_ARGUMENT  # b's context 0 has no input: a's is not visible
    assert b.call("finalize_execution_context", 1) == E.INVALID_ARGUMENT
    nn.release(a.store)
    assert a.call("compute", ctx_a) == E.INVALID_ARGUMENT  # released
    assert b.call("finalize_execution_context", ctx_b) == 0
    c, _ = _probe_context(nn)
    nn.bind(c.store)
    live = nn.live_stores
    del c
    gc.collect()
    assert nn.live_stores == live - 1  # collected with its Store
    with caplog.at_level(logging.WARNING, logger="edgewasm.nn"):
        guests = [_probe_context(nn)[0] for _ in range(5)]
    assert nn.live_stores == 3
    assert sum("release/bind" in r.getMessage() for r in caplog.records) == 1
    _roundtrip = guests[-1]
    assert _set_x(_roundtrip, 0, X) == 0 and _roundtrip.call("compute", 0) == 0


@pytest.mark.parametrize("fast", [True, False])
def test_keyboard_interrupt_still_stops_the_guest(
    tiny_model: Path, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only KeyboardInterrupt/SystemExit cross a callback: re-raised at the outer call, as wasmtime-py does."""
    nn = WasiNN([f"default:ONNX:CPU:{tiny_model}"], fast_calls=fast)

    def interrupted(*_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(nn, "_unload", interrupted)
    g = RawGuest(nn, "nn_probe.wat")
    with pytest.raises(KeyboardInterrupt):
        g.call("unload", 0)
    assert g.call("finalize_execution_context", 0) == E.INVALID_ARGUMENT  # the instance still answers


def test_a_reused_store_address_gets_a_fresh_namespace(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Handle namespaces are keyed by store address, which the allocator reuses. A store bound at the address of
    a dead one whose finalizer has not run yet must not see its handles, and that finalizer must not drop the new
    store's namespace. (Every store gets the same address here.)"""
    import gc

    from edgewasm.nn import _functions as _host

    monkeypatch.setattr(_host, "_store_key", lambda store: 0x1000)
    nn = WasiNN([f"default:ONNX:CPU:{tiny_model}"])
    old = RawGuest(nn, "nn_probe.wat")
    nn.bind(old.store)
    old.write(b"default", 0)
    assert old.call("load_by_name", 0, 7, 0x100) == 0 and old.call("init_execution_context", 0, 0x104) == 0
    assert _set_x(old, 0, X) == 0
    new = RawGuest(nn, "nn_probe.wat")
    nn.bind(new.store)
    assert new.call("compute", 0) == E.INVALID_ARGUMENT  # the old store's context 0 is not visible
    new.write(b"default", 0)
    assert new.call("load_by_name", 0, 7, 0x100) == 0 and new.call("init_execution_context", 0, 0x104) == 0
    del old
    gc.collect()  # the old store's finalizer runs now
    assert _set_x(new, 0, X) == 0 and new.call("compute", 0) == 0
