"""`edgewasm serve` as a client sees it: one real server process with a model repository, real HTTP clients
(httpx, tritonclient, edgewasm.Client), the real cat photo through both classifiers, and misbehaving guests."""

from __future__ import annotations

import base64
import concurrent.futures
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pytest
from tests._model_fixtures import model_store  # noqa: F401
from tests._serve_support import CAT, CAT_CLASSES, ROOT, WASM, Server, metric

import edgewasm

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
BODY_LIMIT = 4 << 20


def write_repository(root: Path, with_nn: bool) -> Path:
    models = {
        "classifier": f'module = "{WASM / "classifier.wasm"}"\ntask = "image-classification"\n'
        'description = "pure"\ninstances = 2\ntimeout = 20\n',
        "echo": f'module = "{WASM / "echo.wat"}"\nversion = "7"\ninstances = 2\ntimeout = 5\n',
        "spin": f'module = "{WASM / "spin.wat"}"\ninstances = 1\nqueue = 1\ntimeout = 0.4\n',
        "trap": f'module = "{WASM / "trap.wat"}"\ninstances = 1\n',
        "grow": f'module = "{WASM / "grow.wat"}"\ninstances = 1\nmemory_limit = "16MiB"\n',
    }
    if with_nn:
        models["wasinn"] = (
            f'module = "{WASM / "wasinn_classifier.wasm"}"\ntask = "image-classification"\n'
            'nn_preload = ["efficientnet-lite0"]\ninstances = 2\ntimeout = 20\n'
        )
    for name, text in models.items():
        (root / name).mkdir(parents=True)
        (root / name / "model.toml").write_text(text)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[Server]:  # noqa: F811
    repo = write_repository(tmp_path_factory.mktemp("repo"), HAS_ORT)
    cache = tmp_path_factory.mktemp("serve-cache")
    srv = Server(
        ["--repository", str(repo), "--max-body-size", str(BODY_LIMIT)],
        cache_dir=cache,
        env={"EDGEWASM_MODELS": str(model_store)},
    )
    srv.start()
    yield srv
    assert srv.stop() == 0
    assert srv.tracebacks() == [], "\n".join(srv.lines)


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def classifiers() -> list[str]:
    return ["classifier", "wasinn"] if HAS_ORT else ["classifier"]


# -- health and metadata -----------------------------------------------------------------------------------------------


def test_health_and_server_metadata(http: httpx.Client) -> None:
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    meta = http.get("/v2").json()
    assert meta["name"] == "edgewasm" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_versions_and_readiness(http: httpx.Client) -> None:
    meta = http.get("/v2/models/classifier").json()
    assert meta["platform"] == "edgewasm" and meta["versions"] == ["1"]
    assert {"name": "image", "datatype": "BYTES", "shape": [1]} in meta["inputs"]
    assert {"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, 3]} in meta["inputs"]
    assert {t["name"] for t in meta["outputs"]} >= {"label", "class_id", "confidence", "top_k", "stages_ms"}
    assert http.get("/v2/models/echo/versions/7").json()["versions"] == ["7"]
    assert http.get("/v2/models/echo/versions/7/ready").json() == {"name": "echo", "ready": True}
    r = http.get("/v2/models/echo/versions/1")
    assert r.status_code == 404 and "version" in r.json()["error"]
    r = http.get("/v2/models/nope/ready")
    assert r.status_code == 404 and r.json()["kind"] == "not_found"
    index = http.post("/v2/repository/index").json()
    assert {m["name"]: m["state"] for m in index}["classifier"] == "READY"


def test_unknown_route_and_method_answer_json(http: httpx.Client) -> None:
    r = http.get("/v2/nothing/here")
    assert r.status_code == 404 and "error" in r.json()
    r = http.get("/v2/models/echo/infer")
    assert r.status_code == 405 and "error" in r.json()


# -- OIP with JSON tensors ---------------------------------------------------------------------------------------------


def test_json_tensors_reach_the_guest_and_come_back(http: httpx.Client) -> None:
    req = {
        "id": "req-1",
        "parameters": {"top_k": 3, "binary_data_output": False},
        "inputs": [
            {"name": "pixels", "datatype": "UINT8", "shape": [2, 2, 3], "data": list(range(12))},
            {"name": "weights", "datatype": "FP32", "shape": [2], "data": [[0.5], [1.5]]},
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["héllo"]},
            {"name": "blob", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(b"\x00\xff").decode()],
             "parameters": {"content_type": "base64"}},
            {"name": "flags", "datatype": "BOOL", "shape": [2], "data": [True, False]},
        ],
    }  # fmt: skip
    r = http.post("/v2/models/echo/infer", json=req)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "echo" and body["model_version"] == "7" and body["id"] == "req-1"
    out = {o["name"]: o for o in body["outputs"]}
    assert out["pixels"] == {"name": "pixels", "datatype": "UINT8", "shape": [2, 2, 3], "data": list(range(12)),
                             "parameters": {"content_type": "np"}}  # fmt: skip
    assert out["weights"]["datatype"] == "FP32" and out["weights"]["data"] == [0.5, 1.5]
    assert out["text"]["data"] == ["héllo"]
    assert out["blob"]["parameters"]["content_type"] == "base64"
    assert base64.b64decode(out["blob"]["data"][0]) == b"\x00\xff"
    assert out["flags"]["data"] == [True, False]
    assert out["top_k"] == {"name": "top_k", "datatype": "INT64", "shape": [1], "data": [3]}
    assert "binary_data_output" not in out  # protocol parameters do not reach the guest


