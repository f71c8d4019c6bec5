"""deploy/: the Kubernetes manifests validate (strict) on two Kubernetes versions, and the image plays the
Deployment under podman with its limits and answers the cat photo over the Open Inference Protocol.

The image test builds the image when it is missing (minutes: debootstrap, wheels, layers), so it runs only when
asked: EDGEWASM_IMAGE_TEST=1 (docs/deploy.md), and then it must run: where podman is missing or cannot run it fails
with the reason (CI sets it). Without it the test is skipped, with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
#: The oldest and the newest Kubernetes kubernetes-validate carries schemas for, and one between.
K8S_VERSIONS = ("1.30.0", "1.33.0", "1.37.0")
PLAIN = sorted((K8S / "base").glob("*.yaml"))
MANIFESTS = [p for p in PLAIN if p.name != "kustomization.yaml"]
OVERLAYS = [K8S / "base", K8S / "overlays" / "wasinn", K8S / "overlays" / "model-volume"]
#: What each renders beyond the base's four kinds.
EXTRA_KINDS = {"model-volume": ["PersistentVolumeClaim"]}
#: Where the image keeps its model store (EDGEWASM_MODELS in deploy/Containerfile).
MODEL_STORE = "/opt/edgewasm/models"
IMAGE = os.environ.get("EDGEWASM_IMAGE", "localhost/edgewasm:latest")
OPT_IN = "EDGEWASM_IMAGE_TEST"
CAT = ROOT / "examples" / "cat.jpg"
MiB = 1 << 20


def _validate(paths: list[Path], version: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("kubernetes-validate")
    if not exe.exists():
        pytest.skip("kubernetes-validate is not installed (it is in the dev extra)")
    return subprocess.run(
        [str(exe), "--strict", "--no-warn", "-k", version, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# -- the manifests ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_strictly(version: str) -> None:
    r = _validate(MANIFESTS, version)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("passed") == len(MANIFESTS), r.stdout


@pytest.mark.parametrize("version", K8S_VERSIONS[::2])
def test_validation_catches_an_unknown_field(tmp_path: Path, version: str) -> None:
    """The check above can fail: a typo'd field (the article's kind of mistake) is refused with --strict."""
    deployment = _docs(K8S / "base" / "deployment.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {"limits": {"memory": "128Mi"}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    r = _validate([bad], version)
    assert r.returncode != 0 and "resource" in r.stdout + r.stderr, r.stdout + r.stderr


def _kustomize(where: Path) -> str:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (its `kubectl kustomize` renders the overlays offline)")
    return subprocess.run(
        ["kubectl", "kustomize", str(where)], capture_output=True, text=True, check=True, timeout=120
    ).stdout


@pytest.mark.parametrize("where", OVERLAYS, ids=lambda p: p.name)
def test_kustomizations_render_and_validate(tmp_path: Path, where: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(_kustomize(where))
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered.read_text()))
    base = ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    assert kinds == sorted(base + EXTRA_KINDS.get(where.name, []))
    for version in K8S_VERSIONS[::2]:
        r = _validate([rendered], version)
        assert r.returncode == 0 and r.stdout.count("passed") == len(kinds), r.stdout + r.stderr


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_the_deployment_holds_the_article_limits_and_is_locked_down() -> None:
    deployment = _docs(K8S / "base" / "deployment.yaml")[0]
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    c = _container(deployment)
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "128Mi"},
    }
    assert c["args"][c["args"].index("--instances") + 1] == "1"  # two instances do not fit in 128 MiB
    for probe, path in [("startupProbe", "/v2/health/ready"), ("readinessProbe", "/v2/health/ready"),
                        ("livenessProbe", "/v2/health/live")]:
        assert c[probe]["httpGet"] == {"path": path, "port": 8000}  # numeric: podman turns a name into 0
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/var/cache/edgewasm", "/tmp"} <= mounts  # the writable places of a read-only root
    assert not any("configMap" in v for v in pod["volumes"])  # weights never in a ConfigMap (1 MiB)
    assert pod["terminationGracePeriodSeconds"] > float(c["args"][c["args"].index("--grace") + 1])


def test_the_wasinn_overlay_has_its_own_limits() -> None:
    docs = list(yaml.safe_load_all(_kustomize(K8S / "overlays" / "wasinn")))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    c = _container(deployment)
    assert "--nn-preload" in c["args"] and any(a.startswith("wasinn-classifier=") for a in c["args"])
    assert c["resources"]["limits"]["memory"] != "128Mi"
    selector = deployment["spec"]["selector"]["matchLabels"]
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector  # the budget covers this Deployment's pods only
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_the_model_volume_overlay_mounts_the_store_from_a_claim() -> None:
    """The store comes from the PVC, read-only, where the image's EDGEWASM_MODELS points (over the baked layer);
    everything else is the base's Deployment."""
    assert f"EDGEWASM_MODELS={MODEL_STORE}" in (ROOT / "deploy" / "Containerfile").read_text()
    docs = list(yaml.safe_load_all(_kustomize(K8S / "overlays" / "model-volume")))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]  # three replicas on several nodes
    assert claim["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    c = _container(deployment)
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == MODEL_STORE)
    assert mount["readOnly"] is True
    source = volumes[mount["name"]]["persistentVolumeClaim"]
    assert source == {"claimName": claim["metadata"]["name"], "readOnly": True}
    base = _docs(K8S / "base" / "deployment.yaml")[0]
    assert c["resources"] == _container(base)["resources"] and c["args"] == _container(base)["args"]
    assert not any("configMap" in v for v in pod["volumes"])


