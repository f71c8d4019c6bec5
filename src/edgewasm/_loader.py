"""From a source to a ready `wasmtime.Module`: the in-memory cache, then the disk cache, then the compiler."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Any

import wasmtime

from . import _abi, _artifact, _features, _host
from ._cache import DiskCache, entry_key
from ._engine import EngineSettings, engine_for
from ._errors import ArtifactError, ModuleLoadError
from ._source import Source, open_source


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A compiled module and what the host learnt about it."""

    name: str
    module: wasmtime.Module
    settings: EngineSettings
    verdict: _abi.Verdict
    needs: frozenset[str]
    module_sha256: str
    #: "memory", "disk", "compiled" or "artifact": where the machine code came from.
    origin: str
    artifact: Path | None

    @property
    def engine(self) -> wasmtime.Engine:
        return engine_for(self.settings)


_memory: dict[tuple[str, EngineSettings], Loaded] = {}
#: The same entries by file identity (device, inode, size, mtime): a repeated load skips reading and hashing.
_by_file: dict[tuple[int, int, int, int, EngineSettings], Loaded] = {}
#: Pre-linked instances (WASI only) per module and settings; guests with extra imports link their own.
_pres: dict[tuple[str, EngineSettings], wasmtime.InstancePre] = {}
_memory_lock = threading.Lock()


def _file_key(
    module: str | os.PathLike[str] | bytes, settings: EngineSettings
) -> tuple[int, int, int, int, EngineSettings] | None:
    if isinstance(module, (bytes, bytearray, memoryview)):
        return None
    try:
        st = os.stat(module)
    except OSError:
        return None  # open_source reports it
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, settings)


def _compile(source: Source, engine: wasmtime.Engine) -> wasmtime.Module:
    try:
        return wasmtime.Module(engine, source.wasm)
    except wasmtime.WasmtimeError as e:
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        detail = "; ".join(lines[:3]) or "invalid module"
        hint = _features.undeclared_hint(str(e))
        raise ModuleLoadError(
            f"{source.name}: not a valid WebAssembly module: {detail}",
            hint=hint or "rebuild the module; a truncated or corrupt file gives 'unexpected EOF'",
        ) from None


def _artifact_meta(
    source: Source, settings: EngineSettings, needs: frozenset[str], verdict: _abi.Verdict
) -> dict[str, Any]:
    return {
        "module_sha256": source.sha256,
        "engine": settings.key(),
        "needs": sorted(needs),
        "source": os.path.basename(source.name),
        "verdict": dataclasses.asdict(verdict),
    }


def load_module(
    module: str | os.PathLike[str] | bytes,
    settings: EngineSettings,
    cache: DiskCache | None,
) -> Loaded:
    """Load and check a module; `cache=None` compiles without touching the disk cache."""
    file_key = _file_key(module, settings)
    if file_key is not None:
        with _memory_lock:
            hit = _by_file.get(file_key)
        if hit is not None:
            return dataclasses.replace(hit, origin="memory")
    source = open_source(module)
    if source.kind == "wasm":
        settings = _features.settings_for(settings, source.needs, source.name)
    mem_key = (source.sha256, settings)
    with _memory_lock:
        hit = _memory.get(mem_key)
    if hit is not None:
        return dataclasses.replace(hit, origin="memory")
    if source.kind == "cwasm":
        loaded = _load_artifact(source, settings)
    else:
        loaded = _load_wasm(source, settings, engine_for(settings), cache)
    with _memory_lock:
        _memory[mem_key] = loaded
        if file_key is not None:
            _by_file[file_key] = loaded
    return loaded


def wasi_instance_pre(loaded: Loaded) -> wasmtime.InstancePre:
    """The module linked against WASI alone, made once per module and settings."""
    key = (loaded.module_sha256, loaded.settings)
    with _memory_lock:
        pre = _pres.get(key)
    if pre is None:
        linker = wasmtime.Linker(loaded.engine)
        linker.define_wasi()
        pre = linker.instantiate_pre(loaded.module)
        with _memory_lock:
            _pres[key] = pre
    return pre


def _load_wasm(source: Source, settings: EngineSettings, engine: wasmtime.Engine, cache: DiskCache | None) -> Loaded:
    needs = source.needs
    if cache is None:
        module = _compile(source, engine)
        return _finish(source, settings, module, needs, "compiled", None)
    key = entry_key(source.sha256, settings.key_json())
    expect = {"module_sha256": source.sha256, "engine": settings.key()}
    hit = _from_cache(cache, key, expect, engine)
    if hit is not None:
        return _finish(source, settings, hit[0], needs, "disk", hit[1], hit[2])
    with cache.compiling(key):
        # Another process may have filled the entry while we waited for the lock.
        hit = _from_cache(cache, key, expect, engine)
        if hit is not None:
            return _finish(source, settings, hit[0], needs, "disk", hit[1], hit[2])
        module = _compile(source, engine)
        loaded = _finish(source, settings, module, needs, "compiled", None)
        try:
            path = cache.store(key, module.serialize(), _artifact_meta(source, settings, needs, loaded.verdict))
        except OSError:
            return loaded  # an unwritable cache slows the next start, it does not fail this one
    return dataclasses.replace(loaded, artifact=path)


