"""The preprocessing reference: the numbers docs/models.md promises the Rust guest, and agreement with PIL."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from edgewasm.models._preprocess import (
    CROP,
    decode_image,
    preprocess_image,
    preprocess_pixels,
    resize_crop,
    resize_weights,
    resized_size,
)

pytest_plugins = ["_model_fixtures"]

Photo = Callable[[str], npt.NDArray[np.uint8]]


@pytest.mark.parametrize(
    ("size", "expected"),
    [((451, 300), (385, 256)), ((300, 451), (256, 385)), ((640, 427), (384, 256)), ((512, 512), (256, 256)),
     ((3, 2), (384, 256)), ((257, 256), (257, 256)), ((1000, 1), (256000, 256))],
)  # fmt: skip
def test_resized_size_rounds_half_up(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resized_size(*size) == expected


def test_resized_size_rejects_empty() -> None:
    with pytest.raises(ValueError, match="positive"):
        resized_size(0, 10)


@pytest.mark.parametrize(
    ("in_size", "out_size", "o", "lo", "weights"),
    [(451, 385, 80, 92, [-0.04921853, 0.26634524, 0.79836641, -0.00991559, -0.00557752]),
     (300, 256, 16, 17, [-0.04556151, 0.23323168, 0.81792294, 0.00293027, -0.00852338]),
     (100, 256, 0, 0, [1.09997696, -0.09997696])],
)  # fmt: skip
def test_weight_vectors_of_the_spec(in_size: int, out_size: int, o: int, lo: int, weights: list[float]) -> None:
    row = resize_weights(in_size, out_size, o, 1)[0]
    nz = np.flatnonzero(row)
    assert nz[0] == lo and nz[-1] == lo + len(weights) - 1
    np.testing.assert_allclose(row[nz], weights, atol=1e-8)


@pytest.mark.parametrize(("in_size", "out_size"), [(451, 385), (300, 256), (100, 256), (2, 384), (4000, 256)])
def test_weights_are_normalised(in_size: int, out_size: int) -> None:
    w = resize_weights(in_size, out_size, 0, out_size)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)


def _synthetic() -> npt.NDArray[np.uint8]:
    y, x, c = np.meshgrid(np.arange(300), np.arange(451), np.arange(3), indexing="ij")
    return ((7 * x + 13 * y + 101 * c) % 256).astype(np.uint8)


def test_synthetic_vector_of_the_spec() -> None:
    out = preprocess_pixels(_synthetic())
    assert out.shape == (CROP, CROP, 3) and out.dtype == np.float32
    expected = {(0, 0, 0): 0.05192363, (0, 0, 1): 0.85896266, (100, 37, 2): -0.09959018,
                (223, 223, 0): 0.92905402, (111, 200, 1): 0.88602388}  # fmt: skip
    for idx, value in expected.items():
        assert out[idx] == pytest.approx(value, abs=1e-6)
    assert float(out.astype(np.float64).sum()) == pytest.approx(588.2135183, abs=1e-3)


def _pil_crop(img: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    image_mod = pytest.importorskip("PIL.Image")
    h, w = img.shape[:2]
    nw, nh = resized_size(w, h)
    resized = np.asarray(image_mod.fromarray(img).resize((nw, nh), image_mod.BICUBIC), dtype=np.float32)
    top, left = (nh - CROP) // 2, (nw - CROP) // 2
    return resized[top : top + CROP, left : left + CROP]


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "rocket"])
def test_same_weights_as_pil(name: str, photo: Photo) -> None:
    """PIL's uint8 pipeline (round + clamp after each pass) reproduced with our weights: within 1 level."""
    img = photo(name)
    h, w = img.shape[:2]
    nw, nh = resized_size(w, h)
    top, left = (nh - CROP) // 2, (nw - CROP) // 2
    wx = resize_weights(w, nw, left, CROP)
    wy = resize_weights(h, nh, 0, nh)
    horiz = np.clip(np.round(np.einsum("xw,hwc->hxc", wx, img.astype(np.float64))), 0, 255)
    emulated = np.clip(np.round(np.einsum("yh,hxc->yxc", wy, horiz)), 0, 255)[top : top + CROP]
    pil = _pil_crop(img)
    assert np.abs(emulated - pil).max() <= 1.0
    ours = resize_crop(img)  # float pipeline: close to PIL, not identical (no intermediate rounding/clamp)
    assert np.abs(ours - pil).mean() < 0.5
    assert np.abs(ours - pil).max() < 8.0


def test_upscales_small_images() -> None:
    img = np.full((10, 20, 3), 200, np.uint8)
    out = resize_crop(img)
    np.testing.assert_allclose(out, 200.0, atol=1e-3)  # a flat image stays flat: weights sum to one


def test_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        resize_crop(np.zeros((10, 10), np.uint8))


def test_decode_png_and_grayscale(photo: Photo) -> None:
    image_mod = pytest.importorskip("PIL.Image")
    img = photo("chelsea")
    buf = io.BytesIO()
    image_mod.fromarray(img).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_image(buf.getvalue()), img)
    np.testing.assert_array_equal(preprocess_image(buf.getvalue()), preprocess_pixels(img))
    buf = io.BytesIO()
    image_mod.fromarray(img[:, :, 0]).save(buf, format="PNG")
    gray = decode_image(buf.getvalue())
    assert gray.shape == img.shape
    np.testing.assert_array_equal(gray[:, :, 2], img[:, :, 0])
