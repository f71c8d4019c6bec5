"""The accuracy harness: labeled ImageNet photos, agreement with FP32 on natural photos, and engine runners.

- Labeled: the 20 ImageNet photos inside the ``foolbox`` 3.3.4 wheel (``foolbox/data/imagenet_<i>_<label>.jpg``),
  downloaded with ``pip download`` into a cache directory outside the repository and read with zipfile (foolbox
  is never installed or imported; the photos are never committed).
- Agreement: every natural photo available (``_calibration`` sets and the labeled photos), each also flipped and
  cropped (``views``), compared with the FP32 model's logits: top-1 equal, max and mean absolute logit error.

Runners take a batch ``[N, 3, 224, 224]`` and return logits ``[N, 1000]``, one image at a time on one thread.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .._errors import AccuracyError
from . import _calibration

FOOLBOX = "foolbox"
FOOLBOX_VERSION = "3.3.4"
FOOLBOX_WHEEL = f"foolbox-{FOOLBOX_VERSION}-py3-none-any.whl"
CACHE_ENV = "EDGEWASM_ACCURACY_CACHE"
_LABELED = re.compile(r"^foolbox/data/imagenet_(\d+)_(\d+)\.jpg$")

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Runner = Callable[[F32], F32]


def cache_dir() -> Path:
    """``$EDGEWASM_ACCURACY_CACHE``, else the per-user cache directory (never inside the repository)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("edgewasm")) / "accuracy"


def foolbox_wheel(cache: Path | None = None) -> Path:
    """The foolbox wheel in the cache, fetched with ``pip download`` (no dependencies, not installed) if absent."""
    cache = cache if cache is not None else cache_dir()
    wheel = cache / FOOLBOX_WHEEL
    if wheel.is_file():
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           f"{FOOLBOX}=={FOOLBOX_VERSION}", "--dest", str(cache)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AccuracyError(f"cannot run pip to fetch {FOOLBOX} {FOOLBOX_VERSION}: {exc}") from exc
    if proc.returncode != 0 or not wheel.is_file():
        last = (proc.stderr.strip().splitlines() or ["no wheel was written"])[-1]
        raise AccuracyError(
            f"cannot download {FOOLBOX}=={FOOLBOX_VERSION} from PyPI ({last[:160]}); put {FOOLBOX_WHEEL} in {cache}"
        )
    return wheel


@dataclass(frozen=True)
class LabeledPhoto:
    name: str  # "foolbox/imagenet_00_243.jpg"
    label: int  # the ImageNet-1k class id
    data: bytes


def labeled_photos(wheel: Path | None = None) -> list[LabeledPhoto]:
    """The 20 labeled ImageNet photos of the foolbox wheel, in file order."""
    wheel = wheel if wheel is not None else foolbox_wheel()
    try:
        with zipfile.ZipFile(wheel) as zf:
            out = []
            for name in sorted(zf.namelist()):
                m = _LABELED.match(name)
                if m:
                    out.append(LabeledPhoto(f"foolbox/{name.rsplit('/', 1)[1]}", int(m.group(2)), zf.read(name)))
    except (OSError, zipfile.BadZipFile) as exc:
        raise AccuracyError(f"{wheel} is not a readable wheel ({exc}); delete it and run again") from exc
    if len(out) != 20:
        raise AccuracyError(f"{wheel} holds {len(out)} labeled ImageNet photos, expected 20; delete it and run again")
    return out


VIEWS = ("full", "flip", "crop-tl", "crop-br")


