"""ONNX backend (encoding 1) on ONNX Runtime: one InferenceSession per graph, shared by its contexts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .._enums import ExecutionTarget
from .._errno import NnErrno, NnError
from ._base import Backend, BackendOptions, Context, Graph, InputSpec, model_error, unsupported_target

_ORT_TYPES: dict[str, np.dtype[np.generic]] = {
    "tensor(float16)": np.dtype("<f2"),
    "tensor(float)": np.dtype("<f4"),
    "tensor(double)": np.dtype("<f8"),
    "tensor(uint8)": np.dtype("u1"),
    "tensor(int8)": np.dtype("i1"),
    "tensor(int32)": np.dtype("<i4"),
    "tensor(int64)": np.dtype("<i8"),
}


def _dims(shape: Any) -> tuple[int | None, ...] | None:
    if shape is None:
        return None
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)


class OnnxContext(Context):
    def __init__(self, graph: OnnxGraph) -> None:
        self._graph = graph

    def compute(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        feeds = {spec.name: arr for spec, arr in zip(self._graph.inputs, inputs, strict=True)}
        try:
            # ONNX Runtime wraps C-contiguous numpy inputs of the right type without copying them.
            outputs = self._graph.session.run(self._graph.output_names, feeds)
        except Exception as exc:  # an ORT failure is a backend error for the guest
            raise NnError(NnErrno.RUNTIME_ERROR, f"onnxruntime: {str(exc).splitlines()[0][:300]}") from exc
        return [np.ascontiguousarray(o) for o in outputs]


class OnnxGraph(Graph):
    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.inputs = tuple(InputSpec(i.name, _dims(i.shape), _ORT_TYPES.get(i.type)) for i in session.get_inputs())
        self.output_names = [o.name for o in session.get_outputs()]

    def new_context(self) -> Context:
        return OnnxContext(self)


class OnnxBackend(Backend):
    encoding_name = "onnx"
    blob_count = 1

    def __init__(self, options: BackendOptions) -> None:
        self._options = options

    def _providers(self, target: ExecutionTarget) -> list[str]:
        available = ort.get_available_providers()
        if target in (ExecutionTarget.CPU, ExecutionTarget.AUTO):
            if target is ExecutionTarget.AUTO and "CUDAExecutionProvider" in available:
                return ["CUDAExecutionProvider", "CPUExecutionProvider"]
            return ["CPUExecutionProvider"]
        if target is ExecutionTarget.GPU and "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        raise unsupported_target(target, "onnx")

    def _session(self, model: bytes | str, target: ExecutionTarget) -> OnnxGraph:
        providers = self._providers(target)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self._options.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3  # errors only: a bad model is reported to the guest, not printed
        try:
            return OnnxGraph(ort.InferenceSession(model, sess_options=so, providers=providers))
        except Exception as exc:
            raise model_error("onnxruntime", exc) from exc

    def load(self, blobs: Sequence[bytes], target: ExecutionTarget) -> Graph:
        return self._session(blobs[0], target)

    def load_files(self, paths: Sequence[Path], target: ExecutionTarget) -> Graph:
        return self._session(str(paths[0]), target)
