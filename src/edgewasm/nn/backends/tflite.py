"""TensorFlow Lite backend (encoding 4) on LiteRT (`ai-edge-litert`): one Interpreter per context,
because an Interpreter is not thread-safe and owns its tensors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .._enums import ExecutionTarget
from .._errno import NnErrno, NnError
from ._base import Backend, BackendOptions, Context, Graph, InputSpec, model_error, unsupported_target


class TfliteContext(Context):
    def __init__(self, graph: TfliteGraph) -> None:
        self._interp = graph.interpreter()
        self._inputs = [d["index"] for d in self._interp.get_input_details()]
        self._outputs = [d["index"] for d in self._interp.get_output_details()]

    def compute(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            for index, arr in zip(self._inputs, inputs, strict=True):
                self._interp.set_tensor(index, arr)  # LiteRT copies into its own arena: it must
            self._interp.invoke()
            return [np.array(self._interp.get_tensor(i), copy=True) for i in self._outputs]
        except Exception as exc:
            raise NnError(NnErrno.RUNTIME_ERROR, f"litert: {str(exc).strip().splitlines()[0][:300]}") from exc


class TfliteGraph(Graph):
    def __init__(self, model: bytes, threads: int) -> None:
        self._model = model
        self._threads = threads
        probe = self.interpreter()  # validates the flatbuffer and gives the input specs
        self.inputs = tuple(
            InputSpec(str(d["name"]), tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]))
            for d in probe.get_input_details()
        )

    def interpreter(self) -> Any:
        interp = Interpreter(model_content=self._model, num_threads=self._threads)
        interp.allocate_tensors()
        return interp

    def new_context(self) -> Context:
        try:
            return TfliteContext(self)
        except Exception as exc:
            raise NnError(NnErrno.RUNTIME_ERROR, f"litert: {exc}") from exc


class TfliteBackend(Backend):
    encoding_name = "tensorflowlite"
    blob_count = 1

    def __init__(self, options: BackendOptions) -> None:
        self._options = options

    def load(self, blobs: Sequence[bytes], target: ExecutionTarget) -> Graph:
        if target not in (ExecutionTarget.CPU, ExecutionTarget.AUTO):
            raise unsupported_target(target, "tensorflowlite")
        try:
            return TfliteGraph(bytes(blobs[0]), self._options.threads)
        except Exception as exc:
            raise model_error("litert", exc) from exc