def _from_cache(
    cache: DiskCache, key: str, expect: dict[str, Any], engine: wasmtime.Engine
) -> tuple[wasmtime.Module, Path, _abi.Verdict] | None:
    found = cache.lookup(key, expect)
    if found is None:
        return None
    path, meta = found
    try:
        verdict = _abi.Verdict.from_dict(meta["verdict"])
        return wasmtime.Module.deserialize_file(engine, str(path)), path, verdict
    except (KeyError, TypeError, ValueError) as e:
        cache.discard(path, f"{path}: unreadable metadata ({e})")
    except wasmtime.WasmtimeError as e:
        cache.discard(path, f"{path}: wasmtime refused it: {str(e).strip().splitlines()[0]}")
    return None


def _load_artifact(source: Source, wanted: EngineSettings) -> Loaded:
    """A `.cwasm` given explicitly: never run unless it was built for exactly this host.

    Its own engine settings are used, as long as they provide what the caller asked for: interruption checks for
    a timeout, and fuel metering exactly when fuel is asked for (metered code traps without a budget).
    """
    assert source.path is not None, "artifacts are only read from files"
    meta = _artifact.verify(source.path)
    built_for: dict[str, Any] = meta.get("engine", {})
    host = built_for.get("host", {})
    here = _host.fingerprint()
    for field, what in (("target", "target"), ("cpu", "CPU features"), ("wasmtime", "wasmtime version")):
        if host.get(field) != here[field]:
            raise ArtifactError(
                f"{source.name} was compiled for another {what} ({host.get(field)}; this host: {here[field]}); "
                "running it could crash with SIGILL",
                hint="recompile the .wasm on this machine with `edgewasm compile`",
            )
    try:
        settings = EngineSettings(**built_for.get("settings", {}))
    except TypeError:
        raise ArtifactError(
            f"{source.name} was compiled with engine settings this edgewasm does not know",
            hint="recompile it with `edgewasm compile`",
        ) from None
    problems = []
    if wanted.epoch and not settings.epoch:
        problems.append("no interruption checks, so no timeout (compiled with --no-timeout)")
    if wanted.fuel != settings.fuel:
        problems.append("fuel metering" + (" missing" if wanted.fuel else " that this run does not budget"))
    if problems:
        raise ArtifactError(
            f"{source.name} was compiled with other engine settings: {'; '.join(problems)}",
            hint="recompile with `edgewasm compile` (--fuel, --no-timeout) to match how you run it",
        )
    try:
        module = wasmtime.Module.deserialize_file(engine_for(settings), str(source.path))
    except wasmtime.WasmtimeError as e:
        raise ArtifactError(f"{source.name}: wasmtime refused the artifact: {str(e).strip().splitlines()[0]}") from None
    source = dataclasses.replace(source, sha256=str(meta.get("module_sha256", source.sha256)))
    try:
        verdict: _abi.Verdict | None = _abi.Verdict.from_dict(meta["verdict"])
    except (KeyError, TypeError, ValueError):
        verdict = None  # check the exports again
    needs = frozenset(meta.get("needs", []))
    return _finish(source, settings, module, needs, "artifact", source.path, verdict)


def _finish(
    source: Source,
    settings: EngineSettings,
    module: wasmtime.Module,
    needs: frozenset[str],
    origin: str,
    artifact: Path | None,
    verdict: _abi.Verdict | None = None,
) -> Loaded:
    if verdict is None:
        verdict = _abi.check(module, source.name)
    return Loaded(source.name, module, settings, verdict, needs, source.sha256, origin, artifact)


def compile_to(module: str | os.PathLike[str] | bytes, output: Path, settings: EngineSettings) -> Loaded:
    """Ahead-of-time compile to an explicit artifact file (`edgewasm compile`)."""
    source = open_source(module)
    if source.kind == "cwasm":
        raise ModuleLoadError(f"{source.name} is already a compiled artifact", hint="pass the .wasm or .wat file")
    needs = source.needs
    settings = _features.settings_for(settings, needs, source.name)
    engine = engine_for(settings)
    compiled = _compile(source, engine)
    loaded = _finish(source, settings, compiled, needs, "compiled", output)
    meta = _artifact_meta(source, settings, needs, loaded.verdict)
    _artifact.write_atomic(output, compiled.serialize(), meta)
    return loaded


def forget() -> None:
    """Drop the in-memory cache (tests and benchmarks measure cold paths with it)."""
    with _memory_lock:
        _memory.clear()
        _by_file.clear()
        _pres.clear()
