"""`--nn-preload` specs: WasmEdge's `NAME:ENCODING:TARGET:PATH[:PATH]` and model-store ids.

Forms (encodings and targets case-insensitive):
  NAME:ENCODING:TARGET:PATH[:PATH]     e.g. default:ONNX:CPU:model.onnx, default:OpenVINO:AUTO:m.xml:m.bin
  NAME:store:ID[:FORMAT[:TARGET]]      e.g. default:store:efficientnet-lite0:openvino
                                       (FORMAT onnx|openvino|tflite, default onnx; TARGET default CPU)
  ID                                   shorthand for ID:store:ID:onnx:CPU (preload a store model under its id)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._enums import ExecutionTarget, GraphEncoding, encoding_from_name, target_from_name

_FORMAT_ENCODING = {
    "onnx": GraphEncoding.ONNX,
    "openvino": GraphEncoding.OPENVINO,
    "tflite": GraphEncoding.TENSORFLOWLITE,
}
_SUPPORTED = {GraphEncoding.ONNX: 1, GraphEncoding.OPENVINO: 2, GraphEncoding.TENSORFLOWLITE: 1}


@dataclass(frozen=True)
class Preload:
    """A model the host loads on the guest's first `load_by_name(name)`."""

    name: str
    encoding: GraphEncoding
    target: ExecutionTarget
    paths: tuple[Path, ...]
    store_id: str | None = None

    def __str__(self) -> str:
        where = f"store:{self.store_id}" if self.store_id else ":".join(map(str, self.paths))
        return f"{self.name}:{self.encoding.name}:{self.target.name}:{where}"


def parse_preload(spec: str) -> Preload:
    """Parse one preload spec; a clear ValueError for anything malformed or files that do not exist."""
    if not spec or spec != spec.strip():
        raise ValueError(f"bad --nn-preload {spec!r}: empty or surrounded by spaces")
    parts = spec.split(":")
    if len(parts) == 1:
        return _from_store(spec, parts[0], "onnx", "CPU", spec)
    if len(parts) >= 3 and parts[1].lower() == "store":
        if len(parts) > 5:
            raise ValueError(f"bad --nn-preload {spec!r}: expected NAME:store:ID[:FORMAT[:TARGET]]")
        fmt = parts[3] if len(parts) > 3 else "onnx"
        target_text = parts[4] if len(parts) > 4 else "CPU"
        return _from_store(parts[0], parts[2], fmt, target_text, spec)
    if len(parts) < 4:
        raise ValueError(
            f"bad --nn-preload {spec!r}: expected NAME:ENCODING:TARGET:PATH[:PATH], "
            "NAME:store:ID[:FORMAT[:TARGET]] or a model-store ID"
        )
    name, enc_name, target_name, *paths = parts
    try:
        encoding = encoding_from_name(enc_name)
        target = target_from_name(target_name)
    except ValueError as exc:
        raise ValueError(f"bad --nn-preload {spec!r}: {exc}") from None
    _check_name(name, spec)
    want = _SUPPORTED.get(encoding)
    if want is None:
        raise ValueError(
            f"bad --nn-preload {spec!r}: encoding {enc_name} is not supported by edgewasm "
            "(OpenVINO, ONNX, TensorflowLite)"
        )
    files = tuple(Path(p).expanduser() for p in paths if p)
    if encoding is GraphEncoding.OPENVINO and len(files) == 1 and files[0].suffix == ".xml":
        files = (files[0], files[0].with_suffix(".bin"))  # the IR weights next to the xml
    if len(files) != want:
        raise ValueError(f"bad --nn-preload {spec!r}: {encoding.name} takes {want} file(s), got {len(files)}")
    _check_files(files, spec)
    return Preload(name, encoding, target, files)


def _check_name(name: str, spec: str) -> None:
    if not name:
        raise ValueError(f"bad --nn-preload {spec!r}: the graph name is empty")


def _check_files(files: tuple[Path, ...], spec: str) -> None:
    for f in files:
        if not f.is_file():
            raise ValueError(f"bad --nn-preload {spec!r}: no such file {f}")


def _from_store(name: str, model_id: str, fmt: str, target_name: str, spec: str) -> Preload:
    from .._errors import ModelStoreError
    from ..models import _store  # the store owns its root and layout; imported only when a preload names an id

    _check_name(name, spec)
    fmt = fmt.lower()
    if fmt not in _store.BACKEND_FILES:
        raise ValueError(f"bad --nn-preload {spec!r}: store format {fmt!r} is not onnx, openvino or tflite")
    try:
        target = target_from_name(target_name)
        directory = _store.path_of(model_id)
    except (ValueError, ModelStoreError) as exc:  # a bad target; an unknown or missing model
        raise ValueError(f"bad --nn-preload {spec!r}: {exc}") from None
    files = tuple(directory / rel for rel in _store.BACKEND_FILES[fmt])
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ValueError(
            f"bad --nn-preload {spec!r}: model {model_id!r} has no {fmt} files in the store "
            f"(missing {missing[0]}); set EDGEWASM_MODELS or install the model"
        )
    return Preload(name, _FORMAT_ENCODING[fmt], target, files, store_id=model_id)
