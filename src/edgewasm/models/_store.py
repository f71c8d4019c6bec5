"""The model store: one directory per model id, written atomically, described by a manifest of sha256s.

Layout: ``<store>/<id>/manifest.json`` plus the files it lists. The store root is ``$EDGEWASM_MODELS`` or
``platformdirs.user_data_dir("edgewasm")/models``. An install converts into a hidden temporary directory
next to the entry and renames it into place, so a reader never sees a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .._errors import ModelStoreError
from .._paths import MODELS_ENV, models_dir
from . import _convert
from ._preprocess import CROP, FILTER_NAME, MEAN, RESIZE_SHORTER, STD
from ._variants import VARIANT_IDS

ENV_VAR = MODELS_ENV
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
KNOWN_MODELS = (_convert.MODEL_ID, *VARIANT_IDS)
#: A WASI-NN backend's files in a model's directory, in the order its `load` takes them.
BACKEND_FILES: dict[str, tuple[str, ...]] = {
    "onnx": (_convert.ONNX_FILE,),
    "openvino": (_convert.OPENVINO_XML, _convert.OPENVINO_BIN),
    "tflite": (_convert.TFLITE_FILE,),
}


def default_store() -> Path:
    """``$EDGEWASM_MODELS`` if set, else the per-user data directory (the same place the host mounts)."""
    return models_dir()


def _root(store: str | os.PathLike[str] | None) -> Path:
    return Path(store).expanduser() if store is not None else default_store()


def _check_id(model_id: str) -> None:
    if model_id not in KNOWN_MODELS:
        raise ModelStoreError(f"unknown model {model_id!r}; available: {', '.join(KNOWN_MODELS)}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_info(path: Path) -> dict[str, Any]:
    return {"sha256": _sha256(path), "size": path.stat().st_size}


def _manifest(entry: Path, provenance: dict[str, Any]) -> dict[str, Any]:
    files = sorted(p for p in entry.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {
        "format": MANIFEST_FORMAT,
        "id": _convert.MODEL_ID,
        "version": _convert.MODEL_VERSION,
        "files": {f.relative_to(entry).as_posix(): _file_info(f) for f in files},
        "weights": _convert.EWT_FILE,
        "onnx": _convert.ONNX_FILE,
        "openvino": _convert.OPENVINO_XML if (entry / _convert.OPENVINO_XML).is_file() else None,
        "input": {"name": "input", "shape": [1, 3, CROP, CROP], "layout": "NCHW", "dtype": "float32",
                  "ewt_shape": [1, CROP, CROP, 3], "ewt_layout": "NHWC"},
        "output": {"name": "logits", "shape": [1, 1000], "dtype": "float32"},
        "preprocessing": {"resize_shorter": RESIZE_SHORTER, "crop": CROP, "mean": MEAN, "std": STD,
                          "filter": FILTER_NAME, "color": "RGB", "spec": "docs/models.md#preprocessing-spec"},
        "labels": _convert.LABELS_FILE,
        "num_classes": 1000,
        **provenance,
    }  # fmt: skip


def path_of(model_id: str, store: str | os.PathLike[str] | None = None) -> Path:
    """The installed entry's directory; raises ModelStoreError when the model is not installed."""
    _check_id(model_id)
    entry = _root(store) / model_id
    if not (entry / MANIFEST).is_file():
        raise ModelStoreError(
            f"model {model_id!r} is not installed in {entry.parent}; run: edgewasm models install {model_id}"
        )
    return entry


def read_manifest(model_id: str, store: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    entry = path_of(model_id, store)
    try:
        manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelStoreError(
            f"{entry / MANIFEST} is unreadable; repair it: edgewasm models install {model_id}"
        ) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ModelStoreError(f"{entry / MANIFEST} is malformed; repair it: edgewasm models install {model_id}")
    return manifest


def verify(model_id: str = _convert.MODEL_ID, store: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Check every file's size and sha256 against the manifest; return the manifest, else raise."""
    manifest = read_manifest(model_id, store)
    entry = path_of(model_id, store)
    fix = f"repair it: edgewasm models install {model_id}"
    for rel, info in manifest["files"].items():
        path = entry / rel
        if not path.is_file():
            raise ModelStoreError(f"{model_id}: {rel} is missing; {fix}")
        if path.stat().st_size != info.get("size"):
            raise ModelStoreError(f"{model_id}: {rel} has the wrong size; {fix}")
        if _sha256(path) != info.get("sha256"):
            raise ModelStoreError(f"{model_id}: {rel} fails its sha256 check; {fix}")
    return manifest


def check(model_id: str = _convert.MODEL_ID, store: str | os.PathLike[str] | None = None) -> str | None:
    """None when the model is installed and intact, else what is wrong with it (not installed, or a failed check)."""
    try:
        verify(model_id, store)
    except ModelStoreError as exc:
        return str(exc).split("; ")[0]
    return None


def list_models(store: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The installed entries (id, version, path, total size), skipping temporary directories."""
    root = _root(store)
    if not root.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not (entry / MANIFEST).is_file():
            continue
        try:
            manifest = json.loads((entry / MANIFEST).read_text(encoding="utf-8"))
            size = sum(int(f["size"]) for f in manifest["files"].values())
            out.append({"id": manifest["id"], "version": manifest["version"], "path": str(entry), "size": size})
        except (OSError, ValueError, KeyError, TypeError):
            out.append({"id": entry.name, "version": None, "path": str(entry), "size": None})
    return out


def install(
    model_id: str = _convert.MODEL_ID,
    store: str | os.PathLike[str] | None = None,
    force: bool = False,
    *,
    openvino: bool | None = None,
) -> Path:
    """Convert and install a model; returns the entry's directory.

    An installed entry is verified first and kept when every file passes its sha256 check; one that fails (a
    truncated, missing or tampered file, an unreadable manifest) is reconverted, so `install` is also the repair.
    `force` reconverts in any case.
    """
    _check_id(model_id)
    if model_id in VARIANT_IDS:  # quantized variants are made from the installed base (_variant_store)
        from ._variant_store import install_variant

        return install_variant(model_id, store, force, openvino=openvino)
    root = _root(store)
    entry = root / model_id
    if not force and check(model_id, store) is None:
        return entry
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".install-{model_id}-", dir=root))
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the entry is meant to be shared read-only
    except OSError as exc:
        raise ModelStoreError(
            f"cannot write to the model store {root}: {exc.strerror}; set {ENV_VAR} or --store"
        ) from exc
    try:
        provenance = _convert.convert(tmp, openvino=openvino)
        manifest = _manifest(tmp, provenance)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _fsync_tree(tmp)
        old: Path | None = None
        if entry.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{model_id}-", dir=root))
            os.replace(entry, old / model_id)
        os.replace(tmp, entry)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if (entry / MANIFEST).is_file():  # a concurrent install won the rename
            return entry
        raise ModelStoreError(f"cannot install {model_id} into {root}: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry


def _fsync_tree(path: Path) -> None:
    """Flush file contents before the rename publishes them."""
    for p in path.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def remove(model_id: str, store: str | os.PathLike[str] | None = None) -> Path:
    """Delete an installed entry (renamed away first, so it disappears at once). Returns the removed path."""
    entry = _root(store) / model_id
    _check_id(model_id)
    if not entry.exists():
        raise ModelStoreError(f"model {model_id!r} is not installed in {entry.parent}")
    trash = Path(tempfile.mkdtemp(prefix=f".remove-{model_id}-", dir=entry.parent))
    os.replace(entry, trash / model_id)
    shutil.rmtree(trash, ignore_errors=True)
    return entry
