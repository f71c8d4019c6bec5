"""Open Inference Protocol tensors on the wire: JSON `data`, and the binary tensor data extension.

A request or response is a JSON header, optionally followed by raw tensor bytes; the header's length is then in
the `Inference-Header-Content-Length` HTTP header, and each binary tensor says its size in
`parameters.binary_data_size`. A BYTES element in binary form is a 4-byte little-endian length and its bytes.
This module knows only that format; how tensors map onto a guest's request and response is `mapping`'s job.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import BadRequest

try:  # the serve extra installs it; the client works without it, on the standard library alone
    import orjson
except ImportError:  # pragma: no cover - exercised only without the extra
    orjson = None  # type: ignore[assignment]

#: The HTTP header that carries the JSON header's length when binary data follows it.
HEADER_LENGTH = "Inference-Header-Content-Length"

NUMERIC = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64", "INT8": "int8",
    "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64",
}  # fmt: skip
DATATYPE_OF = {np.dtype(v): k for k, v in NUMERIC.items()}
_LE = {k: np.dtype(v).newbyteorder("<") for k, v in NUMERIC.items()}
#: numpy kinds a JSON array may have for each datatype family (ints are fine as floats, floats not as ints).
_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}


@dataclasses.dataclass
class Tensor:
    """One tensor. `value` is an ndarray of `shape` (numeric) or a flat list of elements (BYTES)."""

    name: str
    datatype: str
    shape: list[int]
    value: Any
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def content_type(self) -> str | None:
        ct = self.parameters.get("content_type")
        return ct if isinstance(ct, str) else None


def datatype_of(dtype: np.dtype[Any]) -> str:
    return DATATYPE_OF[dtype.newbyteorder("=")] if dtype.byteorder == "<" else DATATYPE_OF[dtype]


# -- reading -----------------------------------------------------------------------------------------------------------


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON header (an object) and the binary part after it."""
    if header_length is None:
        head, rest = body, memoryview(b"")
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise BadRequest(f"{HEADER_LENGTH} is not an integer: {header_length[:40]!r}") from None
        if not 0 < n <= len(body):
            raise BadRequest(f"{HEADER_LENGTH} is {n} but the body has {len(body)} bytes")
        head, rest = body[:n], memoryview(body)[n:]
    try:
        header = loads(head)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}", hint="send an OIP inference request") from None
    if not isinstance(header, dict):
        raise BadRequest("request JSON must be an object with an 'inputs' list")
    return header, rest


def _integer_table() -> bytes:
    table = bytearray(b"x" * 256)
    for c in b"0123456789":
        table[c] = ord("0")
    for c in b"[,: \t\n\r-":  # what may stand before an integer's digits (JSON whitespace, separators, sign)
        table[c] = ord(" ")
    return bytes(table)


_INTEGER_TABLE = _integer_table()
_LONG_RUN = b"0" * 19


def _may_hold_a_long_integer(data: bytes) -> bool:
    """Whether `data` may hold an integer of 19 digits or more: orjson reads those past 64 bits as floats, where
    `json.loads` keeps them exact. Digits after a '.' or in a string do not count (a float's fraction often has 19
    digits); one C pass of translate and find, about 1 ms per MB."""
    t = data.translate(_INTEGER_TABLE)
    return t.startswith(_LONG_RUN) or t.find(b" " + _LONG_RUN) >= 0