def test_requested_outputs_only(http: httpx.Client) -> None:
    req = {"inputs": [{"name": "a", "datatype": "INT32", "shape": [1], "data": [1]},
                      {"name": "b", "datatype": "INT32", "shape": [1], "data": [2]}],
           "outputs": [{"name": "b"}]}  # fmt: skip
    body = http.post("/v2/models/echo/infer", json=req).json()
    assert [o["name"] for o in body["outputs"]] == ["b"]
    req["outputs"] = [{"name": "zzz"}]
    r = http.post("/v2/models/echo/infer", json=req)
    assert r.status_code == 400 and "zzz" in r.json()["error"]


@pytest.mark.parametrize(
    ("req", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "object"),
        (json.dumps({"inputs": [{"name": "x", "datatype": "INT8", "shape": [2], "data": [1]}]}).encode(), "elements"),
        (json.dumps({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [300]}]}).encode(), "range"),
        (json.dumps({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1.5]}]}).encode(), "INT8"),
        (json.dumps({"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}).encode(), "datatype"),
        (json.dumps({"inputs": [{"name": "x", "datatype": "INT8", "shape": [-1], "data": [1]}]}).encode(), "shape"),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "x",
                            "datatype": "BYTES",
                            "shape": [1],
                            "data": ["%%"],
                            "parameters": {"content_type": "base64"},
                        }
                    ]
                }
            ).encode(),
            "base64",
        ),
        (json.dumps({"inputs": "x"}).encode(), "list"),
    ],
)
def test_protocol_errors_are_400_with_one_line(http: httpx.Client, req: bytes, words: str) -> None:
    r = http.post("/v2/models/echo/infer", content=req, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert words in r.json()["error"] and "\n" not in r.json()["error"]


# -- the binary tensor data extension ----------------------------------------------------------------------------------


def test_binary_extension_by_hand(http: httpx.Client) -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    elements = [b"\x00\x01bin", b"text"]
    raw_bytes = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    header = json.dumps({
        "inputs": [
            {"name": "m", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": arr.nbytes}},
            {"name": "b", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw_bytes)}},
        ],
        "outputs": [{"name": "m", "parameters": {"binary_data": True}},
                    {"name": "b", "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    r = http.post(
        "/v2/models/echo/infer",
        content=header + arr.tobytes() + raw_bytes,
        headers={"Inference-Header-Content-Length": str(len(header)), "content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:n])
    rest = r.content[n:]
    m, b = head["outputs"]
    assert m["parameters"]["binary_data_size"] == 24 and "data" not in m
    assert np.array_equal(np.frombuffer(rest[:24], np.float32).reshape(2, 3), arr)
    # Two BYTES elements reach the guest as a list of two bytes; a list comes back as one JSON element.
    assert b["datatype"] == "BYTES" and b["shape"] == [1] and b["parameters"]["content_type"] == "json"
    (text,) = [rest[28:]] if int.from_bytes(rest[24:28], "little") == len(rest) - 28 else [b""]
    assert json.loads(text) == [{"$base64": base64.b64encode(elements[0]).decode()},
                                {"$base64": base64.b64encode(elements[1]).decode()}]  # fmt: skip


@pytest.mark.parametrize(
    ("header_len", "extra", "words"),
    [("abc", b"", "integer"), ("99999", b"", "body has"), (None, b"xx", "after the last")],
)
def test_binary_extension_errors(http: httpx.Client, header_len: str | None, extra: bytes, words: str) -> None:
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "INT8", "shape": [2], "parameters": {"binary_data_size": 2}}]}
    ).encode()
    body = header + b"\x01\x02" + extra
    r = http.post(
        "/v2/models/echo/infer",
        content=body,
        headers={"Inference-Header-Content-Length": header_len or str(len(header))},
    )
    assert r.status_code == 400 and words in r.json()["error"]


@pytest.mark.parametrize("model", classifiers())
def test_tritonclient_classifies_the_cat(server: Server, model: str) -> None:
    th = pytest.importorskip("tritonclient.http")
    client = th.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
    meta = client.get_model_metadata(model)
    assert meta["name"] == model
    image = th.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([CAT.read_bytes()], dtype=np.object_), binary_data=True)
    result = client.infer(model, [image], parameters={"top_k": 3})  # binary outputs, the client's default
    assert result.as_numpy("label")[0] in (b"tiger cat", b"tabby, tabby cat", b"Egyptian cat")
    assert int(result.as_numpy("class_id")[0]) in CAT_CLASSES
    assert 0 < float(result.as_numpy("confidence")[0]) <= 1
    top = json.loads(result.as_numpy("top_k")[0])
    assert len(top) == 3 and top[0]["class_id"] == int(result.as_numpy("class_id")[0])
    assert set(json.loads(result.as_numpy("stages_ms")[0])) >= {"decode", "preprocess", "inference"}
    # Pixels as a binary UINT8 tensor, one output asked for in JSON.
    from PIL import Image

    pixels = np.asarray(Image.open(CAT).convert("RGB"))
    px = th.InferInput("pixels", list(pixels.shape), "UINT8")
    px.set_data_from_numpy(pixels, binary_data=True)
    out = th.InferRequestedOutput("class_id", binary_data=False)
    result = client.infer(model, [px], outputs=[out])
    assert int(result.as_numpy("class_id")[0]) in CAT_CLASSES
    assert result.get_response()["outputs"][0]["data"][0] in CAT_CLASSES


