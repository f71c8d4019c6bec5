"""TensorFlow Lite backend (encoding 4) on LiteRT (`ai-edge-litert`): one Interpreter per context,
because an Interpreter is not thread-safe and owns its tensors.

A guest's flatbuffer may not declare custom ops (Flex ops are custom ops: with a Flex delegate in the process they
run TensorFlow kernels such as ReadFile) or external buffers (weights in a named file; LiteRT 2.x does not load them
from `model_content`, and must never start to for a guest). LiteRT's Python Interpreter cannot be cancelled: past
a guest call's deadline `invoke` runs to its end, and the call then stops with `GuestTimeout`.

Each interpreter's XNNPACK delegate packs its own copy of the constant inputs of every op, once per op: a weight
shared by many ops is packed many times (a 5 MB model became 590 MiB). So a context's cost (`context_bytes`, charged
to the guest's model budget) is the sum over ops of their constant inputs, and the graph's probe interpreter, which
only validates the model and reads its inputs, runs without the delegate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from .._enums import ExecutionTarget, NnErrno, NnError
from ._base import Backend, BackendOptions, Context, Graph, InputSpec, model_error, unsupported_target
from ._onnxrefs import ModelRefused


def check_self_contained(blob: bytes) -> int:
    """The bytes an interpreter's delegate packs (constant op inputs, counted per op); ModelRefused for custom ops
    or external buffers; runtime_error for bytes the check cannot read (it fails closed: LiteRT's verifier would
    refuse them too)."""
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
        return _packed_bytes(model, len(blob))
    except NnError:
        raise
    except Exception as exc:
        raise model_error("litert", exc) from None


def _packed_bytes(model: Any, size: int) -> int:
    """Sum over every op of the bytes of its constant inputs (a buffer with data)."""
    n_buffers = model.BuffersLength()
    if n_buffers > size // 4:
        raise ValueError("buffer vector longer than the model")
    buffer_bytes = np.zeros(n_buffers + 1, np.int64)  # index n_buffers: "no buffer" for out-of-range references
    for i in range(n_buffers):
        b = model.Buffers(i)
        buffer_bytes[i] = max(b.DataLength(), b.Size() if b.Offset() > 1 else 0)
    total = 0
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        n_tensors = sub.TensorsLength()
        if n_tensors > size // 4 or sub.OperatorsLength() > size // 4:
            raise ValueError("tensor or operator vector longer than the model")
        tensor_bytes = np.zeros(n_tensors + 1, np.int64)  # index n_tensors: optional inputs (-1)
        for t in range(n_tensors):
            buf = sub.Tensors(t).Buffer()
            tensor_bytes[t] = buffer_bytes[buf if 0 <= buf < n_buffers else n_buffers]
        for o in range(sub.OperatorsLength()):
            inputs = sub.Operators(o).InputsAsNumpy()
            if isinstance(inputs, np.ndarray) and inputs.size:
                idx = np.where((inputs >= 0) & (inputs < n_tensors), inputs, n_tensors)
                total += int(tensor_bytes[idx].sum())
    return total


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
    def __init__(self, model: bytes, threads: int, context_bytes: int = 0) -> None:
        self._model = model
        self._threads = threads
        self.context_bytes = context_bytes
        # validates the flatbuffer and gives the input specs, without the delegate's packed weights
        probe = self.interpreter(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.inputs = tuple(
            InputSpec(str(d["name"]), tuple(int(x) for x in d["shape"]), np.dtype(d["dtype"]))
            for d in probe.get_input_details()
        )

    def interpreter(self, resolver: OpResolverType = OpResolverType.AUTO) -> Any:
        interp = Interpreter(
            model_content=self._model, num_threads=self._threads, experimental_op_resolver_type=resolver
        )
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
        packed = check_self_contained(bytes(blobs[0]))
        try:
            return TfliteGraph(bytes(blobs[0]), self._options.threads, packed)
        except Exception as exc:
            raise model_error("litert", exc) from exc

    def load_files(self, paths: Sequence[Path], target: ExecutionTarget) -> Graph:
        """A preload: the user's file, trusted (custom ops and all) and not charged to any guest."""
        if target not in (ExecutionTarget.CPU, ExecutionTarget.AUTO):
            raise unsupported_target(target, "tensorflowlite")
        try:
            return TfliteGraph(paths[0].read_bytes(), self._options.threads)
        except Exception as exc:
            raise model_error("litert", exc) from exc
