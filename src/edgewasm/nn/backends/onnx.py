"""ONNX backend (encoding 1) on ONNX Runtime: one InferenceSession per graph, shared by its contexts.

A model from guest memory must not reference files (`_onnxrefs` refuses it before ONNX Runtime sees it); as a
second wall, its session resolves external data in a directory that cannot hold files and reads only the ONNX
format. Preloads (files the user chose) are read from their path, external data next to them included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .._enums import ExecutionTarget, NnErrno, NnError
from .._watchdog import at_deadline
from ._base import Backend, BackendOptions, Context, Graph, InputSpec, model_error, unsupported_target
from ._onnxrefs import check_self_contained

#: Where a guest model's external data would be looked for: beneath a device file nothing can ever exist (ONNX
#: Runtime refuses absolute paths and paths that climb out of this directory).
NO_FILES_DIR = os.path.join(os.devnull, "edgewasm-guest-models-have-no-files")

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
        options = ort.RunOptions()

        def terminate() -> None:  # ONNX Runtime checks the flag between kernels
            options.terminate = True

        try:
            with at_deadline(terminate):
                # ONNX Runtime wraps C-contiguous numpy inputs of the right type without copying them.
                outputs = self._graph.session.run(self._graph.output_names, feeds, options)
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
        if isinstance(model, bytes):
            so.add_session_config_entry("session.model_external_initializers_file_folder_path", NO_FILES_DIR)
            so.add_session_config_entry("session.load_model_format", "ONNX")
        try:
            return OnnxGraph(ort.InferenceSession(model, sess_options=so, providers=providers))
        except Exception as exc:
            raise model_error("onnxruntime", exc) from exc

    def load(self, blobs: Sequence[bytes], target: ExecutionTarget) -> Graph:
        self._providers(target)  # an unavailable target is the first thing to say
        check_self_contained(blobs[0])
        return self._session(bytes(blobs[0]), target)

    def load_files(self, paths: Sequence[Path], target: ExecutionTarget) -> Graph:
        return self._session(str(paths[0]), target)
