"""Read a legacy (pre-1.6, non-zip) ``torch.save`` file into numpy without torch.

The file is a run of pickles: magic number, protocol version 1001, sys info, the state dict (whose
persistent ids name storages), the list of storage keys; then per key an 8-byte little-endian element count
and the raw little-endian bytes. A restricted unpickler resolves only the handful of torch names such a state
dict uses; any other global is refused, so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from .._errors import ModelStoreError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` etc.: only its element type matters."""

    name: str
    dtype: np.dtype[Any]


@dataclass
class _StorageRef:
    key: str
    dtype: np.dtype[Any]
    size: int


@dataclass
class _PendingTensor:
    """A tensor whose storage bytes come after the pickle; materialised once they are read."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> _PendingTensor:
    if not isinstance(storage, _StorageRef):
        raise ModelStoreError("unsupported torch file: a tensor is not backed by a storage")
    return _PendingTensor(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and ``torch.*Storage`` only."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict  # the state dict itself; its _metadata attribute is ignored
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise ModelStoreError(f"refusing to load {module}.{name} from a torch file (only plain state dicts are read)")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise ModelStoreError(f"unsupported persistent id in torch file: {pid!r:.80}")
        _, storage_type, key, _location, size, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            raise ModelStoreError(f"unsupported storage type in torch file: {storage_type!r:.80}")
        if view_metadata is not None:
            raise ModelStoreError("unsupported torch file: storage views (pre-1.0 format) are not supported")
        ref = self.storages.get(str(key))
        if ref is None:
            ref = _StorageRef(str(key), storage_type.dtype, int(size))
            self.storages[str(key)] = ref
        return ref


def _load_plain(f: IO[bytes]) -> Any:
    """One of the header pickles: plain data only."""
    return _RestrictedUnpickler(f).load()


def _materialise(t: _PendingTensor, data: dict[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
    flat = data[t.storage.key]
    if not t.shape:
        return flat[t.offset : t.offset + 1].reshape(()).copy()
    needed = t.offset + 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride, strict=True) if n > 0)
    if any(n == 0 for n in t.shape):
        return np.zeros(t.shape, dtype=flat.dtype)
    if needed > flat.size:
        raise ModelStoreError(f"corrupt torch file: tensor reaches past its storage {t.storage.key}")
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset :], shape=t.shape, strides=tuple(s * item for s in t.stride), writeable=False
    )
    return np.ascontiguousarray(view)


def load_state_dict(source: str | Path | bytes) -> dict[str, npt.NDArray[Any]]:
    """Name -> numpy array (native-endian copy) for every entry of a legacy torch state-dict file."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    if raw[:2] == b"PK":
        raise ModelStoreError("torch file is in the zip format (torch >= 1.6); only the legacy format is read")
    f = io.BytesIO(raw)
    try:
        magic = _load_plain(f)
        if magic != MAGIC_NUMBER:
            raise ModelStoreError("not a legacy torch file (bad magic number)")
        version = _load_plain(f)
        if version != PROTOCOL_VERSION:
            raise ModelStoreError(f"unsupported legacy torch protocol version {version!r}")
        sys_info = _load_plain(f)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise ModelStoreError("big-endian torch files are not supported")
        unpickler = _RestrictedUnpickler(f)
        obj = unpickler.load()
        keys = _load_plain(f)
    except ModelStoreError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error) as exc:
        raise ModelStoreError(f"corrupt torch file: {exc}") from exc
    if not isinstance(obj, dict):
        raise ModelStoreError("torch file does not hold a state dict")
    if not isinstance(keys, list) or set(map(str, keys)) != set(unpickler.storages):
        raise ModelStoreError("corrupt torch file: storage key list does not match the tensors")
    data: dict[str, npt.NDArray[Any]] = {}
    pos = f.tell()
    for key in map(str, keys):
        ref = unpickler.storages[key]
        if pos + 8 > len(raw):
            raise ModelStoreError(f"truncated torch file: storage {key} is missing")
        (count,) = struct.unpack_from("<q", raw, pos)
        pos += 8
        nbytes = count * ref.dtype.itemsize
        if count < 0 or pos + nbytes > len(raw):
            raise ModelStoreError(f"truncated torch file: storage {key} is cut short")
        if count != ref.size:
            raise ModelStoreError(f"corrupt torch file: storage {key} holds {count} elements, expected {ref.size}")
        data[key] = np.frombuffer(raw, dtype=ref.dtype, count=count, offset=pos).astype(ref.dtype.newbyteorder("="))
        pos += nbytes
    if pos != len(raw):
        raise ModelStoreError(f"torch file has {len(raw) - pos} unexpected bytes after the last storage")
    result: dict[str, npt.NDArray[Any]] = {}
    for name, value in obj.items():
        if not isinstance(value, _PendingTensor):
            raise ModelStoreError(f"torch file entry {name!r} is not a tensor")
        result[str(name)] = _materialise(value, data)
    return result
