"""What a backend provides: a graph loaded from blobs or files, and execution contexts over it."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._enums import ExecutionTarget, NnErrno, NnError


@dataclass(frozen=True)
class BackendOptions:
    """Host-side settings shared by all backends."""

    threads: int = 1  # ONNX Runtime intra_op_num_threads, OpenVINO INFERENCE_NUM_THREADS, LiteRT num_threads
    # OpenVINO's INFERENCE_PRECISION_HINT on CPU. "f32" gives ONNX Runtime's results; None keeps OpenVINO's
    # default, which is bf16 on CPUs with AVX512-BF16/AMX (faster, scores shift by ~1%).
    openvino_precision: str | None = "f32"


@dataclass(frozen=True)
class InputSpec:
    """What the model expects at one input: static dims (None where dynamic) and element type."""

    name: str
    dims: tuple[int | None, ...] | None  # None: rank unknown
    dtype: np.dtype[np.generic] | None  # None: unknown / not checked


def check_input(spec: InputSpec, index: int, dims: Sequence[int], dtype: np.dtype[np.generic]) -> None:
    """invalid_argument unless a guest tensor fits the model input (rank, static dims, element type)."""
    if spec.dtype is not None and spec.dtype != dtype:
        raise NnError(
            NnErrno.INVALID_ARGUMENT, f"input {index} ({spec.name}) wants {spec.dtype.name}, got {dtype.name}"
        )
    if spec.dims is None:
        return
    ok = len(spec.dims) == len(dims) and all(w is None or w == d for w, d in zip(spec.dims, dims, strict=True))
    if not ok:
        want = "x".join("?" if w is None else str(w) for w in spec.dims)
        got = "x".join(str(d) for d in dims)
        raise NnError(NnErrno.INVALID_ARGUMENT, f"input {index} ({spec.name}) wants dims {want}, got {got}")


class Context(abc.ABC):
    """One execution context: runs the graph on a full set of inputs."""

    @abc.abstractmethod
    def compute(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run inference. `inputs` may be views of guest memory, valid only during this call; the result
        must not reference them."""


class Graph(abc.ABC):
    """A loaded model. Shared by all contexts (and threads) made from it."""

    inputs: tuple[InputSpec, ...]
    #: Host memory each execution context holds on top of the graph, as far as the backend knows (charged to the
    #: guest's model budget for graphs loaded from guest memory).
    context_bytes: int = 0

    @abc.abstractmethod
    def new_context(self) -> Context:
        """A fresh execution context."""


class Backend(abc.ABC):
    """One encoding's implementation, importing its Python package when constructed."""

    encoding_name: str
    blob_count: int  # builders `load` requires

    @abc.abstractmethod
    def load(self, blobs: Sequence[bytes], target: ExecutionTarget) -> Graph:
        """A graph from guest-supplied blobs (already checked: len(blobs) == blob_count)."""

    def load_files(self, paths: Sequence[Path], target: ExecutionTarget) -> Graph:
        """A graph from host files (preloads); backends may override to read files directly."""
        return self.load([p.read_bytes() for p in paths], target)


def unsupported_target(target: ExecutionTarget, backend: str) -> NnError:
    return NnError(NnErrno.UNSUPPORTED_OPERATION, f"{backend} backend: target {target.name} is not available")


def model_error(backend: str, exc: BaseException) -> NnError:
    """A blob the backend cannot read as a model: runtime_error, as wasmtime maps its BackendError."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return NnError(NnErrno.RUNTIME_ERROR, f"{backend} cannot load the model: {first[:300]}")
