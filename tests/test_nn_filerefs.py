"""A model from guest memory never makes the host open a file.

Each model here is real and, handed to the backend directly (as a host would have before the fix), reads a file next
to the host's working directory: ONNX external data (in an initializer, a Constant node, an If/Loop/Scan subgraph, a
sparse initializer, a function), ONNX bytes handed to OpenVINO as the "xml" builder, and so on. The guest has no
preopened directory; it must get `invalid_argument`, the secret must never reach it, and the host logs one line.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import edgewasm
from _nn_script import GUEST, ONNX, OPENVINO, TFLITE, Script, load_and_run
from edgewasm.nn import NnErrno

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

SECRET = b"TOP SECRET: the host's private key\n"
N = len(SECRET)


def _external(name: str, location: str, n: int = N) -> TensorProto:
    t = TensorProto()
    t.name = name
    t.data_type = TensorProto.UINT8
    t.dims.append(n)
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(n))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def _model(graph: onnx.GraphProto, **kw: object) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], **kw)
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _out(name: str = "y") -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.UINT8, [N])


def initializer_model(location: str) -> bytes:
    g = helper.make_graph([helper.make_node("Identity", ["W"], ["y"])], "g", [], [_out()], [_external("W", location)])
    return _model(g)


def constant_node_model(location: str) -> bytes:
    node = helper.make_node("Constant", [], ["y"], value=_external("c", location))
    return _model(helper.make_graph([node], "g", [], [_out()]))


def if_subgraph_model(location: str) -> bytes:
    branch = helper.make_graph(
        [helper.make_node("Identity", ["W"], ["y_then"])], "then", [], [_out("y_then")], [_external("W", location)]
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["Z"], ["y_else"])],
        "else",
        [],
        [_out("y_else")],
        [helper.make_tensor("Z", TensorProto.UINT8, [N], np.zeros(N, np.uint8))],
    )
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=other)
    return _model(helper.make_graph([node], "g", [], [_out()], [cond]))


def loop_subgraph_model(location: str) -> bytes:
    """Loop once; the body's Constant reads the file into a scan output."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Constant", [], ["v"], value=_external("c", location)),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _out("v")],
    )
    inits = [
        helper.make_tensor("trip", TensorProto.INT64, [], [1]),
        helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
        helper.make_tensor("shape", TensorProto.INT64, [1], [N]),
    ]
    nodes = [
        helper.make_node("Loop", ["trip", "cond"], ["scan"], body=body),
        helper.make_node("Reshape", ["scan", "shape"], ["y"]),
    ]
    return _model(helper.make_graph(nodes, "g", [], [_out()], inits))


def sparse_initializer_model(location: str) -> bytes:
    values = _external("W", location)
    indices = helper.make_tensor("W_idx", TensorProto.INT64, [N], np.arange(N))
    sparse = helper.make_sparse_tensor(values, indices, [N])
    g = helper.make_graph([helper.make_node("Identity", ["W"], ["y"])], "g", [], [_out()], sparse_initializer=[sparse])
    return _model(g)


def function_model(location: str) -> bytes:
    fn = helper.make_function(
        "local",
        "Leak",
        [],
        ["o"],
        [helper.make_node("Constant", [], ["o"], value=_external("c", location))],
        [helper.make_opsetid("", 17)],
    )
    g = helper.make_graph([helper.make_node("Leak", [], ["y"], domain="local")], "g", [], [_out()])
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)], functions=[fn]
    )
    model.ir_version = 8
    return bytes(model.SerializeToString())


ONNX_MODELS: dict[str, Callable[[str], bytes]] = {
    "initializer": initializer_model,
    "constant_node": constant_node_model,
    "if_subgraph": if_subgraph_model,
    "loop_subgraph": loop_subgraph_model,
    "sparse_initializer": sparse_initializer_model,
    "function": function_model,
}


@pytest.fixture(autouse=True)
def fresh_log_limits() -> None:
    """Refusals are logged at most once a minute; each test starts with a clean slate."""
    from edgewasm.nn import _functions as _host

    _host._ratelog.reset()