def loads(data: bytes) -> Any:
    """`json.loads`, through orjson (3-7x faster) when it is installed. What orjson refuses (NaN and Infinity,
    nesting past 1024, UTF-16, lone surrogates, bad JSON), and text with integers too long for it to keep exact,
    is read by `json.loads`: what is accepted, the values, and every error and its message are the standard
    library's."""
    if orjson is not None and not _may_hold_a_long_integer(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def _shape(item: dict[str, Any], where: str) -> list[int]:
    shape = item.get("shape")
    if isinstance(shape, list):
        for d in shape:  # (a loop, not all() over a generator: this runs for every tensor of every request)
            if type(d) is not int or d < 0:
                break
        else:
            return shape
    raise BadRequest(f"{where}: shape must be a list of non-negative integers, got {shape!r}")


def _parameters(item: dict[str, Any], where: str) -> dict[str, Any]:
    params = item.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequest(f"{where}: parameters must be an object")
    return params


def read_tensors(items: Any, binary: memoryview, what: str = "input") -> list[Tensor]:
    """Parse the `inputs` list, taking binary tensors from `binary` in order; every byte must be used."""
    if not isinstance(items, list):
        raise BadRequest(f"'{what}s' must be a list of tensors")
    offset = 0
    tensors = []
    names: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"{what} {i}: must be an object with a string 'name'")
        name = item["name"]
        where = f"{what} {name!r}"
        if name in names:
            raise BadRequest(f"{where} is given twice")
        names.add(name)
        datatype = item.get("datatype")
        if datatype != "BYTES" and datatype not in NUMERIC:
            raise BadRequest(
                f"{where}: unknown datatype {datatype!r}", hint="use BOOL, UINT8..64, INT8..64, FP16/32/64 or BYTES"
            )
        shape = _shape(item, where)
        params = _parameters(item, where)
        size = params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise BadRequest(
                    f"{where}: binary_data_size {size!r} does not fit the {len(binary) - offset} bytes left"
                )
            raw = binary[offset : offset + size]
            offset += size
            value = _from_binary(raw, datatype, shape, where)
        else:
            if "data" not in item:
                raise BadRequest(f"{where}: no 'data' and no binary_data_size")
            value = _from_json(item["data"], datatype, shape, params, where)
        tensors.append(Tensor(name, datatype, shape, value, params))
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data after the last binary tensor")
    return tensors


def _from_binary(raw: memoryview, datatype: str, shape: list[int], where: str) -> Any:
    count = math.prod(shape)
    if datatype == "BYTES":
        elements = unpack_bytes(raw, where)
        if len(elements) != count:
            raise BadRequest(f"{where}: {len(elements)} BYTES elements for shape {shape}")
        return elements
    dt = _LE[datatype]
    if len(raw) != count * dt.itemsize:
        raise BadRequest(
            f"{where}: {len(raw)} bytes of binary data for {datatype} {shape} ({count * dt.itemsize} needed)"
        )
    return np.frombuffer(raw, dtype=dt).reshape(shape)


def unpack_bytes(raw: memoryview | bytes, where: str = "tensor") -> list[bytes]:
    out = []
    view = memoryview(raw)
    i = 0
    while i < len(view):
        if i + 4 > len(view):
            raise BadRequest(f"{where}: a BYTES element's 4-byte length is cut short")
        (n,) = struct.unpack_from("<I", view, i)
        i += 4
        if i + n > len(view):
            raise BadRequest(f"{where}: a BYTES element says {n} bytes but {len(view) - i} are left")
        out.append(bytes(view[i : i + n]))
        i += n
    return out


def _flat(data: Any) -> Iterable[Any]:
    for x in data:
        if isinstance(x, list):
            yield from _flat(x)
        else:
            yield x


def _from_json(data: Any, datatype: str, shape: list[int], params: dict[str, Any], where: str) -> Any:
    count = math.prod(shape)
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        elements: list[Any] = data
        for e in data:
            if type(e) is not str:  # nested lists (or not strings): the general way
                elements = list(_flat(data))
                for e in elements:
                    if not isinstance(e, str):
                        raise BadRequest(f"{where}: BYTES data must be strings")
                break
        if params.get("content_type") == "base64":
            try:
                elements = [base64.b64decode(e, validate=True) for e in elements]
            except (binascii.Error, ValueError):
                raise BadRequest(f"{where}: data is marked base64 but is not valid base64") from None
        if len(elements) != count:
            raise BadRequest(f"{where}: {len(elements)} elements for shape {shape}")
        return elements
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise BadRequest(f"{where}: data is not a (rectangular) list of numbers") from None
    dt = np.dtype(NUMERIC[datatype])
    if arr.size and arr.dtype.kind not in _KINDS[dt.kind]:
        raise BadRequest(f"{where}: data of kind {arr.dtype.kind!r} (numpy) is not {datatype}")
    if arr.size != count:
        raise BadRequest(f"{where}: {arr.size} elements for shape {shape}")
    if dt.kind in "iu" and arr.size:
        info = np.iinfo(dt)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise BadRequest(f"{where}: values out of range for {datatype}")
    with np.errstate(over="ignore"):
        out = arr.astype(dt).reshape(shape)
    if dt.kind == "f" and arr.size and not np.isfinite(out).all() and np.isfinite(arr.astype(np.float64)).all():
        raise BadRequest(f"{where}: values out of range for {datatype}")
    return out


