"""Property tests of the WASI-NN host functions through a real guest (hypothesis).

wasm/nn_probe.wat forwards its exports' arguments to the `wasi_ephemeral_nn` imports unchanged, so every argument
reaches the host exactly as a hostile guest would send it. Each example is a sequence of steps on a fresh instance:
calls with arbitrary arguments (handles, pointers near and past the end of memory, signed values, lengths), writes
of tensor records, dims, type codes and builder arrays into guest memory, model blobs (real ONNX, TFLite and
OpenVINO IR models, truncated or bit-flipped copies of them, random bytes) and memory growth. Then:

- every call returned an errno (never raised, never crashed the process);
- nothing was logged at WARNING or above, except the one line for a guest model refused for reaching outside
  the sandbox;
- the instance still serves: a full load_by_name / init / set_input / compute / get_output round trip gives the
  right answer.

A quick profile runs with the test suite; `EDGEWASM_FUZZ=long` runs the long one (docs/wasi-nn.md), e.g.
`EDGEWASM_FUZZ=long python -m pytest -q tests/test_nn_fuzz.py --hypothesis-show-statistics`.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wasmtime
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from _nn_script import COMPUTE, F32, GUEST, INIT, LOAD_BY_NAME, SET_INPUT, Script
from _nn_support import WASM, tiny_expected, tiny_onnx, tiny_tflite
from edgewasm.nn import NnLimits, WasiNN
from edgewasm.nn import _functions as nn_host

LONG = os.environ.get("EDGEWASM_FUZZ", "").lower() == "long"
EXAMPLES = 10_000 if LONG else 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
ERRNOS = set(range(9))
FUNCS = {  # export name -> number of i32 params
    "load": 5,
    "load_by_name": 3,
    "load_by_name_with_config": 5,
    "init_execution_context": 2,
    "set_input": 3,
    "compute": 1,
    "get_output": 5,
    "unload": 1,
    "finalize_execution_context": 1,
}
PAGE = 65536
# Guest memory layout of every example (the probe's memory starts at 2 pages and may grow).
NAME, NAME_BAD = 0x0000, 0x0010  # "default", "nope"
BUILDERS = 0x0100  # a builder array the steps rewrite
TENSOR = 0x0200  # a tensor record the steps rewrite
DIMS = 0x0280  # the dims it points at
OUTS = 0x0300  # out pointers (graph, context, bytes written)
DATA = 0x0400  # tensor data
OUTPUT = 0x0800  # output buffers
BLOBS = 0x2000  # model blobs, back to back
ADDRESSES = [NAME, NAME_BAD, BUILDERS, TENSOR, DIMS, OUTS, OUTS + 4, OUTS + 8, DATA, OUTPUT, BLOBS, 2 * PAGE - 4]


class _Loud(logging.Handler):
    """Collects what the host logs at WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class World:
    nn: WasiNN
    engine: wasmtime.Engine
    module: wasmtime.Module
    linker: wasmtime.Linker
    blobs: dict[str, bytes]
    at: dict[str, int]  # blob name -> its address in guest memory


def _ir_model() -> tuple[bytes, bytes]:
    ov = pytest.importorskip("openvino")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "tiny.onnx"
        onnx_path.write_bytes(tiny_onnx())
        ov.save_model(ov.convert_model(str(onnx_path)), str(Path(tmp) / "tiny.xml"))
        return (Path(tmp) / "tiny.xml").read_bytes(), (Path(tmp) / "tiny.bin").read_bytes()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    model = tmp_path_factory.mktemp("fuzz") / "tiny.onnx"
    model.write_bytes(tiny_onnx())
    # the budgets are small so that the fuzzer reaches their ends too
    nn = WasiNN([f"default:ONNX:CPU:{model}"], limits=NnLimits(graphs=3, contexts=6, model_bytes=1 << 20,
                                                                 tensor_bytes=1 << 16))  # fmt: skip
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    nn.define(linker)
    xml, weights = _ir_model()
    blobs = {"onnx": tiny_onnx(), "tflite": tiny_tflite("float32")[0], "xml": xml, "bin": weights}
    at, p = {}, BLOBS
    for name, blob in blobs.items():
        at[name] = p
        p += (len(blob) + 15) // 16 * 16
    assert p < 2 * PAGE
    return World(nn, engine, wasmtime.Module.from_file(engine, str(WASM / "nn_probe.wat")), linker, blobs, at)