@pytest.fixture
def secret_dir(tmp_path: Path) -> Path:
    """A directory holding a secret, as a host's working directory might."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return tmp_path


def _leaks_with_plain_onnxruntime(model: bytes, cwd: Path) -> bool:
    """Whether ONNX Runtime, given these bytes as edgewasm gave them before, returns the secret."""
    ort = pytest.importorskip("onnxruntime")
    here = os.getcwd()
    os.chdir(cwd)
    try:
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        return bytes(np.asarray(session.run(None, {})[0]).tobytes()) == SECRET
    except Exception:
        return False
    finally:
        os.chdir(here)


def _run_script(script: Script, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "edgewasm", "run", str(GUEST)],
        input=script.encode(),
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=300,
    )


def test_onnx_external_data_through_the_cli_with_the_secret_in_cwd(secret_dir: Path) -> None:
    """The reported attack, end to end: `edgewasm run` with its cwd next to the secret; the guest loads a model
    whose weights are external data at "secret.txt" and reads the output."""
    model = initializer_model("secret.txt")
    assert _leaks_with_plain_onnxruntime(model, secret_dir), "the model must be a real attack on plain ONNX Runtime"
    script = Script()
    load_and_run(script, [model], ONNX, N)
    proc = _run_script(script, secret_dir)
    assert proc.returncode == 0, proc.stderr.decode()
    results, out = script.decode(proc.stdout)
    assert SECRET not in proc.stdout and out == b"\0" * N
    assert results[0] == NnErrno.INVALID_ARGUMENT
    lines = [line for line in proc.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "external data" in lines[0], lines


@pytest.mark.parametrize("kind", sorted(ONNX_MODELS))
@pytest.mark.parametrize("location", ["secret.txt", "./secret.txt", "sub/../secret.txt", "*/_ORT_MEM_ADDR_/*"])
def test_every_onnx_file_reference_is_refused(
    kind: str, location: str, secret_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (secret_dir / "sub").mkdir()
    model = ONNX_MODELS[kind](location)
    monkeypatch.chdir(secret_dir)
    script = Script()
    load_and_run(script, [model], ONNX, N)
    with edgewasm.load(GUEST) as guest, caplog.at_level(logging.DEBUG, logger="edgewasm.nn"):
        result = guest.run(script.encode())
    results, _ = script.decode(result.stdout)
    assert results[0] == NnErrno.INVALID_ARGUMENT, results
    assert SECRET not in result.stdout
    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refusals) == 1 and "external data" in refusals[0].getMessage()


def test_the_model_kinds_are_real_attacks(secret_dir: Path) -> None:
    """Without the check, ONNX Runtime reads the secret through every one of these."""
    leaking = {
        kind for kind, make in ONNX_MODELS.items() if _leaks_with_plain_onnxruntime(make("secret.txt"), secret_dir)
    }
    assert leaking == set(ONNX_MODELS)


def test_a_self_contained_model_still_loads() -> None:
    from _nn_support import tiny_onnx

    script = Script()
    arr, n = script.builders([tiny_onnx()])
    script.call(0, arr, n, ONNX, 0, script.space(4))
    with edgewasm.load(GUEST) as guest:
        results, _ = script.decode(guest.run(script.encode()).stdout)
    assert results == [0]


def test_ort_format_models_are_refused() -> None:
    """An ORT-format flatbuffer (identifier "ORTM") is not an ONNX protobuf the check can read: refused."""
    blob = b"\x1c\x00\x00\x00ORTM" + b"\0" * 64
    script = Script()
    arr, n = script.builders([blob])
    script.call(0, arr, n, ONNX, 0, script.space(4))
    with edgewasm.load(GUEST) as guest:
        results, _ = script.decode(guest.run(script.encode()).stdout)
    assert results == [NnErrno.INVALID_ARGUMENT]


# -- OpenVINO ---------------------------------------------------------------------------------------------------------


def test_openvino_refuses_onnx_bytes_as_the_xml_builder(
    secret_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """OpenVINO's read_model(str, Tensor) hands the text to every frontend: its ONNX frontend takes ONNX bytes and
    resolves their external data against the cwd. Only IR XML is accepted as the first builder."""
    ov = pytest.importorskip("openvino")
    model = initializer_model("secret.txt")
    text = model.decode("utf-8")  # this model is valid UTF-8, as an attacker would make it
    monkeypatch.chdir(secret_dir)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model=text, weights=ov.Tensor(np.zeros(1, np.uint8))), "CPU")
    request = compiled.create_infer_request()
    request.infer()
    assert bytes(request.get_output_tensor(0).data) == SECRET, "the attack must work on plain OpenVINO"

    script = Script()
    load_and_run(script, [model, b"\0"], OPENVINO, N)
    with edgewasm.load(GUEST) as guest, caplog.at_level(logging.DEBUG, logger="edgewasm.nn"):
        result = guest.run(script.encode())
    results, _ = script.decode(result.stdout)
    assert results[0] == NnErrno.INVALID_ARGUMENT
    assert SECRET not in result.stdout
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 1


def test_openvino_ir_still_loads_from_guest_bytes(tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino")
    from _nn_support import tiny_onnx

    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(tiny_onnx())
    ov.save_model(ov.convert_model(str(onnx_path)), str(tmp_path / "tiny.xml"))
    xml, weights = (tmp_path / "tiny.xml").read_bytes(), (tmp_path / "tiny.bin").read_bytes()
    script = Script()
    arr, n = script.builders([xml, weights])
    script.call(0, arr, n, OPENVINO, 0, script.space(4))
    # the same IR with the rt_info key OpenVINO's weightless cache reads a weights path from: refused
    tampered = xml.replace(b"<rt_info>", b'<rt_info><__weights_path value="secret.bin" />', 1)
    assert tampered != xml
    arr2, n2 = script.builders([tampered, weights])
    script.call(0, arr2, n2, OPENVINO, 0, script.space(4))
    with edgewasm.load(GUEST) as guest:
        results, _ = script.decode(guest.run(script.encode()).stdout)
    assert results == [0, NnErrno.INVALID_ARGUMENT]


# -- LiteRT -----------------------------------------------------------------------------------------------------------


def test_tflite_custom_ops_and_external_buffers_are_refused() -> None:
    """A custom op (Flex ops are custom ops that run TensorFlow kernels such as ReadFile when a Flex delegate is
    in the process) or an external buffer (weights in a named file) in a guest-supplied flatbuffer: refused."""
    pytest.importorskip("ai_edge_litert")
    from _nn_support import tiny_tflite

    plain, _, _ = tiny_tflite("float32")
    script = Script()
    for blob in (plain, tiny_tflite("float32", "custom_op")[0], tiny_tflite("float32", "external_buffer")[0]):
        arr, n = script.builders([blob])
        script.call(0, arr, n, TFLITE, 0, script.space(4))
    with edgewasm.load(GUEST) as guest:
        results, _ = script.decode(guest.run(script.encode()).stdout)
    assert results == [0, NnErrno.INVALID_ARGUMENT, NnErrno.INVALID_ARGUMENT]


def test_preloads_stay_trusted(tmp_path: Path) -> None:
    """A model the user preloads from a file may use external data next to it (the user chose the file)."""
    weights = np.arange(N, dtype=np.uint8)
    (tmp_path / "weights.bin").write_bytes(weights.tobytes())
    (tmp_path / "model.onnx").write_bytes(initializer_model("weights.bin"))
    script = Script()
    name = script.put(b"default")
    graph, ctx, written, buf = script.space(4), script.space(4), script.space(4), script.space(N)
    script.call(1, name, 7, graph)
    script.call(3, 0, ctx)
    script.call(5, 0)
    script.call(6, 0, 0, buf, N, written)
    script.output(buf, N)
    with edgewasm.load(GUEST, nn_preload=[f"default:ONNX:CPU:{tmp_path / 'model.onnx'}"]) as guest:
        results, out = script.decode(guest.run(script.encode()).stdout)
    assert results == [0, 0, 0, 0]
    assert out == weights.tobytes()


# -- the walk itself --------------------------------------------------------------------------------------------------


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    size, n = b"", len(payload)
    while True:
        size += bytes([(n & 0x7F) | (0x80 if n >> 7 else 0)])
        n >>= 7
        if not n:
            break
    return bytes([number << 3 | 2]) + size + payload


@pytest.mark.parametrize(
    ("blob", "errno"),
    [
        (_field(7, _field(5, b"\x70\x01")), NnErrno.INVALID_ARGUMENT),  # graph > initializer > data_location 1
        (_field(7, _field(5, b"\x70\x00")), None),  # data_location DEFAULT is fine
        (_field(7, _field(1, _field(5, _field(6, _field(5, _field(13, b"")))))), NnErrno.INVALID_ARGUMENT),
        (_field(7, _field(5, b"\x0b")), NnErrno.RUNTIME_ERROR),  # a group: fails closed
        (_field(7, b"\x2a\xff\xff\xff\xff\x0f"), NnErrno.RUNTIME_ERROR),  # a length past the end
        (_field(14, _field(1, b"ort_config")), NnErrno.INVALID_ARGUMENT),
        (_field(7, _field(1, _field(4, b"EPContext"))), NnErrno.INVALID_ARGUMENT),
        (b"\x00", NnErrno.RUNTIME_ERROR),  # field number 0
    ],
)
def test_the_walk(blob: bytes, errno: NnErrno | None) -> None:
    from edgewasm.nn import NnError
    from edgewasm.nn.backends._onnxrefs import check_self_contained

    if errno is None:
        check_self_contained(blob)
        return
    with pytest.raises(NnError) as err:
        check_self_contained(blob)
    assert err.value.errno == errno


def test_the_walk_fails_closed_on_deep_nesting_without_recursion() -> None:
    from edgewasm.nn import NnError
    from edgewasm.nn.backends._onnxrefs import check_self_contained

    blob = b""
    for _ in range(5000):  # graph > node > attribute > graph > ...: far past any recursion limit
        blob = _field(6, _field(1, _field(5, blob)))
    with pytest.raises(NnError) as err:
        check_self_contained(_field(7, _field(1, _field(5, blob))))
    assert err.value.errno == NnErrno.RUNTIME_ERROR and "nested" in str(err.value)


def test_the_walk_stops_at_the_deadline() -> None:
    """Millions of tiny fields cost the walk seconds of host time: it stops when the guest call's time is up."""
    from edgewasm import _deadline
    from edgewasm.nn import NnError
    from edgewasm.nn.backends._onnxrefs import check_self_contained

    blob = _field(7, _field(5, b"\x10\x01" * (4 << 20)))
    outer = _deadline.enter(0.0)
    try:
        with pytest.raises(NnError, match="deadline"):
            check_self_contained(blob)
    finally:
        _deadline.leave(outer)