#: The fields of KServe's ServingRuntimeSpec and InferenceService predictor this project uses (KServe's CRDs are not
#: among kubernetes-validate's schemas: their pod parts are validated as core/v1 below, these names by hand).
SERVING_RUNTIME_FIELDS = {"supportedModelFormats", "protocolVersions", "multiModel", "containers", "volumes"}
MODEL_SPEC_FIELDS = {"modelFormat", "runtime", "protocolVersion", "storageUri", "resources"}


@pytest.mark.parametrize("version", K8S_VERSIONS[::2])
def test_kserve_runtime_and_service(tmp_path: Path, version: str) -> None:
    runtime = _docs(K8S / "kserve" / "servingruntime.yaml")[0]
    isvc = _docs(K8S / "kserve" / "inferenceservice.yaml")[0]
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ServingRuntime")
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert set(runtime["spec"]) <= SERVING_RUNTIME_FIELDS
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    model = isvc["spec"]["predictor"]["model"]
    assert set(model) <= MODEL_SPEC_FIELDS
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    # The runtime's containers and volumes, and the predictor's container fields, are core/v1: validate them so.
    container = {k: v for k, v in model.items() if k not in {"modelFormat", "runtime", "protocolVersion", "storageUri"}}
    pods = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runtime"},
         "spec": {"containers": runtime["spec"]["containers"], "volumes": runtime["spec"]["volumes"]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"},
         "spec": {"containers": [{"name": "kserve-container", "image": IMAGE, **container}]}},
    ]
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump_all(pods))
    r = _validate([path], version)
    assert r.returncode == 0 and r.stdout.count("passed") == 2, r.stdout + r.stderr
    c = runtime["spec"]["containers"][0]
    assert c["name"] == "kserve-container"
    port = c["ports"][0]["containerPort"]
    assert c["args"][c["args"].index("--port") + 1] == str(port)
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}


# -- the image under podman (asked for: then it must run) --------------------------------------------------------------


def _podman_unusable() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (`make image-tools`: apt-get install podman buildah catatonit runc debootstrap)"
    r = subprocess.run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"podman cannot run here: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