# -- steps ------------------------------------------------------------------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
arg = st.one_of(
    st.integers(0, 8),  # handles, indices, encodings, targets, counts
    st.sampled_from(ADDRESSES),
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([0x7FFFFFFF, -1, -2147483648, PAGE, 2 * PAGE, 2 * PAGE - 1]),
)


# Each parameter has a role: often a value that makes sense for it, else anything. "graph" and "ctx" stand for
# the handle the last load / init wrote to its out pointer, so that examples reach deep states.
def _role(*likely: Any) -> st.SearchStrategy[Any]:
    return st.one_of(*[st.just(v) for v in likely], arg)


graph = st.one_of(st.just("graph"), st.just("graph"), st.integers(0, 4), arg)
ctx = st.one_of(st.just("ctx"), st.just("ctx"), st.integers(0, 4), arg)
ptr = st.one_of(st.sampled_from(ADDRESSES), arg)
length = st.one_of(st.sampled_from([0, 1, 4, 7, 12, 16, 64, PAGE]), arg)
small = st.one_of(st.integers(0, 6), arg)
name = (_role(NAME, NAME, NAME_BAD), _role(7, 7, 4))
SIGNATURES = {
    "load": (_role(BUILDERS, BUILDERS), _role(1, 2), _role(0, 1, 4), _role(0, 0, 3), _role(OUTS, OUTS)),
    "load_by_name": (*name, _role(OUTS, OUTS)),
    "load_by_name_with_config": (*name, ptr, length, _role(OUTS, OUTS)),
    "init_execution_context": (graph, _role(OUTS + 4, OUTS + 4)),
    "set_input": (ctx, _role(0, 0, 1), _role(TENSOR, TENSOR)),
    "compute": (ctx,),
    "get_output": (ctx, _role(0, 0, 1), _role(OUTPUT, OUTPUT), _role(12, 12, 4, 1 << 20), _role(OUTS + 8, OUTS + 8)),
    "unload": (graph,),
    "finalize_execution_context": (ctx,),
}
assert {f: len(a) for f, a in SIGNATURES.items()} == FUNCS
call = st.sampled_from(sorted(FUNCS)).flatmap(
    lambda f: st.tuples(st.just("call"), st.just(f), st.tuples(*SIGNATURES[f]))
)
dim = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 224, 0xFFFFFFFF, 1 << 16, 1 << 31]), u32)
tensor = st.tuples(
    st.just("tensor"),
    st.one_of(st.just([1, 4]), st.lists(dim, max_size=10)),
    st.one_of(st.just(1), st.integers(0, 8), st.integers(0, 255)),  # the type byte
    st.one_of(st.just(16), st.integers(0, 64), u32),  # data_len
    st.one_of(st.just(DATA), st.sampled_from(ADDRESSES), u32),  # data_ptr
    st.one_of(st.none(), st.integers(0, 12), u32),  # dims_len (None: the list's length)
)
blob_ref = st.tuples(
    st.sampled_from(["onnx", "tflite", "xml", "bin", "raw"]), st.one_of(st.none(), st.integers(0, 4096), u32)
)
builders = st.tuples(
    st.just("builders"),
    st.one_of(
        st.sampled_from([[("onnx", None)], [("tflite", None)], [("xml", None), ("bin", None)]]),
        st.lists(blob_ref, max_size=4),
    ),
)
mutate = st.tuples(
    st.just("mutate"), st.sampled_from(["onnx", "tflite", "xml"]), st.integers(0, 1 << 16), st.integers(0, 255)
)
raw = st.tuples(st.just("raw"), st.sampled_from(ADDRESSES), st.binary(max_size=64))
grow = st.tuples(st.just("grow"), st.integers(0, 3))
# A correct call sequence cut at a random point, from the preload or from a blob in memory: the random steps around
# it then meet live graphs, contexts, inputs and outputs.
happy = st.tuples(st.just("happy"), st.sampled_from(["preload", "onnx", "tflite", "openvino"]), st.integers(1, 6))
step = st.one_of(call, call, call, happy, tensor, builders, mutate, raw, grow)