def test_tritonclient_sees_errors(server: Server) -> None:
    th = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    client = th.InferenceServerClient(server.url.removeprefix("http://"))
    bad = th.InferInput("image", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="decode"):
        client.infer("classifier", [bad])
    with pytest.raises(InferenceServerException, match="no model"):
        client.infer("nope", [bad])


# -- the Python client -------------------------------------------------------------------------------------------------


def test_client_answers_what_the_local_guest_answers(server: Server) -> None:
    request = {
        "pixels": np.arange(24, dtype=np.uint8).reshape(2, 4, 3),
        "f16": np.array([1.5, -2.0], dtype=np.float16),
        "i64": np.array([[1, -2]], dtype=np.int64),
        "blob": b"\x00\x01\x02",
        "name": "edge",
        "n": 3,
        "x": 0.25,
        "on": True,
        "nested": {"a": [1, 2, {"b": b"\xff"}], "c": None},
        "items": ["a", "b"],
    }
    local = edgewasm.load(WASM / "echo.wat").infer(request)
    with edgewasm.Client(server.url) as client:
        remote = client.infer("echo", request)
        assert client.ready() and client.metadata("echo")["versions"] == ["7"]
    assert remote.keys() == local.keys()
    for key, value in local.items():
        if isinstance(value, np.ndarray):
            assert remote[key].dtype == value.dtype and np.array_equal(remote[key], value), key
        else:
            assert remote[key] == value and type(remote[key]) is type(value), key


@pytest.mark.parametrize("model", classifiers())
def test_client_classifies_the_cat(server: Server, model: str) -> None:
    with edgewasm.Client(server.url) as client:
        reply = client.infer(model, {"image": CAT.read_bytes(), "top_k": 2})
        assert reply["class_id"] in CAT_CLASSES and len(reply["top_k"]) == 2
        with pytest.raises(edgewasm.GuestError) as e:
            client.infer(model, {"image": b"garbage"})
        assert e.value.kind == "decode"
        with pytest.raises(edgewasm.GuestError) as e:
            client.infer(model, {"image": CAT.read_bytes(), "top_k": 0})
        assert e.value.kind == "bad_request"


def test_client_raises_the_guests_traps(server: Server) -> None:
    with edgewasm.Client(server.url) as client:
        with pytest.raises(edgewasm.GuestTimeout):
            client.infer("spin", {"x": 1})
        with pytest.raises(edgewasm.GuestTrap) as e:
            client.infer("trap", {"x": 1})
        assert e.value.trap_code == "INTEGER_DIVISION_BY_ZERO"
        with pytest.raises(edgewasm.GuestOutOfMemory):
            client.infer("grow", {"x": 1})
    with pytest.raises(edgewasm.EdgeWasmError, match="cannot reach"):
        edgewasm.Client("http://127.0.0.1:9").infer("echo", {})


