"""The Ray Serve integration on a local single-node Ray (2 CPUs, HTTP on 127.0.0.1): deploy the classifier and an
echo guest, classify the cat over HTTP (OIP and the raw image), see the multiplexing LRU evict, shut down.
Skipped without the extra `ray`, unless EDGEWASM_RAY_TEST=1 asks for it (CI sets it): then a missing extra is an
error. The run is bounded: the child pytest that drives Ray gets CHILD_TIMEOUT seconds, then its process group is
killed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ASKED = "EDGEWASM_RAY_TEST"
if os.environ.get(ASKED) == "1":  # asked for: the test must run, so a missing extra fails the collection
    import ray
    from ray import serve
else:
    serve = pytest.importorskip("ray.serve", reason="the Ray Serve integration needs the extra ray")
    ray = pytest.importorskip("ray")
#: Ray's core worker installs its own fatal-signal handlers in the driver, over wasmtime's: a guest's trap (a SIGILL
#: wasmtime turns into an error) would then kill the process. So the driver is a child pytest, never this one.
CHILD = "EDGEWASM_RAY_CHILD"
#: The whole child run, Ray's start (about a minute on a busy 2-core machine) included.
CHILD_TIMEOUT = 420

from tests._model_fixtures import _installed_store  # noqa: E402

from edgewasm import GuestOptions  # noqa: E402
from edgewasm.serve.config import ModelConfig, ServerConfig  # noqa: E402
from edgewasm.serve.ray_serve import MODEL_HEADER, deployment  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CAT = (ROOT / "examples" / "cat.jpg").read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return int(r.status), json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_in_a_child_process() -> None:
    if os.environ.get(CHILD) == "1":
        pytest.skip("this is the child")
    child = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                             env={**os.environ, CHILD: "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = child.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # the child and what it started in its session (Ray's processes)
        out, err = child.communicate()
        pytest.fail(f"the Ray Serve run took over {CHILD_TIMEOUT} s:\n{out[-3000:]}{err[-3000:]}")
    assert child.returncode == 0 and "3 passed" in out, out[-3000:] + err[-3000:]


@pytest.fixture(scope="module")
def ray_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get(CHILD) != "1":
        pytest.skip("runs in the child process (test_in_a_child_process)")
    model_store = _installed_store()
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    mine = tmp_path_factory.mktemp("ray-replica")
    env = {"EDGEWASM_MODELS": str(model_store), "EDGEWASM_CACHE_DIR": str(mine / "cache"),
           "EDGEWASM_KEY_FILE": str(mine / "key" / "artifact.key")}  # the replicas' own, never the user's
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, configure_logging=False,
             runtime_env={"env_vars": env})  # fmt: skip
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        classifier = ModelConfig(name="classifier", module=ROOT / "wasm" / "classifier.wasm", instances=1, queue=4,
                                 options=GuestOptions(timeout=60.0, memory_limit="1GiB"), task="image-classification")
        echo = ModelConfig(name="echo", module=ROOT / "wasm" / "echo.wat", instances=1, queue=4,
                           options=GuestOptions(timeout=10.0, memory_limit="1GiB"))  # fmt: skip
        app = deployment([classifier.checked(), echo.checked()], max_models_per_replica=1, server=ServerConfig(grace=5),
                         autoscaling={"min_replicas": 1, "max_replicas": 1}, num_cpus=0.5)  # fmt: skip
        serve.run(app, route_prefix="/", name="edgewasm")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120  # a bounded wait for the replica, not a timing
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the Ray Serve replica never became ready"
            time.sleep(0.5)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_classifies_the_cat_over_oip(ray_url: str) -> None:
    body = {"parameters": {"top_k": 2}, "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
            "parameters": {"content_type": "base64"}, "data": [base64.b64encode(CAT).decode()]}]}  # fmt: skip
    status, reply = _post(f"{ray_url}/v2/models/classifier/infer", json.dumps(body).encode(),
                          {"Content-Type": "application/json", MODEL_HEADER: "classifier"})  # fmt: skip
    assert status == 200, reply
    outputs = {o["name"]: o["data"] for o in reply["outputs"]}
    assert outputs["label"] == ["tiger cat"]


def test_the_multiplexed_lru_loads_and_evicts(ray_url: str) -> None:
    """One guest per replica: the echo guest evicts the classifier, which loads again when asked."""
    status, reply = _post(f"{ray_url}/models/echo/call", json.dumps({"text": "hi"}).encode(),
                          {"Content-Type": "application/json", MODEL_HEADER: "echo"})  # fmt: skip
    assert status == 200 and reply["text"] == "hi", reply
    status, reply = _post(f"{ray_url}/models/classifier/classify", CAT,
                          {"Content-Type": "image/jpeg", MODEL_HEADER: "classifier"})  # fmt: skip
    assert status == 200 and reply["label"] == "tiger cat", reply
    with urllib.request.urlopen(f"{ray_url}/metrics", timeout=30) as r:
        metrics = r.read().decode()
    evictions = [line for line in metrics.splitlines() if line.startswith("edgewasm_model_evictions_total")]
    assert any(float(line.rsplit(" ", 1)[1]) >= 1 for line in evictions), evictions


def test_errors_keep_their_status(ray_url: str) -> None:
    status, reply = _post(f"{ray_url}/models/nope/call", b"{}", {"Content-Type": "application/json"})
    assert status == 404 and reply["kind"] == "not_found", reply
    status, reply = _post(f"{ray_url}/models/classifier/classify", b"not a photo", {"Content-Type": "image/jpeg"})
    assert status == 422, reply
