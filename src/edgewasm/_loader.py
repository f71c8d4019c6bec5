"""From a source to a ready `wasmtime.Module`: the in-memory cache, then the disk cache, then the compiler."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

from . import _abi, _artifact, _features, _hostinfo
from ._cache import DiskCache, entry_key
from ._engine import Engines, EngineSettings
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
    #: The engine the module was compiled for (every Store of it must use this one) and the runtime's engines,
    #: which start its epoch ticker.
    engine: wasmtime.Engine
    engines: Engines


_FileKey = tuple[int, int, int, int, EngineSettings]


class MemoryCache:
    """The modules a runtime has loaded, least recently used first, bounded.

    Every module holds native resources (its code mapping, a memfd for its memory image: a file descriptor), so an
    unbounded cache in a long-lived host that loads many distinct modules runs out of descriptors. Entries are found
    by module hash and settings, or by file identity (device, inode, size, mtime: a repeated load of a path skips
    reading and hashing); each keeps its pre-linked WASI instance. Evicting an entry only drops the cache's
    references: guests still using the module keep it alive.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, EngineSettings], _MemoryEntry] = OrderedDict()
        self._by_file: dict[_FileKey, tuple[str, EngineSettings]] = {}
        #: By what a Loaded says of itself (an explicit artifact's entry is keyed by the artifact file's hash).
        self._by_module: dict[tuple[str, EngineSettings], tuple[str, EngineSettings]] = {}
        self.limit: int | None = None  # set on first use from the descriptor limit; tests may set it

    def _limit(self) -> int:
        if self.limit is None:
            self.limit = default_memory_limit()
        return self.limit

    def by_file(self, file_key: _FileKey) -> Loaded | None:
        with self._lock:
            key = self._by_file.get(file_key)
            return self._touch(key) if key is not None else None

    def get(self, key: tuple[str, EngineSettings]) -> Loaded | None:
        with self._lock:
            return self._touch(key)

    def _touch(self, key: tuple[str, EngineSettings]) -> Loaded | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.loaded

    def put(self, key: tuple[str, EngineSettings], loaded: Loaded, file_key: _FileKey | None) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _MemoryEntry(loaded)
                self._by_module[(loaded.module_sha256, loaded.settings)] = key
            self._entries.move_to_end(key)
            if file_key is not None:
                self._by_file[file_key] = key
                entry.file_keys.add(file_key)
            while len(self._entries) > max(1, self._limit()):
                old_key, old = self._entries.popitem(last=False)
                for fk in old.file_keys:
                    self._by_file.pop(fk, None)
                alias = (old.loaded.module_sha256, old.loaded.settings)
                if self._by_module.get(alias) == old_key:
                    del self._by_module[alias]

    def _entry_of(self, loaded: Loaded) -> _MemoryEntry | None:
        key = self._by_module.get((loaded.module_sha256, loaded.settings))
        entry = self._entries.get(key) if key is not None else None
        return entry if entry is not None and entry.loaded.module is loaded.module else None

    def instance_pre(self, loaded: Loaded, make: Callable[[], wasmtime.InstancePre]) -> wasmtime.InstancePre:
        """The entry's pre-linked instance, made (outside the lock) the first time; uncached once evicted."""
        with self._lock:
            entry = self._entry_of(loaded)
            if entry is not None and entry.pre is not None:
                return entry.pre
        pre = make()
        with self._lock:
            entry = self._entry_of(loaded)
            if entry is not None and entry.pre is None:
                entry.pre = pre
        return pre

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_file.clear()
            self._by_module.clear()


@dataclasses.dataclass
class _MemoryEntry:
    loaded: Loaded
    pre: wasmtime.InstancePre | None = None
    file_keys: set[_FileKey] = dataclasses.field(default_factory=set)


#: Most modules kept in memory, however many descriptors the process may open.
MAX_MODULES = 256


