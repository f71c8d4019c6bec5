"""The serve package's pieces in-process: the OIP wire format, the mapping both ways, configuration, statuses."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

import edgewasm
from edgewasm.serve import config, errors, mapping, tensors

WASM = Path(__file__).resolve().parent.parent / "wasm"


def roundtrip(request: dict[str, object], binary: bool) -> dict[str, object]:
    """Client encoding -> server parsing -> guest map (what the server hands the guest)."""
    inputs, params = mapping.request_tensors(request)
    names = {t.name for t in inputs if t.content_type != "json"} if binary else set()
    body, length = tensors.write_body({"parameters": params}, "inputs", inputs, names)
    header, rest = tensors.split_body(body, None if length is None else str(length))
    return mapping.guest_request(tensors.read_tensors(header["inputs"], rest), header["parameters"])


@pytest.mark.parametrize("binary", [True, False])
def test_request_mapping_round_trip(binary: bool) -> None:
    request = {
        "a": np.arange(6, dtype=np.int16).reshape(2, 3),
        "h": np.array([0.5], dtype=np.float16),
        "b": b"\x00\xfe",
        "s": "str",
        "n": 4,
        "nested": [1, {"x": b"\x01"}],
    }
    got = roundtrip(request, binary)
    assert got.keys() == request.keys()
    assert got["a"].dtype == np.int16 and np.array_equal(got["a"], request["a"])  # type: ignore[union-attr]
    assert got["h"].dtype == np.float16  # type: ignore[union-attr]
    assert got["b"] == b"\x00\xfe" and got["s"] == "str" and got["n"] == 4
    assert got["nested"] == [1, {"x": b"\x01"}]


def test_response_mapping_round_trip() -> None:
    reply = {
        "arr": np.ones((2, 2), np.float32),
        "one": np.array([7], np.int32),
        "i": 3,
        "f": 0.5,
        "t": True,
        "s": "x",
        "b": b"\xff",
        "l": ["a", "b"],
        "d": {"k": None},
        "huge": 1 << 70,
    }
    for binary in (True, False):
        outs = mapping.output_tensors(reply, None)
        names = {t.name for t in outs} if binary else set()
        body, length = tensors.write_body({"model_name": "m"}, "outputs", outs, names)
        head, rest = tensors.split_body(body, None if length is None else str(length))
        back = {t.name: mapping.response_value(t) for t in tensors.read_tensors(head["outputs"], rest, "output")}
        assert isinstance(back["one"], np.ndarray) and back["one"].shape == (1,)  # an array stays an array
        assert back["i"] == 3 and back["f"] == 0.5 and back["t"] is True and back["s"] == "x" and back["b"] == b"\xff"
        assert back["l"] == ["a", "b"] and back["d"] == {"k": None} and back["huge"] == 1 << 70
        assert np.array_equal(back["arr"], reply["arr"])


def test_reserved_parameters_and_collisions() -> None:
    t = tensors.Tensor("x", "INT8", [1], np.array([1], np.int8))
    assert mapping.guest_request([t], {"binary_data_output": True, "timeout": 5, "top_k": 2}).keys() == {"x", "top_k"}
    with pytest.raises(errors.BadRequest, match="both an input and a parameter"):
        mapping.guest_request([t], {"x": 1})


def test_non_finite_floats_stay_floats_in_binary() -> None:
    outs = [mapping.output_tensor("v", np.array([np.nan, np.inf], np.float32))]
    body, length = tensors.write_body({}, "outputs", outs, {"v"})
    assert length is not None
    assert np.isnan(np.frombuffer(body[length:], np.float32)[0])


def test_status_of_every_error() -> None:
    cases = [
        (edgewasm.GuestError("bad_request", "m"), 400, "bad_request"),
        (edgewasm.GuestError("decode", "m"), 422, "decode"),
        (edgewasm.GuestTimeout("t"), 504, "timeout"),
        (edgewasm.GuestOutOfMemory("o"), 500, "out_of_memory"),
        (edgewasm.GuestOutOfFuel("o"), 500, "out_of_fuel"),
        (edgewasm.GuestTrap("t", trap_code="UNREACHABLE"), 500, "trap"),
        (edgewasm.AbiError("a"), 500, "abi"),
        (edgewasm.RequestError("r"), 400, "bad_request"),
        (errors.QueueFull("q"), 503, "queue_full"),
        (errors.DeadlineExceeded("d"), 504, "deadline_exceeded"),
        (errors.BodyTooLarge("b"), 413, "too_large"),
    ]
    for exc, status, kind in cases:
        assert errors.status_and_kind(exc) == (status, kind), exc
    body = errors.error_body(edgewasm.GuestTrap("line one\nline two", trap_code="UNREACHABLE"))
    assert body["error"] == "line one line two" and body["trap_code"] == "UNREACHABLE"


def test_a_model_config_options_are_what_load_takes(tmp_path: Path) -> None:
    options = edgewasm.GuestOptions(timeout=2.0, memory_limit="64MiB", env={"A": "1"}, dirs=[f"{tmp_path}::/data"])
    c = config.ModelConfig(name="e", module=WASM / "echo.wat", options=options)
    assert c.timeout == 2.0
    guest = edgewasm.load(c.module, options=c.options)
    try:
        assert guest.infer({"x": 1}) == {"x": 1}
    finally:
        guest.close()


def test_repository_folder(tmp_path: Path) -> None:
    (tmp_path / "m" / "data").mkdir(parents=True)
    (tmp_path / "m" / "guest.wat").write_text((WASM / "echo.wat").read_text())
    (tmp_path / "m" / "model.toml").write_text('dirs = ["data::/data"]\ntimeout = 0\nenv = { K = "v" }\n')
    (c,) = config.read_repository(tmp_path)
    assert c.name == "m" and c.module.name == "guest.wat" and c.timeout is None
    assert c.options.dirs == (edgewasm.Mount(tmp_path / "m" / "data", "/data"),) and c.options.env == (("K", "v"),)
    (tmp_path / "m" / "other.wasm").write_bytes(b"")
    with pytest.raises(config.ConfigError, match="2 modules"):
        config.read_repository(tmp_path)


def test_module_arguments() -> None:
    assert config.parse_module_arg("wasm/echo.wat") == ("echo", Path("wasm/echo.wat"))
    assert config.parse_module_arg("e=wasm/echo.wat") == ("e", Path("wasm/echo.wat"))
    with pytest.raises(config.ConfigError, match="bad model name"):
        config.ModelConfig(name="-x", module=WASM / "echo.wat").checked()


def test_the_listening_socket_is_tcp_so_asyncio_turns_nagle_off() -> None:
    # A socket made with proto 0 gives accepted sockets proto 0, and asyncio then leaves Nagle on: every response's
    # body waited ~40 ms for a delayed ACK of its headers (a bug the benchmark found).
    from edgewasm.serve.server import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        client = socket.create_connection(sock.getsockname())
        conn, _ = sock.accept()
        assert conn.proto == socket.IPPROTO_TCP
        conn.close()
        client.close()
    finally:
        sock.close()


def test_openapi_document_is_json() -> None:
    from edgewasm.serve.openapi import openapi_document

    doc = json.loads(json.dumps(openapi_document()))
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert "200" in op["responses"], path


def test_deeply_nested_requests_are_400_not_internal_errors() -> None:
    # json.loads raises RecursionError (not ValueError) on deep nesting; it was an internal error with a traceback.
    from edgewasm.serve.inference import call_native, infer_oip

    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(errors.BadRequest, match="nested too deeply"):
        infer_oip(None, deep, None, "m", "1", "rid")  # type: ignore[arg-type]
    with pytest.raises(errors.BadRequest, match="nested too deeply"):
        call_native(None, deep, "application/json", "")  # type: ignore[arg-type]


def test_a_guest_cannot_grow_the_metrics_without_bound() -> None:
    from edgewasm.serve.metrics import MAX_STAGES, Metrics

    m = Metrics().model("m", "1")
    kept = [m.stage(f"s{i}") for i in range(MAX_STAGES + 50)]
    assert sum(s is not None for s in kept) == MAX_STAGES
    assert m.stage("s0") is kept[0] and m.stage("has space") is None


def test_a_signal_during_a_log_write_still_stops_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SIGTERM/SIGINT drain flake (a server alive 60 s after the signal): the signal handler logged, the signal
    # had interrupted the main thread inside a write of the access log to stderr, and the reentrant write raised
    # out of the handler before uvicorn was told to stop. Here the stream delivers the signal inside its write.
    import io
    import logging
    import signal
    import types

    import uvicorn

    from edgewasm.serve import server

    class Stream(io.StringIO):
        busy = False
        deliver = True

        def write(self, s: str) -> int:
            if self.busy:
                raise RuntimeError("reentrant call inside <stderr>")
            self.busy = True
            try:
                if self.deliver:
                    self.deliver = False
                    srv.handle_exit(signal.SIGTERM, None)
                return super().write(s)
            finally:
                self.busy = False

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    stream = Stream()
    monkeypatch.setattr("sys.stderr", stream)  # logging's own error report goes here too, as in the server
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("edgewasm.serve")
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.addHandler(handler)
    try:
        srv = server._Server(uvicorn.Config(app))
        srv.service = types.SimpleNamespace(draining=False, server=types.SimpleNamespace(grace=1.0))  # type: ignore[assignment]
        logging.getLogger("edgewasm.serve.access").info("GET /metrics 200 0.9 ms")
    finally:
        logger.removeHandler(handler)
    assert srv.should_exit and srv.stopping.is_set() and srv.service.draining
    assert stream.getvalue() == "GET /metrics 200 0.9 ms\n"  # nothing written from inside the handler


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [], "id": "\xc3\xa9t\xc3\xa9"}',
        b'{"a": NaN, "b": -Infinity, "c": 1e400}',  # the standard library's extensions, kept
        b'{"big": 123456789012345678901234567890, "neg": -9999999999999999999}',  # orjson: floats; json: exact
        b"18446744073709551616",
        b'{"c": 1e400, "f": [0.1, 2.2250738585072011e-308, 4.9e-324, 0.0012345678901234567891, 1.5e300]}',
        b'{"s": "\\ud800"}',  # a lone surrogate: orjson refuses, json reads it
        b'\xff\xfe{\x00}\x00',  # UTF-16 with a byte-order mark
        b'{"a": 1, "a": 2}',
    ],
)
def test_the_fast_json_reader_accepts_what_json_accepts(body: bytes) -> None:
    got, want = tensors.loads(body), json.loads(body)
    assert repr(got) == repr(want)  # (types too: 10**30 is not 1e30; and NaN != NaN, so compare the text)


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": 1,}', b"[1] x", b'{"a": "\x01"}', b"\xff"])
def test_the_fast_json_reader_refuses_with_the_message_json_gives(body: bytes) -> None:
    with pytest.raises((ValueError, UnicodeDecodeError)) as want:
        json.loads(body)
    with pytest.raises(errors.BadRequest) as got:
        tensors.split_body(body, None)
    assert str(want.value) in str(got.value)


def test_the_fast_json_writer_writes_the_same_values_and_nan_as_before() -> None:
    head = {"model_name": "m", "model_version": "1", "id": "r\u00e9"}
    outs = [
        mapping.output_tensor("f", np.array([0.1, 1e300, -0.0], np.float64)),
        mapping.output_tensor("i", np.array([[1, -2]], np.int64)),
        mapping.output_tensor("s", "caf\u00e9 \u2603"),
        mapping.output_tensor("b", b"\x00\xff"),
        mapping.output_tensor("j", {"nested": [1, 2.5, None]}),
    ]
    body, length = tensors.write_body(head, "outputs", outs, set())
    assert length is None
    reference = json.JSONEncoder(separators=(",", ":"), allow_nan=True).encode
    items = json.loads(body)["outputs"]
    assert json.loads(body) == json.loads(reference({**head, "outputs": items}))
    assert items[0]["data"] == [0.1, 1e300, -0.0] and items[2]["data"] == ["caf\u00e9 \u2603"]
    # NaN and infinity: orjson would write null; the standard library's NaN/Infinity are kept, as before.
    body, _ = tensors.write_body(head, "outputs", [mapping.output_tensor("v", np.array([np.nan, np.inf]))], set())
    assert b"[NaN,Infinity]" in body
    body, _ = tensors.write_body({"parameters": {"x": float("-inf")}}, "inputs", [], set())
    assert body == b'{"parameters":{"x":-Infinity},"inputs":[]}'


def test_the_batched_request_histogram_renders_as_observe_would() -> None:
    """`ModelMetrics.succeeded` counts buckets itself and adds them when /metrics is read (prometheus-client's
    `observe` takes two locks per request): the rendered series must equal observe's, bounds included."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from edgewasm.serve.metrics import BUCKETS, Metrics

    seconds = [0.0, 0.0004, 0.001, 0.0010001, 0.0025, 0.7, 1.0, 29.0, 30.0, 31.0, 1e9]
    metrics = Metrics()
    m = metrics.model("m", "1")
    for s in seconds[:5]:
        m.succeeded(s, 0.0, 0.0, 0.0)
    metrics.render()  # a scrape between requests: nothing is counted twice
    for s in seconds[5:]:
        m.succeeded(s, 0.0, 0.0, 0.0)
    metrics.answered("infer", 200)
    metrics.answered("infer", 200)
    metrics.answered("call", 404)
    text = metrics.render().decode()

    registry = CollectorRegistry()
    reference = Histogram(
        "edgewasm_inference_request_duration_seconds", "x", ("model", "version"), registry=registry, buckets=BUCKETS
    )
    for s in seconds:
        reference.labels("m", "1").observe(s)
    want = [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]
    got = [line for line in text.splitlines() if line.startswith("edgewasm_inference_request_duration_seconds")]
    assert got == want
    assert 'edgewasm_http_requests_total{route="infer",status="200"} 2.0' in text
    assert 'edgewasm_http_requests_total{route="call",status="404"} 1.0' in text
    assert f'edgewasm_inference_count_total{{model="m",version="1"}} {float(len(seconds))}' in text


def test_request_ids_are_32_hex_digits_and_distinct() -> None:
    from edgewasm.serve.middleware import new_request_id

    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
