"""msgpack with numpy arrays (docs/abi.md): an array is a map {dtype, shape, data}.

Encoding returns segments rather than one `bytes`: an array's buffer is its own segment, so the host copies it
into guest memory with one memmove straight from the array, never through an intermediate `bytes`.

numpy is imported only when an array is seen: a request can hold an array only if the caller imported numpy, and
`edgewasm run` starts faster without it.
"""

from __future__ import annotations

import functools
import math
import struct
import sys
import threading
from typing import TYPE_CHECKING, Any, Union

import msgpack

from ._errors import RequestError

if TYPE_CHECKING:
    import numpy as np

#: A piece of the encoded request: bytes, or a C-contiguous little-endian array whose buffer is copied as is.
Segment = Union[bytes, "np.ndarray"]

DTYPES = frozenset(
    ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32", "float64"]
)
_ARRAY_KEYS = frozenset(("dtype", "shape", "data"))
#: The deepest nesting of arrays and maps a message may have: msgpack's encoder and decoder refuse deeper ones.
MAX_DEPTH = 1024


class _HasArray(Exception):
    pass


def _is_array(obj: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def _scalar_default(obj: Any) -> Any:
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.ndarray):
            raise _HasArray
        if isinstance(obj, np.generic):
            return obj.item()
    if isinstance(obj, int):
        raise OverflowError(f"the integer {obj} does not fit in msgpack's 64 bits")
    raise TypeError(f"cannot send a {type(obj).__name__} to a guest")


@functools.cache
def _dtypes() -> tuple[dict[Any, str], dict[str, Any]]:
    """dtype -> wire name and back, little-endian. `dtype.name` is a slow Python property; a dict is not."""
    import numpy as np

    by_name = {name: np.dtype(name).newbyteorder("<") for name in DTYPES}
    return {dt: name for name, dt in by_name.items()}, by_name


def _as_wire_array(arr: np.ndarray) -> tuple[np.ndarray, str]:
    names = _dtypes()[0]
    name = names.get(arr.dtype)
    if name is None:
        if arr.dtype.byteorder == ">" and arr.dtype.name in DTYPES:
            arr = arr.astype(arr.dtype.newbyteorder("<"))
            name = arr.dtype.name
        else:
            raise RequestError(
                f"cannot send an array of dtype {arr.dtype}",
                hint=f"convert it to one of: {', '.join(sorted(DTYPES))}",
            )
    return (arr if arr.flags.c_contiguous else arr.copy(order="C")), name


def _bin_header(n: int) -> bytes:
    if n < 0x100:
        return struct.pack(">BB", 0xC4, n)
    if n < 0x10000:
        return struct.pack(">BH", 0xC5, n)
    return struct.pack(">BI", 0xC6, n)


@functools.lru_cache(maxsize=256)
def _array_header(dtype: str, shape: tuple[int, ...], nbytes: int) -> bytes:
    """Everything of an array's map before its data; the same few shapes recur, so it is built once each."""
    header: bytes = (
        b"\x83"
        + msgpack.packb("dtype")
        + msgpack.packb(dtype)
        + msgpack.packb("shape")
        + msgpack.packb(list(shape))
        + msgpack.packb("data")
        + _bin_header(nbytes)
    )
    return header


class _Writer:
    def __init__(self) -> None:
        self.packer = msgpack.Packer(autoreset=False, default=_scalar_default)
        self.segments: list[Segment] = []

    def _flush(self) -> None:
        if len(self.packer.getbuffer()):
            self.segments.append(self.packer.bytes())
            self.packer.reset()

    def value(self, obj: Any, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise RequestError(f"the request nests deeper than {MAX_DEPTH} levels", hint="flatten the request")
        if _is_array(obj):
            arr, dtype = _as_wire_array(obj)
            self._flush()
            self.segments.append(_array_header(dtype, arr.shape, arr.nbytes))
            if arr.nbytes:
                self.segments.append(arr)
        elif isinstance(obj, dict):
            self.packer.pack_map_header(len(obj))
            for k, v in obj.items():
                self.value(k, depth + 1)
                self.value(v, depth + 1)
        elif isinstance(obj, (list, tuple)) and not isinstance(obj, msgpack.ExtType):  # ExtType is a namedtuple
            self.packer.pack_array_header(len(obj))
            for v in obj:
                self.value(v, depth + 1)
        else:
            try:
                self.packer.pack(obj)
            except _HasArray:  # an array inside a container type we do not walk
                raise RequestError("numpy arrays may only appear inside dicts, lists and tuples") from None

    def finish(self) -> list[Segment]:
        self._flush()
        return self.segments


#: Each thread's msgpack encoder, kept: `msgpack.packb` makes a new one, with a 256 KiB buffer, every call.
_local = threading.local()
#: A kept encoder whose last message was larger than this is dropped (it keeps its grown buffer otherwise).
_KEEP_BELOW = 0x40000


def _pack(obj: Any) -> bytes:
    packer = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(default=_scalar_default)
    out: bytes = packer.pack(obj)  # (on an exception the packer empties its buffer: it stays usable)
    if len(out) >= _KEEP_BELOW:
        _local.packer = None
    return out


def encode(obj: Any) -> list[Segment]:
    """Encode a request; the common case without arrays is one msgpack call."""
    # Requests are usually maps: an array among their values goes straight to the segment writer. (A loop here,
    # not a function per value: this runs for every request.)
    top_level_array = False
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, dict):
        ndarray = np.ndarray
        for v in obj.values():
            if isinstance(v, ndarray):
                top_level_array = True
                break
    if not top_level_array:
        try:
            return [_pack(obj)]
        except _HasArray:
            pass
        except (TypeError, ValueError, OverflowError) as e:
            raise _encode_error(e) from None
    writer = _Writer()
    try:
        writer.value(obj)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise _encode_error(e) from None
    return writer.finish()


def _encode_error(e: Exception) -> RequestError:
    if isinstance(e, RecursionError) or "recursion limit" in str(e):
        return RequestError(f"the request nests deeper than {MAX_DEPTH} levels", hint="flatten the request")
    return RequestError(f"cannot encode the request as msgpack: {e}")


def _array_hook(obj: dict[Any, Any]) -> Any:
    if len(obj) != 3:
        return obj
    try:
        dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
        dt = _dtypes()[1][dtype]
    except (KeyError, TypeError):  # not an array map, or an unhashable/unknown dtype
        return obj
    if type(data) is bytes and type(shape) is list and all(type(d) is int for d in shape):
        try:
            if math.prod(shape) * dt.itemsize == len(data) and min(shape, default=0) >= 0:
                return _numpy().ndarray(shape, dt, data)  # a read-only view of the decoded bytes
        except (TypeError, ValueError, OverflowError):  # e.g. more dims than numpy allows, or a zero-size giant
            return obj
    return obj


@functools.cache
def _numpy() -> Any:
    import numpy

    return numpy


def decode(buf: Any) -> Any:
    """Decode a message; raises ValueError (the caller turns it into its own error) on anything it cannot decode.

    Any msgpack value decodes (ext types as `msgpack.ExtType`, ext -1 as `msgpack.Timestamp`) except a map key that
    is an array or a map (Python cannot hash it) and nesting deeper than msgpack's decoder allows.
    """
    try:
        return msgpack.unpackb(buf, object_hook=_array_hook, raw=False, strict_map_key=False)
    except msgpack.StackError:
        raise ValueError(f"it nests deeper than {MAX_DEPTH} levels") from None
    except TypeError as e:  # a list, map or array as a map key: "unhashable type"
        raise ValueError(f"a map key is an array or a map ({e})") from None
