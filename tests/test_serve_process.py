"""`edgewasm serve` as a process: start-up and readiness, the no-argument default, the LRU, draining on signals,
one-line failures, and that `import edgewasm` / `edgewasm run` never import the server's stack."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests._model_fixtures import model_store  # noqa: F401
from tests._serve_support import CAT, CAT_CLASSES, ROOT, WASM, Server, metric

STACK = ("starlette", "uvicorn", "prometheus_client", "multipart", "anyio", "edgewasm.serve")


def test_no_argument_serves_the_bundled_classifiers(tmp_path: Path, model_store: Path) -> None:  # noqa: F811
    with Server([], cache_dir=tmp_path / "c", env={"EDGEWASM_MODELS": str(model_store)}) as srv:
        models = httpx.get(srv.url + "/models").json()["models"]
        names = [m["name"] for m in models]
        has_backend = any(importlib.util.find_spec(b) for b in ("onnxruntime", "openvino"))
        assert names == (["classifier", "wasinn-classifier"] if has_backend else ["classifier"])
        for name in names:
            r = httpx.post(f"{srv.url}/models/{name}/classify", content=CAT.read_bytes(), timeout=60)
            assert r.status_code == 200 and r.json()["class_id"] in CAT_CLASSES
        assert srv.stop(signal.SIGINT) == 0
    entries = srv.log()
    assert all(e.get("level") != "raw" for e in entries), "every log line is JSON with --log-format json"
    assert any(e.get("msg", "").startswith("ready:") for e in entries)


def test_ready_only_after_every_module_is_loaded(tmp_path: Path) -> None:
    # --no-cache: the classifier compiles (hundreds of ms) while the server already listens.
    srv = Server(["--no-cache", "--instances", "2", f"{WASM / 'classifier.wasm'}", f"e={WASM / 'echo.wat'}"],
                 cache_dir=tmp_path / "c").start(wait_ready=False)  # fmt: skip
    try:
        url = srv.wait_url()
        not_ready = 0
        with httpx.Client(base_url=url, timeout=30) as c:
            for _ in range(2000):
                try:
                    r = c.get("/v2/health/ready")
                except httpx.TransportError:
                    time.sleep(0.01)
                    continue
                if r.status_code == 200:
                    break
                assert r.status_code == 503 and r.json() == {"ready": False}
                not_ready += 1
                refused = c.post("/v2/models/e/infer", json={"inputs": []})
                if refused.status_code != 503:  # the server became ready between the two requests
                    assert refused.status_code == 200 and c.get("/v2/health/ready").status_code == 200
                    break
                assert refused.json()["kind"] == "not_ready" and refused.headers["retry-after"] == "1"
                time.sleep(0.01)
            text = c.get("/metrics").text
        assert not_ready > 0
        for model in ("classifier", "e"):
            assert metric(text, "edgewasm_model_loads_total", model=model) == 1
            assert metric(text, "edgewasm_instances", model=model) == 2
    finally:
        assert srv.stop() == 0


def test_lru_of_loaded_guests(tmp_path: Path) -> None:
    args = ["--max-loaded", "1", f"a={WASM / 'echo.wat'}", f"b={WASM / 'echo.wat'}"]
    with Server(args, cache_dir=tmp_path) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        assert c.get("/v2/models/a/ready").status_code == 200
        assert c.get("/v2/models/b/ready").status_code == 503  # compiled, not loaded
        for model in ("b", "b", "a", "b"):
            r = c.post(f"/v2/models/{model}/infer", json={"inputs": [{"name": "m", "datatype": "BYTES",
                       "shape": [1], "data": [model]}]})  # fmt: skip
            assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [model]
        text = c.get("/metrics").text
        assert c.get("/v2/models/b/ready").status_code == 200
        assert c.get("/v2/models/a/ready").status_code == 503
    assert metric(text, "edgewasm_model_loads_total", model="a") == 2
    assert metric(text, "edgewasm_model_loads_total", model="b") == 2
    assert metric(text, "edgewasm_model_evictions_total", model="a") == 2
    assert metric(text, "edgewasm_model_evictions_total", model="b") == 1
    assert metric(text, "edgewasm_models_loaded") == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_in_flight_requests_and_exits_0(tmp_path: Path, model_store: Path, sig: int) -> None:  # noqa: F811
    # The scalar classifier is slow enough (one instance, many milliseconds a call) that requests are still queued.
    args = ["--instances", "1", "--task", "image-classification", "--models", str(model_store),
            f"slow={WASM / 'classifier_scalar.wasm'}"]  # fmt: skip
    srv = Server(args, cache_dir=tmp_path).start()

    def classify(_: int) -> int:
        with httpx.Client(timeout=60) as c:
            return c.post(srv.url + "/models/slow/classify", content=CAT.read_bytes()).status_code

    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        answers = [ex.submit(classify, i) for i in range(3)]
        srv.wait_pending("slow", 3, tries=1000)
        rc = srv.stop(sig)
        codes = [a.result() for a in answers]
    assert codes == [200, 200, 200]
    assert rc == 0, "\n".join(srv.lines[-150:])
    msgs = [e.get("msg", "") for e in srv.log()]
    assert any(m.startswith("draining") for m in msgs) and msgs[-1] == "stopped"
    assert srv.tracebacks() == [], "\n".join(srv.lines[-80:])


def test_a_request_still_running_when_the_grace_period_ends_is_answered_503(tmp_path: Path) -> None:
    # No timeout: the spin runs until the process ends; the grace period (1 s) ends its request's wait instead.
    srv = Server(["--grace", "1", "--timeout", "0", f"spin={WASM / 'spin.wat'}"], cache_dir=tmp_path).start()
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        answer = ex.submit(httpx.post, srv.url + "/v2/models/spin/infer", json={"inputs": []}, timeout=60)
        srv.wait_pending("spin", 1, tries=500)
        rc = srv.stop(signal.SIGTERM)
        r = answer.result()
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    assert r.json()["kind"] == "not_ready" and "stopped before" in r.json()["error"]
    assert rc == 0, "\n".join(srv.lines[-80:])
    assert srv.tracebacks() == [], "\n".join(srv.lines[-80:])


def test_the_shutdown_watchdog_ends_a_stuck_process_with_its_threads_stacks() -> None:
    # The watchdog as `handle_exit` starts it, in a process whose main thread never returns.
    code = (
        "import threading, time\n"
        "from edgewasm.serve.server import _watchdog\n"
        "threading.Thread(target=_watchdog, args=(0.5,), daemon=True).start()\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert out.returncode == 1 and time.monotonic() - started < 30, out.stderr
    assert "shutdown did not finish within 0.5 s: exiting" in out.stderr
    assert "time.sleep" in out.stderr or "<string>" in out.stderr, out.stderr  # the main thread's stack
    assert "Traceback" not in out.stderr


def _serve(args: list[str], tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgewasm", "--cache-dir", str(tmp_path), "serve", "--port", "0", *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _last_line(out: subprocess.CompletedProcess[str]) -> str:
    return out.stderr.strip().splitlines()[-1]


def test_a_module_that_cannot_load_stops_the_server_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\x00asm\x01\x00\x00\x00garbage")
    out = _serve([str(bad)], tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    last = _last_line(out)
    assert last.startswith("edgewasm: error: ") and "bad.wasm: not a valid WebAssembly module" in last
    out = _serve([str(WASM / "cat.wat")], tmp_path)
    assert out.returncode == 2 and "WASI command" in _last_line(out) and "Traceback" not in out.stderr


def test_configuration_mistakes_are_one_line(tmp_path: Path) -> None:
    cases = {
        ("missing.wasm",): "does not exist",
        (f"x={WASM / 'echo.wat'}", f"x={WASM / 'echo.wat'}"): "two models are named 'x'",
        ("--task", "chess", str(WASM / "echo.wat")): "unknown task",
        ("--max-body-size", "lots", str(WASM / "echo.wat")): "cannot read memory limit",
        ("--nn-preload", "nope:ONNX:CPU:/nonexistent.onnx", str(WASM / "echo.wat")): "bad --nn-preload",
    }
    for args, words in cases.items():
        out = _serve(list(args), tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        assert words in out.stderr and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr


def test_repository_config_and_its_mistakes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "hello").mkdir(parents=True)
    (repo / "hello" / "echo.wat").write_bytes((WASM / "echo.wat").read_bytes())  # the folder's only module
    (repo / "hello" / "model.toml").write_text(
        'version = "3"\ndescription = "says it back"\ninstances = 3\n'
        '[[inputs]]\nname = "text"\ndatatype = "BYTES"\nshape = [1]\n'
    )
    with Server(["--repository", str(repo)], cache_dir=tmp_path / "c") as srv:
        meta = httpx.get(srv.url + "/v2/models/hello").json()
        assert meta["versions"] == ["3"] and meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [1]}]
        assert meta["parameters"]["description"] == "says it back"
        text = httpx.get(srv.url + "/metrics").text
        assert metric(text, "edgewasm_instances", model="hello", version="3") == 3
    (repo / "hello" / "model.toml").write_text("instance = 3\n")
    out = _serve(["--repository", str(repo)], tmp_path)
    assert out.returncode == 2 and "unknown setting instance" in _last_line(out)
    (repo / "hello" / "model.toml").write_text("instances = 'three'\n")
    out = _serve(["--repository", str(repo)], tmp_path)
    assert out.returncode == 2 and "instances must be int" in _last_line(out)
    (repo / "hello" / "model.toml").write_text("instances = [\n")
    out = _serve(["--repository", str(repo)], tmp_path)
    assert out.returncode == 2 and "cannot read" in _last_line(out)


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "edgewasm", "serve", "--port", str(port), str(WASM / "echo.wat")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr


def test_import_edgewasm_and_run_do_not_import_the_stack(tmp_path: Path) -> None:
    probe = (
        "import sys, edgewasm\n"
        "g = edgewasm.load(sys.argv[1]); g.infer({'a': 1})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'starlette','uvicorn','prometheus_client',"
        "'multipart','anyio','httpx'} or m.startswith('edgewasm.serve')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(WASM / "echo.wat")], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edgewasm", "run", str(WASM / "echo.wat")],
        input='{"a": 1}', capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(run.stdout) == {"a": 1}
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in STACK or m.startswith("edgewasm.serve")}
    assert "edgewasm._cli" in imported  # the probe saw the CLI's imports at all
    # edgewasm.Client is there on first use, and brings no server stack with it.
    client = subprocess.run(
        [sys.executable, "-c", "import sys, edgewasm; edgewasm.Client; "
         "print([m for m in ('starlette', 'uvicorn', 'prometheus_client') if m in sys.modules])"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    assert client.stdout.strip() == "[]"
