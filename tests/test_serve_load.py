"""A short, bounded version of the benchmark's mixed traffic and soak (no timing asserted): with 5% of requests
going to guests that spin, trap or exhaust their memory, every good request still succeeds, the bad ones get
their documented statuses, and the server logs no traceback. The timed runs are `bench/serve_bench.py`."""

from __future__ import annotations

from pathlib import Path

import httpx
from bench._loadgen import Request, http_request, run_load
from tests._model_fixtures import model_store  # noqa: F401
from tests._serve_support import CAT, WASM, Server, metric

from edgewasm.serve.mapping import request_tensors
from edgewasm.serve.tensors import HEADER_LENGTH, write_body


def oip(model: str, request: dict[str, object], kind: str) -> Request:
    inputs, params = request_tensors(request)
    body, length = write_body({"parameters": params}, "inputs", inputs, {t.name for t in inputs})
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(length)} if length else {}
    return Request(kind, http_request("POST", f"/v2/models/{model}/infer", body, headers))


def test_mixed_traffic_keeps_good_requests_whole(tmp_path: Path, model_store: Path) -> None:  # noqa: F811
    repo = tmp_path / "repo"
    models = {
        "classifier": f'module = "{WASM / "classifier.wasm"}"\ninstances = 2\ntimeout = 60\nqueue = 16\n',
        "echo": f'module = "{WASM / "echo.wat"}"\ninstances = 2\nqueue = 16\n',
        "spin": f'module = "{WASM / "spin.wat"}"\ninstances = 1\nqueue = 2\ntimeout = 0.2\n',
        "trap": f'module = "{WASM / "trap.wat"}"\ninstances = 1\nqueue = 2\n',
        "grow": f'module = "{WASM / "grow.wat"}"\ninstances = 1\nqueue = 2\nmemory_limit = "16MiB"\n',
    }
    for name, text in models.items():
        (repo / name).mkdir(parents=True)
        (repo / name / "model.toml").write_text(text)
    cat = oip("classifier", {"image": CAT.read_bytes()}, "good")
    echo = oip("echo", {"x": b"payload" * 100}, "good")
    bad = [oip(m, {"x": 1}, m) for m in ("spin", "trap", "grow")]
    traffic = []
    for i in range(60):  # 5% misbehaving, the rest echo with a classification every tenth request
        traffic.append(bad[(i // 20) % 3] if i % 20 == 19 else cat if i % 10 == 0 else echo)
    env = {"EDGEWASM_MODELS": str(model_store)}
    with Server(["--repository", str(repo)], cache_dir=tmp_path / "c", env=env) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        run = run_load("127.0.0.1", port, traffic, 8, seconds=20.0, count=600)
        text = httpx.get(srv.url + "/metrics").text
    good = run.of("good")
    assert len(good) > 100
    assert run.failures("good") == 0, sorted({s.status for s in good})
    assert {s.status for s in run.of("spin")} <= {503, 504} and run.of("spin")
    assert {s.status for s in run.of("trap")} <= {500, 503} and run.of("trap")
    assert {s.status for s in run.of("grow")} <= {500, 503} and run.of("grow")
    assert metric(text, "edgewasm_inference_request_success_total", model="classifier") > 0
    assert metric(text, "edgewasm_instance_replacements_total", model="trap") >= 1
    assert srv.tracebacks() == [], "\n".join(srv.lines[-80:])
