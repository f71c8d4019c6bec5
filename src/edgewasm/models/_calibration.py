"""Calibration photos: natural photos that ship inside installed packages, found and read without a network.

Two sets, each a fixed list of files (so the same packages give the same calibration bytes):

- ``samples``: the photos bundled with scikit-image, scikit-learn and matplotlib (the ``quantize`` extra
  installs all three);
- ``opencv``: the photos in Debian's ``opencv-doc`` examples (``apt-get install opencv-doc``), optional.

The quantized variants are calibrated on ``samples`` unless asked otherwise; the accuracy harness
(``_accuracy``) evaluates on every set that is available. The API other code builds on::

    photos = calibration_photos()            # list[Photo] of the default set, in a fixed order
    batch = calibration_tensors(photos)      # float32 [N, 3, 224, 224], the network input (NCHW)
    calibration_record(photos)               # what the manifest records: set, count, sha256, versions
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import CalibrationError

SAMPLES = "samples"
OPENCV = "opencv"
SETS = (SAMPLES, OPENCV)
DEFAULT_SET = SAMPLES
OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
QUANTIZE_HINT = "pip install -c constraints.txt -e '.[quantize]' (in the edgewasm checkout, with its venv active)"

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

# (distribution, importable package, directory inside the package, files): natural photos only (no drawings,
# renders, logos or synthetic test patterns).
_PACKAGE_PHOTOS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("scikit-image", "skimage", "data", (
        "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
        "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
        "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg",
    )),
    ("scikit-learn", "sklearn", "datasets/images", ("china.jpg", "flower.jpg")),
    ("matplotlib", "matplotlib", "mpl-data/sample_data", ("grace_hopper.jpg",)),
)  # fmt: skip

_OPENCV_PHOTOS: tuple[str, ...] = (
    "HappyFish.jpg", "aero1.jpg", "aero3.jpg", "aloeL.jpg", "aloeR.jpg", "apple.jpg", "baboon.jpg",
    "basketball1.png", "basketball2.png", "blox.jpg", "board.jpg", "box.png", "box_in_scene.png", "building.jpg",
    "butterfly.jpg", "chicky_512.png", "ela_modified.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png",
    "graf3.png", "home.jpg", "left.jpg", "left01.jpg", "left02.jpg", "left03.jpg", "left04.jpg", "left05.jpg",
    "left06.jpg", "left07.jpg", "left08.jpg", "left09.jpg", "left11.jpg", "left12.jpg", "left13.jpg",
    "left14.jpg", "leuvenA.jpg", "leuvenB.jpg", "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg",
    "pca_test1.jpg", "right.jpg", "right01.jpg", "right02.jpg", "right03.jpg", "right04.jpg", "right05.jpg",
    "right06.jpg", "right07.jpg", "right08.jpg", "right09.jpg", "right11.jpg", "right12.jpg", "right13.jpg",
    "right14.jpg", "rubberwhale1.png", "rubberwhale2.png", "smarties.png", "squirrel_cls.jpg", "stuff.jpg",
    "sudoku.png", "text_defocus.jpg", "text_motion.jpg",
)  # fmt: skip


@dataclass(frozen=True)
class Photo:
    """One encoded photo file (JPEG or PNG) and the set it belongs to."""

    name: str  # "<source>/<file>", e.g. "scikit-image/chelsea.png": unique and stable
    path: Path
    set: str

    def read(self) -> bytes:
        return self.path.read_bytes()

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.read()).hexdigest()

    def pixels(self) -> U8:
        """Decoded uint8 HxWx3 RGB (the store's decoder: Pillow, else scikit-image)."""
        from ._preprocess import decode_image

        return decode_image(self.read())


def _package_dir(package: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _samples() -> list[Photo]:
    photos: list[Photo] = []
    for dist, package, sub, files in _PACKAGE_PHOTOS:
        root = _package_dir(package)
        missing = [f for f in files if root is None or not (root / sub / f).is_file()]
        if missing:
            raise CalibrationError(
                f"the calibration photos of {dist} are missing ({missing[0]}); install them with: {QUANTIZE_HINT}"
            )
        assert root is not None
        photos += [Photo(f"{dist}/{f}", root / sub / f, SAMPLES) for f in files]
    return photos


def _opencv() -> list[Photo]:
    missing = [f for f in _OPENCV_PHOTOS if not (OPENCV_DIR / f).is_file()]
    if missing:
        raise CalibrationError(
            f"Debian's opencv-doc photos are missing ({OPENCV_DIR / missing[0]}); install them with: "
            "apt-get install opencv-doc (or use the 'samples' set)"
        )
    return [Photo(f"opencv-doc/{f}", OPENCV_DIR / f, OPENCV) for f in _OPENCV_PHOTOS]


def photo_set(name: str) -> list[Photo]:
    """Every photo of one set, in a fixed order; CalibrationError (with the install command) if unavailable."""
    if name == SAMPLES:
        return _samples()
    if name == OPENCV:
        return _opencv()
    raise CalibrationError(f"unknown calibration set {name!r}; choose from: {', '.join(SETS)}")


def available_sets() -> list[str]:
    """The sets whose files are all present here."""
    out = []
    for name in SETS:
        try:
            photo_set(name)
        except CalibrationError:
            continue
        out.append(name)
    return out


def calibration_photos(sets: Sequence[str] = (DEFAULT_SET,)) -> list[Photo]:
    """The photos of the given sets, concatenated in the order given (the default: ``samples`` only)."""
    if not sets:
        raise CalibrationError("no calibration set given; choose from: " + ", ".join(SETS))
    photos: list[Photo] = []
    for name in dict.fromkeys(sets):
        photos += photo_set(name)
    return photos


def calibration_tensors(photos: Sequence[Photo]) -> F32:
    """The photos preprocessed as the model expects (docs/models.md#preprocessing-spec): [N, 3, 224, 224]."""
    from ._preprocess import preprocess_pixels

    if not photos:
        raise CalibrationError("no calibration photos")
    batch = [preprocess_pixels(p.pixels()).transpose(2, 0, 1) for p in photos]
    return np.ascontiguousarray(np.stack(batch), dtype=np.float32)


def digest(photos: Sequence[Photo]) -> str:
    """sha256 over the photos' names and file hashes, in order: the identity of a calibration set."""
    h = hashlib.sha256()
    for p in photos:
        h.update(f"{p.name} {p.sha256}\n".encode())
    return h.hexdigest()


def calibration_record(photos: Sequence[Photo]) -> dict[str, Any]:
    """What a manifest records about a calibration: the sets, count, digest and the versions that decoded them."""
    sets = list(dict.fromkeys(p.set for p in photos))
    sources: dict[str, str | None] = {}
    if SAMPLES in sets:
        sources.update({dist: _version(dist) for dist, _, _, _ in _PACKAGE_PHOTOS})
    if OPENCV in sets:
        sources["opencv-doc"] = str(OPENCV_DIR)
    return {
        "sets": sets,
        "count": len(photos),
        "sha256": digest(photos),
        "sources": sources,
        "decoder": f"Pillow {_version('pillow')}" if _version("pillow") else f"scikit-image {_version('scikit-image')}",
        "preprocessing": "docs/models.md#preprocessing-spec",
        "files": [p.name for p in photos],
    }
