"""The mapping between a guest's request/response maps (docs/abi.md) and OIP tensors, both directions.

Server, request: every input tensor becomes a key of the request map: a numeric tensor an ndarray with its shape;
a BYTES tensor its element (or a list when it has several), as `bytes` when it came binary or base64, as `str`
when it came as JSON strings (or marked `content_type: "str"`); a BYTES tensor marked `content_type: "json"` is
JSON text for any value. Request parameters other than the protocol's own (`binary_data_output`, `timeout`, ...)
become keys too: that is where options such as `top_k` or `model_id` go.

Server, response: an ndarray becomes a tensor of its dtype and shape (`content_type: "np"`); a bool, int, float,
str or bytes a one-element tensor (BOOL, INT64, FP64, BYTES "str", BYTES); anything else (lists, maps, None) one
BYTES element of JSON text (`content_type: "json"`, bytes inside as `{"$base64": ...}`, arrays as lists).
The client (`client.py`) uses the same rules in reverse, so `Client.infer` answers what `Guest.infer` would.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import BadRequest
from .tensors import Tensor, datatype_of

#: Request parameters that belong to the protocol (Triton's and KServe's), never passed to the guest.
RESERVED_PARAMETERS = frozenset(
    {"binary_data_output", "timeout", "priority", "headers", "sequence_id", "sequence_start", "sequence_end"}
)


def jsonable(obj: Any) -> Any:
    """A response value as JSON: arrays as lists, bytes as {"$base64": ...} (as `edgewasm run` prints them)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$base64": base64.b64encode(bytes(obj)).decode()}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def from_jsonable(obj: Any) -> Any:
    """The reverse of `jsonable` for bytes: {"$base64": text} becomes bytes again."""
    if isinstance(obj, dict):
        if len(obj) == 1 and isinstance(obj.get("$base64"), str):
            try:
                return base64.b64decode(obj["$base64"], validate=True)
            except ValueError:
                raise BadRequest('a {"$base64": ...} value is not valid base64') from None
        return {k: from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    return obj


# -- server: tensors -> request map ------------------------------------------------------------------------------------


def _input_value(t: Tensor) -> Any:
    if t.datatype != "BYTES":
        return t.value
    ct = t.content_type
    elements: list[Any] = t.value
    if ct == "json":
        if len(elements) != 1:
            raise BadRequest(f"input {t.name!r}: a content_type json tensor holds one element")
        try:
            return from_jsonable(json.loads(elements[0]))
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"input {t.name!r}: not JSON text: {e}") from None
    if ct == "str":
        try:
            elements = [e.decode() if isinstance(e, bytes) else e for e in elements]
        except UnicodeDecodeError:
            raise BadRequest(f"input {t.name!r} is marked str but is not UTF-8") from None
    return elements[0] if len(elements) == 1 else elements


def guest_request(inputs: list[Tensor], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The guest's request map from an OIP request's inputs and parameters."""
    request: dict[str, Any] = {t.name: _input_value(t) for t in inputs}
    for key, value in parameters.items():
        if key in RESERVED_PARAMETERS:
            continue
        if key in request:
            raise BadRequest(f"{key!r} is both an input and a parameter")
        request[key] = value
    return request


# -- server: response map -> tensors -----------------------------------------------------------------------------------


_TEXT = json.JSONEncoder(ensure_ascii=False, allow_nan=True).encode  # made once, not per json.dumps call


def output_tensor(name: str, value: Any) -> Tensor:
    if isinstance(value, np.ndarray) and value.dtype.newbyteorder("=") in _NUMERIC_DTYPES:
        return Tensor(name, datatype_of(value.dtype), list(value.shape), value, {"content_type": "np"})
    if isinstance(value, bool):
        return Tensor(name, "BOOL", [1], np.array([value]))
    if isinstance(value, int) and -(1 << 63) <= value < (1 << 63):
        return Tensor(name, "INT64", [1], np.array([value], np.int64))
    if isinstance(value, float):
        return Tensor(name, "FP64", [1], np.array([value], np.float64))
    if isinstance(value, str):
        return Tensor(name, "BYTES", [1], [value], {"content_type": "str"})
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Tensor(name, "BYTES", [1], [bytes(value)])
    text = _TEXT(jsonable(value))
    return Tensor(name, "BYTES", [1], [text], {"content_type": "json"})


_NUMERIC_DTYPES = frozenset(
    np.dtype(n)
    for n in (
        "bool",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "float32",
        "float64",
    )
)


def output_tensors(reply: Any, wanted: Iterable[str] | None) -> list[Tensor]:
    """The response's outputs: every key of the reply map (a reply that is not a map is the output `output`)."""
    values = reply if isinstance(reply, dict) else {"output": reply}
    names = {str(k): v for k, v in values.items()}
    if wanted is None:
        return [output_tensor(k, v) for k, v in names.items()]
    out = []
    for name in wanted:
        if name not in names:
            raise BadRequest(
                f"requested output {name!r} is not in the model's response", hint=f"it has: {', '.join(names)}"
            )
        out.append(output_tensor(name, names[name]))
    return out


# -- client: request map -> tensors, tensors -> response map -----------------------------------------------------------


def request_tensors(request: Mapping[str, Any]) -> tuple[list[Tensor], dict[str, Any]]:
    """A guest request map as OIP inputs and parameters (the reverse of `guest_request`)."""
    inputs: list[Tensor] = []
    params: dict[str, Any] = {}
    for key, value in request.items():
        name = str(key)
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            inputs.append(Tensor(name, datatype_of(arr.dtype), list(arr.shape), arr))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            inputs.append(Tensor(name, "BYTES", [1], [bytes(value)]))
        elif isinstance(value, (bool, int, float, str)) and name not in RESERVED_PARAMETERS:
            params[name] = value
        else:
            text = json.dumps(jsonable(value), ensure_ascii=False)
            inputs.append(Tensor(name, "BYTES", [1], [text], {"content_type": "json"}))
    return inputs, params


def response_value(t: Tensor) -> Any:
    """One output tensor back as the guest's value (the reverse of `output_tensor`)."""
    ct = t.content_type
    if t.datatype != "BYTES":
        arr: np.ndarray[Any, Any] = np.asarray(t.value)
        if ct == "np" or math.prod(t.shape) != 1:
            return arr
        return arr.reshape(-1)[0].item()
    elements: list[Any] = t.value
    if ct == "json":
        e = elements[0]
        return from_jsonable(json.loads(e.decode() if isinstance(e, bytes) else e))
    if ct == "str":
        elements = [e.decode() if isinstance(e, bytes) else e for e in elements]
    return elements[0] if len(elements) == 1 else elements