def views(pixels: U8) -> list[tuple[str, U8]]:
    """The photo, its mirror image and two crops of three quarters of each side (top-left, bottom-right)."""
    h, w = pixels.shape[:2]
    ch, cw = max(1, h * 3 // 4), max(1, w * 3 // 4)
    out = [pixels, pixels[:, ::-1], pixels[:ch, :cw], pixels[h - ch :, w - cw :]]
    return [(tag, np.ascontiguousarray(p)) for tag, p in zip(VIEWS, out, strict=True)]


def tensors(items: Sequence[tuple[str, bytes]], *, with_views: bool = True) -> tuple[list[str], F32]:
    """Encoded photos -> (names, batch [N, 3, 224, 224]); with views, four tensors a photo (``name#view``)."""
    from ._preprocess import decode_image, preprocess_pixels

    names: list[str] = []
    batch: list[F32] = []
    for name, data in items:
        pixels = decode_image(data)
        for tag, view in views(pixels) if with_views else [("full", pixels)]:
            names.append(name if not with_views else f"{name}#{tag}")
            batch.append(preprocess_pixels(view).transpose(2, 0, 1))
    return names, np.ascontiguousarray(np.stack(batch), dtype=np.float32)


def natural_photos(labeled: Sequence[LabeledPhoto] = ()) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Every natural photo available here: each available calibration set, then the labeled photos given.
    Returns the photos and the names of the sources used."""
    sets = _calibration.available_sets()
    items = [(p.name, p.read()) for p in _calibration.calibration_photos(sets)] if sets else []
    items += [(p.name, p.data) for p in labeled]
    return items, [*sets, *(["foolbox"] if labeled else [])]


# --- runners ----------------------------------------------------------------------------------------------


def onnx_runner(path: Path, threads: int = 1) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: F32) -> F32:
        return np.concatenate([session.run(None, {name: batch[i : i + 1]})[0] for i in range(len(batch))])

    return run


def openvino_runner(xml: Path, threads: int = 1, precision: str | None = "f32") -> Runner:
    """OpenVINO on CPU; ``precision`` f32 as the WASI-NN backend uses (None keeps the plugin's default).

    On the WASI-NN backend's one process-wide Core, every call inside `_sigstack.kept()`: a Core of its own per
    runner replaced the thread's alternate signal stack, and once two were released the next guest trap on the
    thread killed the process."""
    from ..nn import _sigstack
    from ..nn.backends.openvino import shared_core

    config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    with _sigstack.kept():
        compiled = shared_core().compile_model(str(xml), "CPU", config)
        request = compiled.create_infer_request()

    def run(batch: F32) -> F32:
        with _sigstack.kept():
            out = [np.array(request.infer({0: batch[i : i + 1]})[0], np.float32) for i in range(len(batch))]
        return np.concatenate(out)

    return run


def litert_runner(path: Path, threads: int = 1) -> Runner:
    """LiteRT's interpreter (with its default XNNPACK delegate), as the WASI-NN backend runs it."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=path.read_bytes(), num_threads=threads)
    interp.allocate_tensors()
    x, y = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

    def run(batch: F32) -> F32:
        out = []
        for i in range(len(batch)):
            interp.set_tensor(x, np.ascontiguousarray(batch[i : i + 1]))
            interp.invoke()
            out.append(np.array(interp.get_tensor(y), np.float32))
        return np.concatenate(out)

    return run


# --- metrics ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How a variant's logits compare with the FP32 model's on the same images."""

    count: int
    top1_equal: int
    max_abs: float
    mean_abs: float

    @property
    def fraction(self) -> float:
        return self.top1_equal / self.count if self.count else 0.0


def agreement(reference: F32, logits: F32) -> Agreement:
    if reference.shape != logits.shape or reference.ndim != 2:
        raise ValueError(f"logits of shape {logits.shape} do not match the reference {reference.shape}")
    diff = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    equal = int(np.sum(np.argmax(logits, axis=1) == np.argmax(reference, axis=1)))
    return Agreement(len(reference), equal, float(diff.max()), float(diff.mean()))


def top1_correct(logits: F32, labels: Sequence[int]) -> int:
    """How many images' top-1 class is their label."""
    return int(np.sum(np.argmax(logits, axis=1) == np.asarray(labels)))
