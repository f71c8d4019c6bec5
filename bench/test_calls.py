"""Call overhead: one round trip through guest.infer against the public wasmtime-py round trip (same echo guest)
and against Extism's Python SDK (an echo plugin assembled here from WAT).

Goals (issue 2): a ~100-byte request at most 1/4 of the public API's time; a 150 KB request at least 5x faster.
Run: make bench (or pytest bench/test_calls.py); ratios: python bench/report.py
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

import edgewasm

from ._extism_echo import ExtismEcho
from ._public_api import PublicApiGuest
from .conftest import WASM, need

SMALL = {"model_id": "efficientnet-lite0", "top_k": 5, "width": 224, "height": 224, "tags": ["a", "b"], "x": 0.5,
         "note": "a small request of about a hundred bytes"}  # fmt: skip
IMAGE = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)  # 150,528 bytes


def _wire_image() -> dict[str, Any]:
    """The same 150 KB request as msgpack data the baseline can send (it has no numpy support)."""
    return {"pixels": {"dtype": "uint8", "shape": [224, 224, 3], "data": IMAGE.tobytes()}}


@pytest.fixture(scope="module")
def echo() -> edgewasm.Guest:
    return edgewasm.load(WASM / "echo.wat", cache=False)


@pytest.fixture(scope="module")
def public() -> PublicApiGuest:
    return PublicApiGuest(WASM / "echo.wat")


@pytest.fixture(scope="module")
def extism_echo() -> ExtismEcho:
    need("extism", "dev")
    return ExtismEcho()


def test_small_request_size() -> None:
    assert 80 <= len(msgpack.packb(SMALL)) <= 140


@pytest.mark.benchmark(group="call-small")
def test_small_edgewasm(benchmark: Any, echo: edgewasm.Guest) -> None:
    assert benchmark(echo.infer, SMALL) == SMALL


@pytest.mark.benchmark(group="call-small")
def test_small_public_api(benchmark: Any, public: PublicApiGuest) -> None:
    assert benchmark(public.infer, SMALL) == SMALL


@pytest.mark.benchmark(group="call-small-raw")
def test_small_raw_edgewasm(benchmark: Any, echo: edgewasm.Guest) -> None:
    data = msgpack.packb(SMALL)
    assert benchmark(echo.infer_bytes, data) == data


@pytest.mark.benchmark(group="call-small-raw")
def test_small_raw_public_api(benchmark: Any, public: PublicApiGuest) -> None:
    data = msgpack.packb(SMALL)
    assert benchmark(public.infer_bytes, data) == data


@pytest.mark.benchmark(group="call-150k")
def test_150k_edgewasm(benchmark: Any, echo: edgewasm.Guest) -> None:
    reply = benchmark(echo.infer, {"pixels": IMAGE})
    assert np.array_equal(reply["pixels"], IMAGE)


@pytest.mark.benchmark(group="call-150k")
def test_150k_public_api(benchmark: Any, public: PublicApiGuest) -> None:
    request = _wire_image()
    reply = benchmark(public.infer, request)
    assert reply["pixels"]["data"] == request["pixels"]["data"]


@pytest.mark.benchmark(group="call-small")
def test_small_extism(benchmark: Any, extism_echo: ExtismEcho) -> None:
    assert benchmark(extism_echo.infer, SMALL) == SMALL


@pytest.mark.benchmark(group="call-small-raw")
def test_small_raw_extism(benchmark: Any, extism_echo: ExtismEcho) -> None:
    data = msgpack.packb(SMALL)
    assert benchmark(extism_echo.infer_bytes, data) == data


@pytest.mark.benchmark(group="call-150k")
def test_150k_extism(benchmark: Any, extism_echo: ExtismEcho) -> None:
    request = _wire_image()
    reply = benchmark(extism_echo.infer, request)
    assert reply["pixels"]["data"] == request["pixels"]["data"]
