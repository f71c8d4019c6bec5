"""OpenVINO backend (encoding 0): IR xml + weights, compiled once per graph, one infer request per context.

`Core.read_model(text, weights)` offers the text to every frontend, not only the IR's: the ONNX frontend takes
ONNX bytes and resolves their external data against the host's working directory. A guest's first builder must
therefore be IR XML, checked so that no other frontend can claim it: it starts with `<`, which no protobuf (ONNX,
Paddle, TensorFlow), flatbuffer (TFLite) or GGUF file can, and holds no DTD and no `__weights_path` (the rt_info
key OpenVINO's weightless cache reads a weights file path from). The IR frontend reads the weights from the second
builder's bytes. At a guest call's deadline the infer request is cancelled.

One `Core` serves the whole process and is never released, and every call into OpenVINO keeps the calling thread's
alternate signal stack (`_sigstack`): the CPU plugin replaces it, and releasing plugin engines left it pointing at
freed memory, so that the next trap in a guest on that thread killed the process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..._openvino import import_openvino
from .. import _sigstack
from .._enums import ExecutionTarget, NnErrno, NnError
from .._watchdog import at_deadline
from ._base import Backend, BackendOptions, Context, Graph, InputSpec, model_error, unsupported_target
from ._onnxrefs import ModelRefused

_core: Any = None
_core_lock = threading.Lock()


def shared_core() -> Any:
    """The process's one OpenVINO Core (its plugins are loaded once and never unloaded)."""
    global _core
    with _core_lock:
        if _core is None:
            with _sigstack.kept():
                _core = ov.Core()
        return _core


def check_ir_xml(blob: bytes) -> str:
    """The text of a guest's IR xml builder; ModelRefused for anything another frontend could read, or that names
    a file; runtime_error for text that is not UTF-8."""
    if not blob.startswith(b"<"):
        raise ModelRefused("OpenVINO's first builder must be IR XML (starting with '<'); other model formats "
                           "from guest memory could make the host read files")  # fmt: skip
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise NnError(NnErrno.RUNTIME_ERROR, "openvino cannot load the model: the IR XML is not UTF-8") from None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ModelRefused("the IR XML has a DTD (OpenVINO's IR has none; entities can name files)")
    if "__weights_path" in text:
        raise ModelRefused("the IR XML names a weights file (__weights_path)")
    return text

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
        with _sigstack.kept():
            self._request = graph.compiled.create_infer_request()
        self._n_outputs = len(graph.compiled.outputs)

    def compute(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        cancelled = False

        def cancel() -> None:
            nonlocal cancelled
            cancelled = True
            self._request.cancel()

        try:
            with _sigstack.kept():
                for i, arr in enumerate(inputs):
                    # shared_memory: OpenVINO reads the guest's buffer in place during infer().
                    self._request.set_input_tensor(i, ov.Tensor(arr, shared_memory=True))
                with at_deadline(cancel) as timed:
                    if timed:
                        self._request.start_async()
                        self._request.wait()  # returns (or raises) once it has stopped reading guest memory
                    else:
                        self._request.infer()
                outputs = [self._request.get_output_tensor(i).data for i in range(self._n_outputs)]
                return [np.array(o, copy=True) for o in outputs]
        except Exception as exc:
            if cancelled:
                raise NnError(NnErrno.RUNTIME_ERROR, "openvino: inference cancelled at the call's deadline") from exc
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
        self._core = shared_core()

    def _device(self, target: ExecutionTarget) -> str:
        with _sigstack.kept():
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
            with _sigstack.kept():
                return OpenVinoGraph(self._core.compile_model(model, device, config), keepalive)
        except Exception as exc:
            raise model_error("openvino", exc) from exc

    def load(self, blobs: Sequence[bytes], target: ExecutionTarget) -> Graph:
        self._device(target)  # an unavailable target fails before the (slow) model read
        xml, weights = blobs
        text = check_ir_xml(xml)
        weights_array = np.frombuffer(weights, dtype=np.uint8)
        try:
            with _sigstack.kept():
                model = self._core.read_model(model=text, weights=ov.Tensor(weights_array))
        except Exception as exc:
            raise model_error("openvino", exc) from exc
        return self._compile(model, target, weights_array)

    def load_files(self, paths: Sequence[Path], target: ExecutionTarget) -> Graph:
        self._device(target)
        try:
            with _sigstack.kept():
                model = self._core.read_model(model=str(paths[0]), weights=str(paths[1]))
        except Exception as exc:
            raise model_error("openvino", exc) from exc
        return self._compile(model, target, None)