# -- writing -----------------------------------------------------------------------------------------------------------


def pack_bytes(elements: Iterable[bytes | str]) -> bytes:
    parts = []
    for e in elements:
        b = e.encode() if isinstance(e, str) else bytes(e)
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def _jsonable_data(t: Tensor) -> Any:
    if t.datatype != "BYTES":
        return np.asarray(t.value).ravel().tolist()
    for e in t.value:
        if not isinstance(e, str):
            break
    else:
        return list(t.value)
    # Raw bytes cannot be JSON strings: every element goes base64, marked as MLServer marks it.
    t.parameters["content_type"] = "base64"
    return [base64.b64encode(e.encode() if isinstance(e, str) else bytes(e)).decode() for e in t.value]


def _binary_data(t: Tensor) -> bytes:
    if t.datatype == "BYTES":
        return pack_bytes(t.value)
    arr = np.ascontiguousarray(t.value, dtype=_LE[t.datatype])
    return arr.tobytes()


#: `json.dumps(..., separators=(",", ":"))` builds a new encoder every call (any keyword does): this one is kept.
_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=True).encode
_FLOATS = frozenset(("FP16", "FP32", "FP64"))


def _finite(obj: Any) -> bool:
    """No NaN or infinity anywhere in `obj` (plain JSON values): orjson would write them as null."""
    if type(obj) is float:
        return math.isfinite(obj)
    if type(obj) is dict:
        values: Iterable[Any] = obj.values()
    elif type(obj) is list:
        values = obj
    else:
        return True
    for v in values:  # noqa: SIM110 - a loop: all() over a generator costs two calls per request
        if type(v) is not str and not _finite(v):  # (strings, the common case, without a call)
            return False
    return True


def dumps(obj: Any, finite: bool) -> bytes:
    """Compact JSON, through orjson (about 10x faster) when it is installed and `finite` says `obj` holds no NaN
    or infinity. Otherwise, and for anything orjson refuses (a subclass, a non-string key, an integer past 64
    bits), the standard library's encoder writes it, NaN as NaN. The two differ only in that orjson writes
    non-ASCII characters as UTF-8 where the standard library escapes them: the same JSON value either way."""
    if finite and orjson is not None:
        try:
            return orjson.dumps(obj, option=orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
                                | orjson.OPT_PASSTHROUGH_DATETIME)  # fmt: skip
        except TypeError:
            pass
    return _COMPACT(obj).encode()


def write_body(header: dict[str, Any], key: str, tensors: list[Tensor], binary: set[str]) -> tuple[bytes, int | None]:
    """Serialize a request (`key` "inputs") or response ("outputs"); tensors named in `binary` go as raw bytes.

    Returns the body and the JSON header's length (None when nothing binary follows it).
    """
    items = []
    blobs = []
    finite = _finite(header)
    for t in tensors:
        item: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if t.name in binary:
            blob = _binary_data(t)
            blobs.append(blob)
            t.parameters["binary_data_size"] = len(blob)
        else:
            if finite and t.datatype in _FLOATS:
                finite = bool(np.isfinite(t.value).all())
            item["data"] = _jsonable_data(t)
        if t.parameters:
            finite = finite and _finite(t.parameters)
            item["parameters"] = t.parameters
        items.append(item)
    head = dumps({**header, key: items}, finite)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)
