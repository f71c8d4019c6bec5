"""msgpack with numpy arrays (docs/abi.md): an array is a map {dtype, shape, data}.

Encoding returns segments rather than one `bytes`: an array's buffer is its own segment, so the host copies it
into guest memory with one memmove straight from the array, never through an intermediate `bytes`.

numpy is imported only when an array is seen: a request can hold an array only if the caller imported numpy, and
`edgewasm run` starts faster without it.
"""

from __future__ import annotations

import struct
import sys
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
    raise TypeError(f"cannot send a {type(obj).__name__} to a guest")


def _as_wire_array(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.name not in DTYPES:
        raise RequestError(
            f"cannot send an array of dtype {arr.dtype}",
            hint=f"convert it to one of: {', '.join(sorted(DTYPES))}",
        )
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _bin_header(n: int) -> bytes:
    if n < 0x100:
        return struct.pack(">BB", 0xC4, n)
    if n < 0x10000:
        return struct.pack(">BH", 0xC5, n)
    return struct.pack(">BI", 0xC6, n)


class _Writer:
    def __init__(self) -> None:
        self.packer = msgpack.Packer(autoreset=False, default=_scalar_default)
        self.segments: list[Segment] = []

    def _flush(self) -> None:
        if len(self.packer.getbuffer()):
            self.segments.append(self.packer.bytes())
            self.packer.reset()

    def value(self, obj: Any) -> None:
        if _is_array(obj):
            arr = _as_wire_array(obj)
            p = self.packer
            p.pack_map_header(3)
            p.pack("dtype")
            p.pack(arr.dtype.name)
            p.pack("shape")
            p.pack(list(arr.shape))
            p.pack("data")
            self._flush()
            self.segments.append(_bin_header(arr.nbytes))
            if arr.nbytes:
                self.segments.append(arr)
        elif isinstance(obj, dict):
            self.packer.pack_map_header(len(obj))
            for k, v in obj.items():
                self.value(k)
                self.value(v)
        elif isinstance(obj, (list, tuple)):
            self.packer.pack_array_header(len(obj))
            for v in obj:
                self.value(v)
        else:
            try:
                self.packer.pack(obj)
            except _HasArray:  # an array inside a container type we do not walk
                raise RequestError("numpy arrays may only appear inside dicts, lists and tuples") from None

    def finish(self) -> list[Segment]:
        self._flush()
        return self.segments


def encode(obj: Any) -> list[Segment]:
    """Encode a request; the common case without arrays is one msgpack call."""
    # Requests are usually maps: an array among their values goes straight to the segment writer.
    top_level_array = isinstance(obj, dict) and "numpy" in sys.modules and any(map(_is_array, obj.values()))
    if not top_level_array:
        try:
            return [msgpack.packb(obj, default=_scalar_default)]
        except _HasArray:
            pass
        except (TypeError, ValueError, OverflowError) as e:
            raise RequestError(f"cannot encode the request as msgpack: {e}") from None
    writer = _Writer()
    try:
        writer.value(obj)
    except (TypeError, ValueError, OverflowError) as e:
        raise RequestError(f"cannot encode the request as msgpack: {e}") from None
    return writer.finish()


def _array_hook(obj: dict[Any, Any]) -> Any:
    if len(obj) == 3 and obj.keys() == _ARRAY_KEYS:
        dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
        if (
            isinstance(dtype, str)
            and dtype in DTYPES
            and isinstance(data, bytes)
            and isinstance(shape, list)
            and all(isinstance(d, int) and d >= 0 for d in shape)
        ):
            import numpy as np

            dt = np.dtype(dtype).newbyteorder("<")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            if count * dt.itemsize == len(data):
                return np.frombuffer(data, dtype=dt).reshape(shape)
    return obj


def decode(buf: Any) -> Any:
    """Decode a response; raises ValueError (the caller turns it into an AbiError) on malformed msgpack."""
    return msgpack.unpackb(buf, object_hook=_array_hook, raw=False, strict_map_key=False)
