"""TensorFlow Lite backend (encoding 4) on LiteRT (`ai-edge-litert`): one Interpreter per context,
because an Interpreter is not thread-safe and owns its tensors.

A guest's flatbuffer may not declare custom ops (Flex ops are custom ops: with a Flex delegate in the process they
run TensorFlow kernels such as ReadFile) or external buffers (weights in a named file; LiteRT 2.x does not load them
from `model_content`, and must never start to for a guest). LiteRT's Python Interpreter cannot be cancelled: past
a guest call's deadline `invoke` runs to its end, and the call then stops with `GuestTimeout`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .._enums import ExecutionTarget
from .._errno import NnErrno, NnError
from ._base import Backend, BackendOptions, Context, Graph, InputSpec, model_error, unsupported_target
from ._onnxrefs import ModelRefused


def check_self_contained(blob: bytes) -> None:
    """ModelRefused for custom ops or external buffers; runtime_error for bytes the check cannot read (it fails
    closed: LiteRT's verifier would refuse them too)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(blob, 0)
        n_codes = model.OperatorCodesLength()
        if n_codes > len(blob) // 4:
            raise ValueError("operator code vector longer than the model")
        custom = schema.BuiltinOperator.CUSTOM
        for i in range(n_codes):
            code = model.OperatorCodes(i)
            if code is not None and custom in (code.BuiltinCode(), code.DeprecatedBuiltinCode()):
                name = (code.CustomCode() or b"").decode("utf-8", "replace")[:64]
                raise ModelRefused(f"custom op {name!r} (custom and Flex ops are not accepted from guest memory)")
        if not model.ExternalBufferGroupsIsNone() or not model.ExternalBuffersIsNone():
            raise ModelRefused("the model declares external buffers (weights in a file)")
    except NnError:
        raise
    except Exception as exc:
        raise model_error("litert", exc) from None


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
        check_self_contained(bytes(blobs[0]))
        try:
            return TfliteGraph(bytes(blobs[0]), self._options.threads)
        except Exception as exc:
            raise model_error("litert", exc) from exc
