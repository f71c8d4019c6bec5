"""The msgpack encoding of requests and responses, numpy arrays included (docs/abi.md)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from edgewasm import RequestError, _codec


def _join(segments: list[_codec.Segment]) -> bytes:
    return b"".join(s if isinstance(s, bytes) else s.tobytes() for s in segments)


def test_plain_request_is_one_msgpack_segment() -> None:
    req = {"model_id": "m", "values": [1.0, 2.5], "n": 3, "ok": True, "none": None}
    segments = _codec.encode(req)
    assert len(segments) == 1
    assert msgpack.unpackb(segments[0]) == req


@pytest.mark.parametrize("dtype", sorted(_codec.DTYPES))
def test_every_dtype_round_trips(dtype: str) -> None:
    arr = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    out = _codec.decode(_join(_codec.encode({"a": arr})))["a"]
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


def test_array_is_its_own_segment_not_a_copy() -> None:
    arr = np.zeros((224, 224, 3), np.uint8)
    segments = _codec.encode({"pixels": arr, "model_id": "m"})
    assert any(s is arr for s in segments), "the array's own buffer must be a segment (one memmove)"
    raw = msgpack.unpackb(_join(segments))
    assert raw["pixels"]["dtype"] == "uint8" and raw["pixels"]["shape"] == [224, 224, 3]
    assert len(raw["pixels"]["data"]) == arr.nbytes


def test_non_contiguous_big_endian_and_nested_arrays() -> None:
    base = np.arange(12, dtype=">f4").reshape(3, 4)
    req = {"t": base.T, "list": [np.float32(1.5), np.int64(7), {"deep": np.arange(3, dtype=np.int16)}]}
    out = _codec.decode(_join(_codec.encode(req)))
    np.testing.assert_array_equal(out["t"], base.T)
    assert out["list"][0] == 1.5 and out["list"][1] == 7
    np.testing.assert_array_equal(out["list"][2]["deep"], [0, 1, 2])


def test_scalar_and_empty_arrays() -> None:
    out = _codec.decode(_join(_codec.encode({"s": np.array(3.0), "e": np.zeros((0, 3), np.float32)})))
    assert out["s"].shape == () and float(out["s"]) == 3.0
    assert out["e"].shape == (0, 3)


def test_decoded_arrays_are_read_only_views() -> None:
    out = _codec.decode(_join(_codec.encode({"a": np.ones(4, np.float32)})))["a"]
    assert not out.flags.writeable


def test_a_map_that_only_looks_like_an_array_stays_a_dict() -> None:
    fake = {"dtype": "float32", "shape": [3], "data": b"\0" * 5}  # 5 bytes cannot hold 3 floats
    assert _codec.decode(msgpack.packb({"x": fake}))["x"] == fake
    other = {"dtype": "complex64", "shape": [1], "data": b"\0" * 8}
    assert _codec.decode(msgpack.packb(other)) == other


def test_unsupported_values_are_request_errors() -> None:
    with pytest.raises(RequestError, match="cannot encode"):
        _codec.encode({"x": object()})
    with pytest.raises(RequestError, match="dtype"):
        _codec.encode({"x": np.zeros(2, np.complex64)})
    with pytest.raises(RequestError, match="dtype"):
        _codec.encode({"x": np.array(["a"])})


def test_ext_types_survive_the_array_path() -> None:
    """ExtType is a namedtuple: the segment writer (used when a request holds an array) must not send it as a list."""
    req = {"a": np.zeros(2, np.uint8), "e": msgpack.ExtType(5, b"x"), "t": msgpack.Timestamp(1, 2)}
    out = _codec.decode(_join(_codec.encode(req)))
    assert out["e"] == msgpack.ExtType(5, b"x") and out["t"] == msgpack.Timestamp(1, 2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x81\x91\x01\x02", "map key is an array or a map"),
        (b"\x81\x81\x01\x02\x03", "map key is an array or a map"),
        (b"\x91" * 1025 + b"\x01", "nests deeper than 1024 levels"),
        (b"\xd4\xff\x00", "invalid timestamp"),
        (b"\xdd\xff\xff\xff\xff", "exceeds max_array_len"),  # a length that lies: refused, not allocated
    ],
)
def test_undecodable_messages_are_value_errors(data: bytes, message: str) -> None:
    """Only ValueError leaves decode (callers turn it into RequestError or AbiError), never TypeError."""
    with pytest.raises(ValueError, match=message):
        _codec.decode(data)


def test_depth_and_range_limits_are_request_errors() -> None:
    deep: object = 1
    for _ in range(1100):
        deep = [deep]
    with pytest.raises(RequestError, match="nests deeper than 1024 levels"):
        _codec.encode(deep)
    with pytest.raises(RequestError, match="nests deeper than 1024 levels"):
        _codec.encode({"a": np.zeros(1), "deep": deep})  # the segment writer's path
    with pytest.raises(RequestError, match="does not fit in msgpack's 64 bits"):
        _codec.encode({"n": 2**64})


def test_the_kept_encoder_survives_errors_and_is_dropped_after_a_big_message() -> None:
    """`encode` keeps one msgpack Packer per thread (a new one per call mallocs 256 KiB): a refused value must not
    leave half a message in it, and one that grew its buffer for a big message is not kept."""
    with pytest.raises(RequestError, match="cannot encode"):
        _codec.encode({"ok": "first", "x": object()})
    assert _codec.encode({"a": 1}) == [msgpack.packb({"a": 1})]
    big = {"b": b"x" * _codec._KEEP_BELOW}
    assert _codec.encode(big) == [msgpack.packb(big)]
    assert _codec._local.packer is None
    assert _codec.encode({"a": 2}) == [msgpack.packb({"a": 2})] and _codec._local.packer is not None
