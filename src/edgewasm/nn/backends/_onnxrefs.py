"""File references in an ONNX model, found by walking its protobuf wire format (the `onnx` package is not needed).

A model from guest memory must be self-contained: ONNX Runtime resolves a tensor's external data against the host's
working directory (and ORT's `*/_ORT_MEM_ADDR_/*` tag against host memory). The walk visits every place a tensor can
sit: graph initializers and sparse initializers, node attributes (a Constant's value, tensor lists), subgraphs of
If/Loop/Scan (any graph attribute, at any depth), local functions and training graphs. It also refuses EPContext
nodes (an execution provider's cached binary, named by path) and an `ort_config` metadata entry (session options ORT
reads from a model when ORT_LOAD_CONFIG_FROM_MODEL=1, profiling files among them). What it cannot read it refuses:
the check fails closed. It walks the structure only; weights (`raw_data`) are skipped by length. A blob made of
millions of tiny fields costs the walk seconds: it stops at the guest call's deadline.
"""

from __future__ import annotations

from ... import _deadline
from .._enums import NnErrno, NnError


class ModelRefused(NnError):
    """A guest-supplied model asks the host for something outside the guest's sandbox (a file, host memory)."""

    def __init__(self, message: str) -> None:
        super().__init__(NnErrno.INVALID_ARGUMENT, message)


class _Malformed(Exception):
    pass


# Message kinds, and for each the fields (all length-delimited) that hold messages worth visiting.
_MODEL, _GRAPH, _NODE, _ATTR, _TENSOR, _SPARSE, _FUNCTION, _TRAINING, _ENTRY = range(9)
_CHILDREN: tuple[dict[int, int], ...] = (
    {7: _GRAPH, 14: _ENTRY, 20: _TRAINING, 25: _FUNCTION},  # ModelProto: graph, metadata_props, training, functions
    {1: _NODE, 5: _TENSOR, 15: _SPARSE},  # GraphProto: node, initializer, sparse_initializer
    {5: _ATTR},  # NodeProto: attribute (op_type, field 4, is checked too)
    {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},  # AttributeProto: t g tensors graphs
    {},  # TensorProto: external_data (13) and data_location (14) are checked
    {1: _TENSOR, 2: _TENSOR},  # SparseTensorProto: values, indices
    {7: _NODE, 11: _ATTR},  # FunctionProto: node, attribute_proto (defaults)
    {1: _GRAPH, 2: _GRAPH},  # TrainingInfoProto: initialization, algorithm
    {},  # StringStringEntryProto (model metadata): key (1) is checked
)
_NAMES = ("model", "graph", "node", "attribute", "tensor", "sparse tensor", "function", "training info", "metadata")
#: Deeper nesting than protobuf's own default recursion limit (100) is not a model anyone wrote.
MAX_DEPTH = 100


def check_self_contained(blob: bytes) -> None:
    """ModelRefused if the model references anything outside itself; NnError(runtime_error) if it is not a
    readable ONNX protobuf."""
    if blob[4:8] == b"ORTM":
        raise ModelRefused("ORT-format models are not accepted from guest memory (send the ONNX protobuf)")
    try:
        where = _find_reference(blob)
    except _Malformed as exc:
        raise NnError(NnErrno.RUNTIME_ERROR, f"not an ONNX model: {exc}") from None
    if where is not None:
        raise ModelRefused(f"{where}; a model from guest memory must be self-contained")


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _find_reference(buf: bytes) -> str | None:
    """A description of the first file reference, or None. Iterative, so nesting cannot exhaust the stack."""
    todo = [(_MODEL, 0, len(buf), 0)]
    fields = 0
    while todo:
        kind, pos, end, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise _Malformed(f"messages nested more than {MAX_DEPTH} deep")
        children = _CHILDREN[kind]
        while pos < end:
            tag = buf[pos]
            if tag < 0x80:
                pos += 1
            else:
                tag, pos = _varint(buf, pos, end)
            field, wire = tag >> 3, tag & 7
            fields += 1
            if not fields & 0xFFFF and _deadline.expired():
                raise NnError(NnErrno.RUNTIME_ERROR, "the model check ran past the call's deadline")
            if field == 0:
                raise _Malformed("field number 0")
            if kind == _TENSOR and field in (13, 14):
                if field == 13:
                    return "a tensor has external data (a file the host would open)"
                if wire != 0:
                    raise _Malformed("tensor data_location is not a varint")
                location, pos = _varint(buf, pos, end)
                if location != 0:
                    return "a tensor's data location is external (a file the host would open)"
                continue
            if wire == 0:
                if pos < end and buf[pos] < 0x80:
                    pos += 1
                else:
                    _, pos = _varint(buf, pos, end)
            elif wire == 2:
                size, pos = _varint(buf, pos, end)
                if size > end - pos:
                    raise _Malformed(f"a {_NAMES[kind]} field runs past the end of its message")
                child = children.get(field)
                if child is not None:
                    todo.append((child, pos, pos + size, depth + 1))
                elif kind == _NODE and field == 4 and buf[pos : pos + size] == b"EPContext":
                    return "an EPContext node (an execution provider's cached binary, named by a path)"
                elif kind == _ENTRY and field == 1 and buf[pos : pos + size] == b"ort_config":
                    return "an ort_config metadata entry (session options, profiling files among them)"
                pos += size
            elif wire == 5:
                pos += 4
            elif wire == 1:
                pos += 8
            else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
                raise _Malformed(f"wire type {wire} in a {_NAMES[kind]}")
            if pos > end:
                raise _Malformed(f"a {_NAMES[kind]} field runs past the end of its message")
    return None
