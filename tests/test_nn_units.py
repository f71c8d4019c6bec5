"""Small pieces of the WASI-NN host: handle tables, tensor-type resolution, raw outputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgewasm.nn import NnErrno, NnError, resolve_tensor_type
from edgewasm.nn._functions import _raw_output
from edgewasm.nn._tables import HandleTable


def test_handles_start_at_zero_and_skip_live_ones_on_wrap() -> None:
    t: HandleTable[str] = HandleTable("graph", 10)
    assert [t.insert("a"), t.insert("b")] == [0, 1]
    t._next = 0xFFFFFFFF
    assert t.insert("c") == 0xFFFFFFFF
    assert t.insert("d") == 2  # 0 and 1 are still live
    assert t.get(-1) == "c"  # i32 -1 is handle 0xFFFFFFFF
    assert t.remove(0) == "a"
    with pytest.raises(NnError) as err:
        t.get(0)
    assert err.value.errno is NnErrno.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("code", "n", "nbytes", "numbering", "want"),
    [
        (1, 4, 16, "auto", "float32"),
        (0, 4, 8, "auto", "float16"),
        (2, 4, 32, "auto", "float64"),
        (2, 4, 4, "auto", "uint8"),
        (3, 4, 4, "auto", "uint8"),
        (3, 4, 16, "auto", "int32"),
        (4, 4, 16, "auto", "int32"),
        (5, 4, 32, "auto", "int64"),
        (2, 0, 0, "auto", "float64"),  # a tie: the current numbering wins
        (3, 4, 16, "legacy", "int32"),
        (2, 4, 32, "witx", "float64"),
    ],
)
def test_resolve_tensor_type(code: int, n: int, nbytes: int, numbering: str, want: str) -> None:
    assert resolve_tensor_type(code, n, nbytes, numbering) == np.dtype(want)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "n", "nbytes", "numbering"),
    [(6, 1, 1, "auto"), (1, 4, 12, "auto"), (4, 4, 16, "legacy"), (2, 4, 4, "witx"), (255, 1, 1, "witx")],
)
def test_resolve_tensor_type_refuses(code: int, n: int, nbytes: int, numbering: str) -> None:
    with pytest.raises(NnError) as err:
        resolve_tensor_type(code, n, nbytes, numbering)  # type: ignore[arg-type]
    assert err.value.errno is NnErrno.INVALID_ARGUMENT


def test_raw_output() -> None:
    big = np.arange(6, dtype=">f4").reshape(2, 3).T  # big-endian, not C-contiguous
    raw = _raw_output(big, 0)
    assert raw.flags.c_contiguous and raw.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(raw, big)
    with pytest.raises(NnError) as err:
        _raw_output(np.array(["a", "b"], dtype=object), 1)
    assert err.value.errno is NnErrno.RUNTIME_ERROR