def test_the_image_test_asked_for_fails_without_podman(tmp_path: Path) -> None:
    """CI sets EDGEWASM_IMAGE_TEST=1: without podman the image test must fail there, not skip (a skip would pass
    CI without it); not asked for, it skips with the reason."""
    bare = tmp_path / "bin"  # a PATH with this Python and nothing else: no podman
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    test = f"{Path(__file__)}::test_the_deployment_plays_under_podman_and_classifies"
    runs = {}
    for asked in ("1", ""):
        env = {**os.environ, "PATH": str(bare), OPT_IN: asked}
        runs[asked] = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test],
                                     env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    out = runs["1"].stdout
    assert runs["1"].returncode == 1 and "podman is not installed" in out and "1 error" in out, out[-3000:]
    out = runs[""].stdout
    assert runs[""].returncode == 0 and "1 skipped" in out and f"set {OPT_IN}=1" in out, out[-3000:]


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """podman's settings that work here (runc, explicit ulimits: docs/deploy.md), and the image, built if missing."""
    if os.environ.get(OPT_IN) != "1":
        pytest.skip(f"set {OPT_IN}=1 to build the image and play the Deployment under podman (docs/deploy.md)")
    unusable = _podman_unusable()
    if unusable:  # asked for (CI), it must run: a skip would pass CI without the test
        pytest.fail(f"{OPT_IN}=1 asks for the image test, but {unusable}")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(
        '[engine]\nruntime = "runc"\n\n[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    if subprocess.run(["podman", "image", "exists", IMAGE], env=env).returncode != 0:
        subprocess.run(
            ["bash", str(ROOT / "deploy" / "build-image.sh"), IMAGE],
            env={**env, "PYTHON": sys.executable},
            check=True,
            timeout=1800,
        )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _podman(env: dict[str, str], *args: str, check: bool = True) -> str:
    r = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


@contextlib.contextmanager
def _play(env: dict[str, str], deployment: dict[str, Any], tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A Deployment under `podman kube play`, one replica, its port published on 127.0.0.1 only (a test-only
    hostPort; podman plays every replica as a pod, and only one can hold a host port); torn down after."""
    deployment = copy.deepcopy(deployment)
    deployment["spec"]["replicas"] = 1
    port = _free_port()
    name = deployment["metadata"]["name"] = f"edgewasm-test-{port}"  # never a leftover's name
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    c["image"] = IMAGE
    c["ports"][0].update(hostPort=port, hostIP="127.0.0.1")
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(deployment))
    _podman(env, "kube", "play", "--replace", str(manifest))
    try:
        yield name, port
    finally:
        _podman(env, "kube", "down", str(manifest), check=False)
        _podman(env, "pod", "rm", "--force", "--ignore", f"{name}-pod-0", check=False)


@pytest.fixture
def played(podman_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The base Deployment under `podman kube play`."""
    with _play(podman_env, _docs(K8S / "base" / "deployment.yaml")[0], tmp_path) as p:
        yield p


def _wait_ready(env: dict[str, str], cid: str, base: str) -> None:
    deadline = time.monotonic() + 240  # a bounded wait for the warm-up (compiling at start), not a timing
    while _get(f"{base}/v2/health/ready") != 200:
        state = json.loads(_podman(env, "inspect", cid))[0]["State"]
        assert state["Running"], _podman(env, "logs", cid, check=False)
        assert time.monotonic() < deadline, _podman(env, "logs", cid, check=False)
        time.sleep(1)


def _container_id(env: dict[str, str], deployment: str) -> str:
    ids = _podman(env, "ps", "-a", "-q", "--filter", f"name={deployment}-pod-0-edgewasm").split()
    assert len(ids) == 1, _podman(env, "ps", "-a", check=False)
    return ids[0]


def test_the_deployment_plays_under_podman_and_classifies(podman_env: dict[str, str], played: tuple[str, int]) -> None:
    name, port = played
    base = f"http://127.0.0.1:{port}"
    cid = _container_id(podman_env, name)
    info = json.loads(_podman(podman_env, "inspect", cid))[0]
    host = info["HostConfig"]
    assert host["Memory"] == 128 * MiB
    assert host["CpuQuota"] * 2 == host["CpuPeriod"]  # 500m: half a period
    assert host["ReadonlyRootfs"] is True
    assert info["Config"]["User"].split(":")[0] == "10001"
    _wait_ready(podman_env, cid, base)
    assert _get(f"{base}/v2/health/live") == 200
    body = {
        "parameters": {"top_k": 3},
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"content_type": "base64"},
                    "data": [base64.b64encode(CAT.read_bytes()).decode()]}],
    }
    req = urllib.request.Request(f"{base}/v2/models/classifier/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        reply = json.load(r)
    outputs = {o["name"]: o["data"] for o in reply["outputs"]}
    assert outputs["label"] == ["tiger cat"], outputs
    # Inside: the cgroup holds the limit, the root is read-only, the cache was written to its volume.
    mem = _podman(podman_env, "exec", cid, "sh", "-c",
                  "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert int(mem.strip()) == 128 * MiB
    assert "Read-only file system" in _podman(podman_env, "exec", cid, "sh", "-c", "touch /opt/x 2>&1; true")
    assert _podman(podman_env, "exec", cid, "sh", "-c", "ls /var/cache/edgewasm/artifacts").strip()
    # SIGTERM drains and exits 0 (not the 137 of a kill after the grace period).
    _podman(podman_env, "stop", "--time", "25", cid)
    assert json.loads(_podman(podman_env, "inspect", cid))[0]["State"]["ExitCode"] == 0


def test_the_model_volume_overlay_plays_with_the_store_from_its_volume(
    podman_env: dict[str, str], tmp_path: Path
) -> None:
    """overlays/model-volume under podman: its claim is a named volume, filled here with the store and a marker
    file the image's layer lacks; the pod sees the volume, read-only, over the baked store and classifies from it."""
    docs = yaml.safe_load_all(_kustomize(K8S / "overlays" / "model-volume"))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    volume = f"edgewasm-test-models-{_free_port()}"
    claim = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v)
    claim["persistentVolumeClaim"]["claimName"] = volume
    _podman(podman_env, "volume", "create", volume)
    try:
        fill = f"cp -r {MODEL_STORE}/. /models/ && echo volume > /models/from-the-volume && chmod -R a+rX /models"
        _podman(podman_env, "run", "--rm", "--user", "0", "-v", f"{volume}:/models", "--entrypoint", "sh", IMAGE,
                "-c", fill)  # fmt: skip
        with _play(podman_env, deployment, tmp_path) as (name, port):
            cid = _container_id(podman_env, name)
            _wait_ready(podman_env, cid, f"http://127.0.0.1:{port}")
            mounts = _podman(podman_env, "exec", cid, "cat", "/proc/mounts").splitlines()
            store = next(m.split() for m in mounts if m.split()[1] == MODEL_STORE)
            assert "ro" in store[3].split(","), store
            assert _podman(podman_env, "exec", cid, "cat", f"{MODEL_STORE}/from-the-volume").strip() == "volume"
            req = urllib.request.Request(f"http://127.0.0.1:{port}/models/classifier/classify", data=CAT.read_bytes(),
                                         headers={"Content-Type": "image/jpeg"})  # fmt: skip
            with urllib.request.urlopen(req, timeout=120) as r:
                assert json.load(r)["label"] == "tiger cat"
    finally:
        _podman(podman_env, "volume", "rm", "--force", volume, check=False)