class Instance:
    def __init__(self, w: World) -> None:
        self.w = w
        self.store = wasmtime.Store(w.engine)
        w.nn.bind(self.store)
        self.instance = w.linker.instantiate(self.store, w.module)
        self.exports = self.instance.exports(self.store)
        self.memory: Any = self.exports["memory"]
        self.write(b"default", NAME)
        self.write(b"nope", NAME_BAD)
        for name, blob in w.blobs.items():
            self.write(blob, w.at[name])

    def write(self, data: bytes, at: int) -> None:
        at &= 0xFFFFFFFF
        if data and at + len(data) <= self.memory.data_len(self.store):
            self.memory.write(self.store, bytearray(data), at)

    def read(self, at: int, n: int) -> bytes:
        return bytes(self.memory.read(self.store, at, at + n))

    def call(self, name: str, *args: int) -> int:
        return int(self.exports[name](self.store, *args))

    def _handle(self, a: int | str) -> int:
        if a == "graph":
            return int(struct.unpack("<i", self.read(OUTS, 4))[0])
        if a == "ctx":
            return int(struct.unpack("<i", self.read(OUTS + 4, 4))[0])
        return int(a)

    def step(self, s: tuple[Any, ...]) -> None:
        kind = s[0]
        if kind == "call":
            rc = self.call(s[1], *[self._handle(a) for a in s[2]])
            assert rc in ERRNOS, f"{s[1]}{s[2]} returned {rc}"
            event(f"{s[1]} -> {rc}")  # --hypothesis-show-statistics: how deep the examples reach
        elif kind == "tensor":
            _, dims, ttype, data_len, data_ptr, rank = s
            self.write(struct.pack(f"<{len(dims)}I", *dims), DIMS)
            rank = len(dims) if rank is None else rank
            self.write(struct.pack("<IIIII", DIMS, rank, ttype, data_ptr, data_len), TENSOR)
        elif kind == "builders":
            pairs: list[int] = []
            for name, length in s[1]:
                ptr = self.w.at.get(name, DATA)
                pairs += [ptr, len(self.w.blobs.get(name, b"")) if length is None else length]
            self.write(struct.pack(f"<{len(pairs)}I", *pairs), BUILDERS)
        elif kind == "mutate":
            _, name, offset, value = s
            blob = self.w.blobs[name]
            self.write(bytes([value]), self.w.at[name] + offset % len(blob))
        elif kind == "raw":
            self.write(s[2], s[1])
        elif kind == "grow":
            self.exports["grow"](self.store, s[1])
        elif kind == "happy":
            self._happy(s[1], s[2])

    def _happy(self, source: str, n: int) -> None:
        steps: list[tuple[Any, ...]] = []
        if source == "preload":
            steps.append(("call", "load_by_name", (NAME, 7, OUTS)))
        else:
            blobs = {"onnx": [("onnx", None)], "tflite": [("tflite", None)], "openvino": [("xml", None), ("bin", None)]}
            encoding = {"onnx": 1, "tflite": 4, "openvino": 0}[source]
            steps.append(("builders", blobs[source]))
            steps.append(("call", "load", (BUILDERS, len(blobs[source]), encoding, 0, OUTS)))
        steps += [
            ("call", "init_execution_context", ("graph", OUTS + 4)),
            ("tensor", [1, 4], 1, 16, DATA, None),
            ("call", "set_input", ("ctx", 0, TENSOR)),
            ("call", "compute", ("ctx",)),
            ("call", "get_output", ("ctx", 0, OUTPUT, 12, OUTS + 8)),
        ]
        for s in steps[: n + (source != "preload")]:
            self.step(s)

    def still_serves(self) -> None:
        """A fresh context on the preload, the right answer (the steps may have used up the budgets: the guest
        frees what it made first, as a guest that got too_large would)."""
        for handle in range(32):
            self.call("finalize_execution_context", handle)
        self.write(b"default", NAME)
        assert self.call("load_by_name", NAME, 7, OUTS) == 0
        graph = struct.unpack("<I", self.read(OUTS, 4))[0]
        assert self.call("init_execution_context", graph, OUTS + 4) == 0
        ctx = struct.unpack("<I", self.read(OUTS + 4, 4))[0]
        x = np.array([0.5, -1, 2, 3], np.float32)
        self.write(struct.pack("<2I", 1, 4), DIMS)
        self.write(x.tobytes(), DATA)
        self.write(struct.pack("<5I", DIMS, 2, 1, DATA, 16), TENSOR)
        assert self.call("set_input", ctx, 0, TENSOR) == 0
        assert self.call("compute", ctx) == 0
        assert self.call("get_output", ctx, 0, OUTPUT, 64, OUTS + 8) == 0
        got = np.frombuffer(self.read(OUTPUT, 12), "<f4")
        np.testing.assert_allclose(got, tiny_expected(x)[0], rtol=1e-6)


