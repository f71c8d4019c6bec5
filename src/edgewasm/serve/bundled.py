"""What `edgewasm serve` with no module serves: the bundled classifiers (the WASI-NN one when a backend exists)."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from pathlib import Path

from .._errors import EdgeWasmError
from .config import ConfigError, ModelConfig

log = logging.getLogger("edgewasm.serve")
#: Where the bundled guests are, when not in the source checkout's wasm/ (an installed package has none).
GUESTS_ENV = "EDGEWASM_GUESTS"
NN_MODEL_ID = "efficientnet-lite0"


def guests_dir() -> Path | None:
    env = os.environ.get(GUESTS_ENV)
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[3] / "wasm"
    return checkout if (checkout / "classifier.wasm").is_file() else None


def _nn_preload() -> str | None:
    """The preload for the WASI-NN classifier on the first backend installed, or None."""
    if importlib.util.find_spec("onnxruntime") is not None:
        return NN_MODEL_ID
    if importlib.util.find_spec("openvino") is not None:
        return f"{NN_MODEL_ID}:store:{NN_MODEL_ID}:openvino"
    return None


def bundled_models(base: ModelConfig) -> list[ModelConfig]:
    where = guests_dir()
    if where is None:
        raise ConfigError(
            "no module given and the bundled guests are not here (this is not a source checkout)",
            hint=f"pass modules (edgewasm serve NAME=MODULE ...), --repository DIR, or set {GUESTS_ENV}",
        )
    pure = dataclasses.replace(
        base,
        name="classifier",
        module=where / "classifier.wasm",
        task="image-classification",
        description="EfficientNet-Lite0 (ImageNet) in pure WebAssembly with SIMD",
    )
    models = [pure.checked()]
    preload = _nn_preload()
    nn_module = where / "wasinn_classifier.wasm"
    if preload is None:
        log.info("not serving wasinn-classifier: no WASI-NN backend (pip install 'edgewasm[onnx]')")
    elif nn_module.is_file():
        try:
            options = base.options.updated({"nn_preload": [*base.options.nn_preload, preload]})
            nn = dataclasses.replace(
                base,
                name="wasinn-classifier",
                module=nn_module,
                task="image-classification",
                description="EfficientNet-Lite0 through WASI-NN (the network runs on the host's backend)",
                options=options,
            )
            models.append(nn.checked())
        except EdgeWasmError as e:  # the preload's model is not in the store
            log.warning("not serving wasinn-classifier: %s", e.one_line())
    return models
