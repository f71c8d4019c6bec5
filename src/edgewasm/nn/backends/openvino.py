"""OpenVINO backend (encoding 0): IR xml + weights, compiled once per graph, one infer request per context."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..._openvino import import_openvino
from .._enums import ExecutionTarget
from .._errno import NnErrno, NnError
from ._base import Backend, BackendOptions, Context, Graph, InputSpec, model_error, unsupported_target

ov = import_openvino()  # without its telemetry writing into ~/intel (see edgewasm._openvino)


def _dtype(element_type: Any) -> np.dtype[np.generic] | None:
    try:
        dtype: np.dtype[np.generic] = np.dtype(element_type.to_dtype())
        return dtype
    except Exception:
        return None


def _dims(partial_shape: Any) -> tuple[int | None, ...] | None:
    if partial_shape.rank.is_dynamic:
        return None
    return tuple(d.get_length() if d.is_static else None for d in partial_shape)


class OpenVinoContext(Context):
    def __init__(self, graph: OpenVinoGraph) -> None:
        self._request = graph.compiled.create_infer_request()
        self._n_outputs = len(graph.compiled.outputs)

    def compute(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            for i, arr in enumerate(inputs):
                # shared_memory: OpenVINO reads the guest's buffer in place during infer().
                self._request.set_input_tensor(i, ov.Tensor(arr, shared_memory=True))
            self._request.infer()
            outputs = [self._request.get_output_tensor(i).data for i in range(self._n_outputs)]
            return [np.array(o, copy=True) for o in outputs]
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise NnError(NnErrno.RUNTIME_ERROR, f"openvino: {first}") from exc


class OpenVinoGraph(Graph):
    def __init__(self, compiled: Any, keepalive: object) -> None:
        self.compiled = compiled
        self._keepalive = keepalive  # the weights buffer a model read from memory may still point into
        self.inputs = tuple(
            InputSpec(
                p.get_any_name() if p.get_names() else f"input{i}",
                _dims(p.get_partial_shape()),
                _dtype(p.get_element_type()),
            )
            for i, p in enumerate(compiled.inputs)
        )

    def new_context(self) -> Context:
        return OpenVinoContext(self)


class OpenVinoBackend(Backend):
    encoding_name = "openvino"
    blob_count = 2  # [xml, weights], as WasmEdge requires

    def __init__(self, options: BackendOptions) -> None:
        self._options = options
        self._core = ov.Core()

    def _device(self, target: ExecutionTarget) -> str:
        devices = self._core.available_devices
        if target is ExecutionTarget.CPU:
            return "CPU"
        if target is ExecutionTarget.AUTO:
            return "AUTO"
        if target is ExecutionTarget.GPU and any(d.startswith("GPU") for d in devices):
            return "GPU"
        if target is ExecutionTarget.TPU and "NPU" in devices:
            return "NPU"
        raise unsupported_target(target, "openvino")

    def _compile(self, model: Any, target: ExecutionTarget, keepalive: object) -> OpenVinoGraph:
        device = self._device(target)
        config: dict[str, Any] = {}
        if device == "CPU":
            config["INFERENCE_NUM_THREADS"] = self._options.threads
            if self._options.openvino_precision:
                config["INFERENCE_PRECISION_HINT"] = self._options.openvino_precision
        try:
            return OpenVinoGraph(self._core.compile_model(model, device, config), keepalive)
        except Exception as exc:
            raise model_error("openvino", exc) from exc

    def load(self, blobs: Sequence[bytes], target: ExecutionTarget) -> Graph:
        self._device(target)  # an unavailable target fails before the (slow) model read
        xml, weights = blobs
        weights_array = np.frombuffer(weights, dtype=np.uint8)
        try:
            model = self._core.read_model(model=xml.decode("utf-8"), weights=ov.Tensor(weights_array))
        except Exception as exc:
            raise model_error("openvino", exc) from exc
        return self._compile(model, target, weights_array)

    def load_files(self, paths: Sequence[Path], target: ExecutionTarget) -> Graph:
        self._device(target)
        try:
            model = self._core.read_model(model=str(paths[0]), weights=str(paths[1]))
        except Exception as exc:
            raise model_error("openvino", exc) from exc
        return self._compile(model, target, None)