@pytest.fixture(scope="module")
def loud() -> Any:
    handler = _Loud()
    logger = logging.getLogger("edgewasm.nn")
    logger.addHandler(handler)
    nn_host._ratelog.reset()
    yield handler
    logger.removeHandler(handler)


def _allowed(record: logging.LogRecord) -> bool:
    return record.levelno == logging.WARNING and "refused a guest model" in record.getMessage()


@FUZZ
@given(steps=st.lists(step, min_size=6, max_size=40))
def test_host_functions_under_arbitrary_steps(world: World, loud: _Loud, steps: list[tuple[Any, ...]]) -> None:
    loud.records.clear()
    inst = Instance(world)
    for s in steps:
        inst.step(s)
    inst.still_serves()
    bad = [r for r in loud.records if not _allowed(r)]
    assert not bad, [r.getMessage() for r in bad]
    world.nn.release(inst.store)


# -- the production path: scripts through Guest.run, under a timeout --------------------------------------------------

script_call = st.tuples(st.integers(0, 10), st.tuples(*[st.one_of(st.integers(0, 8), u32)] * 5))


@settings(FUZZ, max_examples=max(EXAMPLES // 10, 30))
@given(calls=st.lists(script_call, max_size=16))
def test_scripts_through_the_cli_path(world: World, loud: _Loud, calls: list[tuple[int, tuple[int, ...]]]) -> None:
    """The same host behind `Guest.run` (Instance, deadline hook, budgets from NnLimits), arbitrary call tables."""
    loud.records.clear()
    guest = _script_guest()
    s = Script()
    s.put(tiny_onnx())
    s.put(b"default")
    for fn, args in calls:
        s.call(fn if fn != 9 else 0, *args)  # no memory.grow of arbitrary sizes
    results, _ = s.decode(guest.run(s.encode()).stdout)
    assert all(r in ERRNOS or r == 0xFFFF for r in results), results
    tail = Script()
    name = tail.put(b"default")
    x = tail.tensor([1, 4], F32, np.ones(4, np.float32).tobytes())
    tail.call(LOAD_BY_NAME, name, 7, tail.space(4))
    tail.call(INIT, 0, tail.space(4))
    tail.call(SET_INPUT, 0, 0, x)
    tail.call(COMPUTE, 0)
    assert tail.decode(guest.run(tail.encode()).stdout)[0] == [0, 0, 0, 0]
    assert not [r for r in loud.records if not _allowed(r)]


_guests: dict[str, Any] = {}


def _script_guest() -> Any:
    import edgewasm

    if "g" not in _guests:
        path = Path(tempfile.mkdtemp()) / "tiny.onnx"
        path.write_bytes(tiny_onnx())
        _guests["g"] = edgewasm.load(GUEST, timeout=30, nn_preload=[f"default:ONNX:CPU:{path}"])
    return _guests["g"]