def test_infer_command(server: Server) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "edgewasm", "infer", "classifier", "--url", server.url, "--image", str(CAT)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["class_id"] in CAT_CLASSES
    out = subprocess.run(
        [sys.executable, "-m", "edgewasm", "infer", "classifier", "--url", server.url],
        input='{"image": "not bytes"}', capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 3 and out.stderr.count("\n") == 1 and "bad_request" in out.stderr


# -- the conveniences --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", classifiers())
def test_the_articles_json_request_as_is(http: httpx.Client, model: str) -> None:
    body = (ROOT / "examples" / "cat.json").read_bytes()
    r = http.post(f"/models/{model}/call", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["class_id"] in CAT_CLASSES and "stages_ms" in r.json()


def test_msgpack_request_and_answer(http: httpx.Client) -> None:
    request = {"image": CAT.read_bytes(), "top_k": 1, "return_logits": True}
    r = http.post(
        "/models/classifier/call",
        content=msgpack.packb(request),
        headers={"content-type": "application/msgpack", "accept": "application/msgpack"},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/msgpack"
    reply = msgpack.unpackb(r.content)
    assert reply["class_id"] in CAT_CLASSES and len(reply["top_k"]) == 1
    assert reply["logits"]["dtype"] == "float32" and reply["logits"]["shape"] == [1000]
    r = http.post("/models/classifier/call", content=b"\xc1", headers={"content-type": "application/msgpack"})
    assert r.status_code == 400
    r = http.post("/models/classifier/call", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415


@pytest.mark.parametrize("model", classifiers())
def test_image_as_raw_body_and_as_form(http: httpx.Client, model: str) -> None:
    raw = http.post(
        f"/models/{model}/classify?top_k=2", content=CAT.read_bytes(), headers={"content-type": "image/jpeg"}
    )
    assert raw.status_code == 200, raw.text
    form = http.post(f"/models/{model}/classify", files={"image": ("cat.jpg", CAT.read_bytes(), "image/jpeg")},
                     data={"top_k": "2"})  # fmt: skip
    assert form.status_code == 200, form.text
    assert raw.json()["class_id"] == form.json()["class_id"] and raw.json()["class_id"] in CAT_CLASSES
    assert len(raw.json()["top_k"]) == 2
    r = http.post(f"/models/{model}/classify", content=b"GIF89a...", headers={"content-type": "image/gif"})
    assert r.status_code == 422 and r.json()["kind"] == "decode"
    r = http.post("/models/echo/classify", content=CAT.read_bytes(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 400 and "not an image classifier" in r.json()["error"]
    r = http.post(f"/models/{model}/classify?top_k=x", content=CAT.read_bytes(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 400


# -- limits and misbehaving guests -------------------------------------------------------------------------------------


def test_body_size_limit(http: httpx.Client) -> None:
    big = b"\xff" * (BODY_LIMIT + 1)
    r = http.post("/models/classifier/classify", content=big, headers={"content-type": "image/jpeg"})
    assert r.status_code == 413 and r.json()["kind"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(5):
            yield b"\xff" * (BODY_LIMIT // 4)

    r = http.post("/models/classifier/classify", content=chunks(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413
    assert http.get("/v2/health/ready").status_code == 200


def test_guest_errors_map_to_400_and_422(http: httpx.Client) -> None:
    def infer(params: dict[str, object], image: bytes = CAT.read_bytes()) -> httpx.Response:
        req = {"parameters": params, "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
               "data": [base64.b64encode(image).decode()], "parameters": {"content_type": "base64"}}]}  # fmt: skip
        return http.post("/v2/models/classifier/infer", json=req)

    r = infer({"top_k": 0})
    assert r.status_code == 400 and r.json()["kind"] == "bad_request" and "top_k" in r.json()["message"]
    r = infer({"model_id": "resnet"})
    assert r.status_code == 422 and r.json()["kind"] == "not_found"
    r = infer({}, b"\x89PNG broken")
    assert r.status_code == 422 and r.json()["kind"] == "decode"
    assert infer({}).status_code == 200


def _good(http: httpx.Client, n: int) -> list[int]:
    req = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [7]}]}
    return [http.post("/v2/models/echo/infer", json=req).status_code for _ in range(n)]


def test_spin_is_504_and_good_requests_go_on(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as a, httpx.Client(base_url=server.url, timeout=60) as b:
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            spin = ex.submit(a.post, "/v2/models/spin/infer", json={"inputs": []})
            good = ex.submit(_good, b, 20)
            r = spin.result()
            assert good.result() == [200] * 20
        assert r.status_code == 504 and r.json()["kind"] in ("timeout", "deadline_exceeded")
        # The worker is free again: the next spin also ends in 504, not 503.
        assert a.post("/v2/models/spin/infer", json={"inputs": []}).status_code == 504


def test_full_queue_is_503_with_retry_after(server: Server) -> None:
    # spin: 1 instance and a queue of 1, so of 4 requests at once at least 2 find no place.
    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            return c.post("/v2/models/spin/infer", json={"inputs": []})

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        answers = list(ex.map(post, range(4)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(503) >= 2 and set(codes) <= {503, 504}, codes
    full = next(r for r in answers if r.status_code == 503)
    assert full.headers["retry-after"] == "1" and full.json()["kind"] == "queue_full"


def test_trap_is_500_and_the_instance_is_replaced(http: httpx.Client) -> None:
    before = metric(http.get("/metrics").text, "edgewasm_instance_replacements_total", model="trap")
    for _ in range(3):
        r = http.post("/v2/models/trap/infer", json={"inputs": []})
        assert r.status_code == 500
        assert r.json()["kind"] == "trap" and r.json()["trap_code"] == "INTEGER_DIVISION_BY_ZERO"
        assert "\n" not in r.json()["error"]
    after = metric(http.get("/metrics").text, "edgewasm_instance_replacements_total", model="trap")
    assert after - before == 3
    r = http.post("/v2/models/grow/infer", json={"inputs": []})
    assert r.status_code == 500 and r.json()["kind"] == "out_of_memory"
    assert _good(http, 3) == [200] * 3


# -- metrics, request ids, logs ----------------------------------------------------------------------------------------


def test_metrics_named_like_tritons(http: httpx.Client) -> None:
    http.post("/models/classifier/classify", content=CAT.read_bytes(), headers={"content-type": "image/jpeg"})
    http.post("/v2/models/nope/infer", json={"inputs": []})
    text = http.get("/metrics").text
    labels = {"model": "classifier", "version": "1"}
    for name in ("request_success", "count", "exec_count", "request_duration_us", "queue_duration_us",
                 "compute_input_duration_us", "compute_infer_duration_us", "compute_output_duration_us"):  # fmt: skip
        assert metric(text, f"edgewasm_inference_{name}_total", **labels) > 0, name
    assert metric(text, "edgewasm_guest_stage_duration_us_total", stage="inference", **labels) > 0
    assert metric(text, "edgewasm_model_loads_total", **labels) == 1
    assert metric(text, "edgewasm_instances", **labels) == 2
    assert metric(text, "edgewasm_models_loaded") == len(classifiers()) + 4
    assert metric(text, "edgewasm_inference_request_failure_total", model="trap", reason="trap") >= 1
    assert metric(text, "edgewasm_inference_request_failure_total", model="spin", reason="queue_full") >= 0
    assert metric(text, "edgewasm_inference_request_duration_seconds_count", **labels) > 0
    assert "_created" not in text


def test_request_ids(http: httpx.Client, server: Server) -> None:
    r = http.post("/v2/models/echo/infer", json={"inputs": []}, headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123" and r.json()["id"] == "abc-123"
    r = http.get("/v2", headers={"x-request-id": "bad id\twith tab"})
    generated = r.headers["x-request-id"]
    assert len(generated) == 32 and generated != "bad id\twith tab"
    mine = server.wait_log(lambda e: e.get("logger") == "edgewasm.serve.access" and e.get("request_id") == "abc-123")
    assert mine and mine[0]["status"] == 200 and mine[0]["model"] == "echo" and mine[0]["path"].endswith("/infer")


def test_openapi_is_served(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/v2/models/{model}/infer", "/models/{model}/classify", "/v2/health/ready"} <= doc["paths"].keys()


def test_page_is_self_contained(http: httpx.Client) -> None:
    html = http.get("/").text
    assert '<script src="/static/app.js">' in html
    for asset in ("/static/app.js", "/static/style.css"):
        r = http.get(asset)
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    assert "https://" not in html and "http://" not in html  # no CDN: works offline
    assert http.get("/static/nope.js").status_code == 404