def default_memory_limit() -> int:
    """How many modules to keep: a share of the descriptor limit (each holds at least one), at most MAX_MODULES."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 64
    if soft == getattr(resource, "RLIM_INFINITY", -1) or soft <= 0:
        return MAX_MODULES
    return max(4, min(MAX_MODULES, soft // 8))


def _file_key(
    module: str | os.PathLike[str] | bytes, settings: EngineSettings
) -> _FileKey | None:
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


def _refuse_precompiled(name: str) -> ArtifactError:
    return ArtifactError(
        f"{name} is precompiled native code, not WebAssembly: the sandbox cannot check what it does, so edgewasm "
        "runs one only when told to trust it",
        hint="if you made it with `edgewasm compile` or trust whoever did, pass --allow-precompiled "
        "(allow_precompiled=True); otherwise run the .wasm",
    )


def load_module(
    module: str | os.PathLike[str] | bytes,
    settings: EngineSettings,
    cache: DiskCache | None,
    *,
    engines: Engines,
    memory: MemoryCache | None = None,
    allow_precompiled: bool = False,
) -> Loaded:
    """Load and check a module with `engines`; `cache=None` compiles without touching the disk cache, `memory=None`
    without an in-memory cache.

    A `.cwasm` is native code from elsewhere (like wasmtime's `--allow-precompiled`): refused unless allowed."""
    file_key = _file_key(module, settings)
    if file_key is not None and memory is not None:
        hit = memory.by_file(file_key)
        if hit is not None:
            if hit.origin == "artifact" and not allow_precompiled:
                raise _refuse_precompiled(hit.name)
            return dataclasses.replace(hit, origin="memory")
    source = open_source(module)
    if source.kind == "cwasm" and not allow_precompiled:
        raise _refuse_precompiled(source.name)
    if source.kind == "wasm":
        settings = _features.settings_for(settings, source.needs, source.name)
    mem_key = (source.sha256, settings)
    hit = memory.get(mem_key) if memory is not None else None
    if hit is not None:
        return dataclasses.replace(hit, origin="memory")
    if source.kind == "cwasm":
        loaded = _load_artifact(source, settings, engines)
    else:
        loaded = _load_wasm(source, settings, engines, cache)
    if memory is not None:
        memory.put(mem_key, loaded, file_key)
    return loaded


def wasi_instance_pre(loaded: Loaded, memory: MemoryCache) -> wasmtime.InstancePre:
    """The module linked against WASI alone, made once per module while it stays in `memory`."""

    def make() -> wasmtime.InstancePre:
        linker = wasmtime.Linker(loaded.engine)
        linker.define_wasi()
        return linker.instantiate_pre(loaded.module)

    return memory.instance_pre(loaded, make)


def _load_wasm(source: Source, settings: EngineSettings, engines: Engines, cache: DiskCache | None) -> Loaded:
    needs = source.needs
    engine = engines.engine_for(settings)
    if cache is None:
        module = _compile(source, engine)
        return _finish(source, settings, engines, module, needs, "compiled", None)
    key = entry_key(source.sha256, settings.key_json())
    expect = {"module_sha256": source.sha256, "engine": settings.key()}
    hit = _from_cache(cache, key, expect, engine)
    if hit is not None:
        return _finish(source, settings, engines, hit[0], needs, "disk", hit[1], hit[2])
    with cache.compiling(key):
        # Another process may have filled the entry while we waited for the lock.
        hit = _from_cache(cache, key, expect, engine)
        if hit is not None:
            return _finish(source, settings, engines, hit[0], needs, "disk", hit[1], hit[2])
        module = _compile(source, engine)
        loaded = _finish(source, settings, engines, module, needs, "compiled", None)
        # An unusable cache slows the next start (it says so, once), it does not fail this one.
        path = cache.store(key, module.serialize(), _artifact_meta(source, settings, needs, loaded.verdict))
    return dataclasses.replace(loaded, artifact=path)


def _from_cache(
    cache: DiskCache, key: str, expect: dict[str, Any], engine: wasmtime.Engine
) -> tuple[wasmtime.Module, Path, _abi.Verdict] | None:
    def accept(meta: dict[str, Any]) -> wasmtime.Engine:
        for field, value in expect.items():
            if meta.get(field) != value:
                raise ArtifactError(f"{cache.path_for(key)}: artifact was built for a different {field}")
        return engine

    found = cache.lookup(key, accept)
    if found is None:
        return None
    module, path, meta = found
    try:
        return module, path, _abi.Verdict.from_dict(meta["verdict"])
    except (KeyError, TypeError, ValueError) as e:
        cache.discard(path, f"{path}: unreadable metadata ({e})")
    return None


def _load_artifact(source: Source, wanted: EngineSettings, engines: Engines) -> Loaded:
    """A `.cwasm` given explicitly (and allowed): never run unless it was built for exactly this host.

    Its own engine settings are used, as long as they provide what the caller asked for: interruption checks for
    a timeout, and fuel metering exactly when fuel is asked for (metered code traps without a budget).
    """
    assert source.path is not None, "artifacts are only read from files"
    try:
        fd = os.open(source.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ArtifactError(f"cannot read artifact {source.name}: {e.strerror}") from None
    try:
        module, meta = _artifact.load(
            fd, source.name, lambda meta: engines.engine_for(_artifact_settings(source, meta, wanted)), None
        )
    finally:
        os.close(fd)
    settings = _artifact_settings(source, meta, wanted)
    source = dataclasses.replace(source, sha256=str(meta.get("module_sha256", source.sha256)))
    try:
        verdict: _abi.Verdict | None = _abi.Verdict.from_dict(meta["verdict"])
    except (KeyError, TypeError, ValueError):
        verdict = None  # check the exports again
    needs = frozenset(meta.get("needs", []))
    return _finish(source, settings, engines, module, needs, "artifact", source.path, verdict)


def _artifact_settings(source: Source, meta: dict[str, Any], wanted: EngineSettings) -> EngineSettings:
    """The settings an explicit artifact was built with, refused unless they fit this host and this run."""
    built_for: dict[str, Any] = meta.get("engine", {})
    host = built_for.get("host", {})
    here = _hostinfo.fingerprint()
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
    return settings


def _finish(
    source: Source,
    settings: EngineSettings,
    engines: Engines,
    module: wasmtime.Module,
    needs: frozenset[str],
    origin: str,
    artifact: Path | None,
    verdict: _abi.Verdict | None = None,
) -> Loaded:
    if verdict is None:
        verdict = _abi.check(module, source.name)
    engine = engines.engine_for(settings)
    return Loaded(source.name, module, settings, verdict, needs, source.sha256, origin, artifact, engine, engines)


def compile_to(
    module: str | os.PathLike[str] | bytes, output: Path, settings: EngineSettings, engines: Engines
) -> Loaded:
    """Ahead-of-time compile to an explicit artifact file (`edgewasm compile`).

    The artifact is made to be run elsewhere, so it is unkeyed: it carries the sha256 of its image, and running it
    takes `allow_precompiled`."""
    source = open_source(module)
    if source.kind == "cwasm":
        raise ModuleLoadError(f"{source.name} is already a compiled artifact", hint="pass the .wasm or .wat file")
    needs = source.needs
    settings = _features.settings_for(settings, needs, source.name)
    compiled = _compile(source, engines.engine_for(settings))
    loaded = _finish(source, settings, engines, compiled, needs, "compiled", output)
    meta = _artifact_meta(source, settings, needs, loaded.verdict)
    _artifact.write_atomic(output, compiled.serialize(), meta)
    return loaded
