"""The AOT artifact cache: keys, integrity, atomicity, concurrency, artifacts from other machines, and above all that
only native code this user's edgewasm wrote and verified is ever mapped (forged entries, directories others can
write, planted symlinks, files swapped between the check and the map)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgewasm
from _privileges import NOBODY, as_nobody, make_read_only, needs_root, shared_dir  # noqa: F401  (fixtures)
from edgewasm import _artifact, _key, _loader
from edgewasm._engine import Engines, EngineSettings


def _load_fresh(path: Path, **kw: object) -> edgewasm.Guest:
    """Load through a runtime of its own: no in-memory hit, the disk cache (or the compiler) does the work."""
    return edgewasm.Runtime().load(path, **kw)  # type: ignore[arg-type]


def _only_artifact(cache: Path) -> Path:
    arts = list(cache.glob("*.cwasm"))
    assert len(arts) == 1, arts
    return arts[0]


def _cache_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, edgewasm.CacheWarning)]


def _elf_of(artifact: Path) -> bytes:
    return artifact.read_bytes()[: _artifact.read_meta(artifact)["elf_size"]]


def _unkeyed_meta(artifact: Path) -> dict[str, object]:
    return {k: v for k, v in _artifact.read_meta(artifact).items() if not k.startswith("elf_") and k != "format"}


def test_compile_once_then_disk_then_memory(wasm_dir: Path, isolated_cache: Path) -> None:
    assert _load_fresh(wasm_dir / "echo.wat").origin == "compiled"
    with edgewasm.Runtime() as runtime:
        assert runtime.load(wasm_dir / "echo.wat").origin == "disk"
        assert runtime.load(wasm_dir / "echo.wat").origin == "memory"
    _only_artifact(isolated_cache)


def test_key_covers_settings_and_module(wasm_dir: Path, isolated_cache: Path) -> None:
    _load_fresh(wasm_dir / "echo.wat")
    _load_fresh(wasm_dir / "echo.wat", opt_level="none")
    _load_fresh(wasm_dir / "echo.wat", fuel=10_000)
    _load_fresh(wasm_dir / "trap.wat")
    assert len(list(isolated_cache.glob("*.cwasm"))) == 4


def test_key_includes_host_and_silently_accepted_settings() -> None:
    key = EngineSettings().key()
    assert set(key["host"]) == {"wasmtime", "target", "cpu"}  # type: ignore[arg-type]
    for setting in ("opt_level", "nan_canonicalization", "max_wasm_stack", "fuel", "epoch", "simd"):
        assert setting in key["settings"]  # type: ignore[operator]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip_text", "truncate", "garbage", "empty", "trailer", "tag"])
def test_damaged_artifacts_are_discarded_and_rebuilt(wasm_dir: Path, isolated_cache: Path, damage: str) -> None:
    _load_fresh(wasm_dir / "echo.wat")
    art = _only_artifact(isolated_cache)
    size = art.stat().st_size
    if damage == "flip_text":
        _flip(art, size // 3)  # inside the ELF image: wasmtime alone would not notice
    elif damage == "truncate":
        art.write_bytes(art.read_bytes()[: size // 2])
    elif damage == "garbage":
        art.write_bytes(os.urandom(size))
    elif damage == "empty":
        art.write_bytes(b"")
    elif damage == "trailer":
        _flip(art, size - 60)  # inside the JSON trailer
    else:
        _flip(art, size - 20)  # inside the MAC itself
    with pytest.warns(edgewasm.CacheWarning, match="discarding cached artifact"):
        guest = _load_fresh(wasm_dir / "echo.wat")
    assert guest.origin == "compiled"
    assert guest.infer({"ok": 1}) == {"ok": 1}
    _artifact.verify(_only_artifact(isolated_cache), _key.artifact_key())  # the rebuilt entry is whole


@pytest.mark.parametrize("tag", ["recomputed sha256, no key", "another key"])
def test_forged_artifact_under_another_modules_key_is_refused_and_rebuilt(
    wasm_dir: Path, isolated_cache: Path, tag: str
) -> None:
    """The attack of issue 8: another module's native code under echo's cache key, its trailer recomputed."""
    _load_fresh(wasm_dir / "trap.wat")
    trap_elf = _elf_of(_only_artifact(isolated_cache))
    for p in isolated_cache.glob("*.cwasm"):
        p.unlink()
    assert _load_fresh(wasm_dir / "echo.wat").infer([1]) == [1]
    echo_art = _only_artifact(isolated_cache)
    forged_key = None if tag.startswith("recomputed") else os.urandom(32)
    _artifact.write_atomic(echo_art, trap_elf, _unkeyed_meta(echo_art), forged_key)
    assert _artifact.read_meta(echo_art)["elf_sha256"]  # a well-formed trailer: only the MAC gives it away

    with pytest.warns(edgewasm.CacheWarning, match="not written by this user's edgewasm"):
        guest = _load_fresh(wasm_dir / "echo.wat")
    assert guest.origin == "compiled"
    assert guest.infer({"still": "echo"}) == {"still": "echo"}  # trap's code would divide by zero here
    assert _elf_of(_only_artifact(isolated_cache)) != trap_elf


def test_artifact_claiming_another_host_in_cache_is_not_used(wasm_dir: Path, isolated_cache: Path) -> None:
    # Even one this user's edgewasm wrote (a home shared between machines) must fit this host.
    _load_fresh(wasm_dir / "echo.wat")
    art = _only_artifact(isolated_cache)
    meta = _unkeyed_meta(art)
    meta["engine"]["host"]["cpu"] = "0" * 16  # type: ignore[index]
    _artifact.write_atomic(art, _elf_of(art), meta, _key.artifact_key())
    with pytest.warns(edgewasm.CacheWarning, match="different engine"):
        assert _load_fresh(wasm_dir / "echo.wat").origin == "compiled"


def test_cache_directory_and_files_are_created_private(wasm_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "a" / "b" / "artifacts"
    old = os.umask(0)  # whatever the umask, nothing is made readable or writable by others
    try:
        assert _load_fresh(wasm_dir / "echo.wat", cache=cache).origin == "compiled"
    finally:
        os.umask(old)
    for d in (tmp_path / "a", tmp_path / "a" / "b", cache):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in cache.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_artifact_key_is_private_and_well_formed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "data" / "edgewasm" / "artifact.key"
    old = os.umask(0)
    try:
        key = _key.artifact_key(path)
    finally:
        os.umask(old)
    assert len(key) == 32 and path.read_text() == key.hex() + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not [p for p in path.parent.iterdir() if p.name != "artifact.key"]  # no temporary file left
    _key._load.cache_clear()
    assert _key.artifact_key(path) == key  # read back, not made again


@pytest.mark.parametrize("problem", ["readable by others", "symlink", "garbage"])
def test_a_key_file_that_is_not_private_disables_the_cache(
    wasm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path, problem: str
) -> None:
    key_file = tmp_path / "keys" / "artifact.key"
    key_file.parent.mkdir(mode=0o700)
    if problem == "readable by others":
        key_file.write_text(os.urandom(32).hex() + "\n")
        key_file.chmod(0o644)
    elif problem == "symlink":
        real = tmp_path / "elsewhere.key"
        real.write_text(os.urandom(32).hex() + "\n")
        real.chmod(0o600)
        key_file.symlink_to(real)
    else:
        key_file.write_text("not a key\n")
        key_file.chmod(0o600)
    monkeypatch.setenv("EDGEWASM_KEY_FILE", str(key_file))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert _load_fresh(wasm_dir / "echo.wat").origin == "compiled"
        assert _load_fresh(wasm_dir / "trap.wat").origin == "compiled"
    said = _cache_warnings(record)
    assert len(said) == 1 and "artifact key" in said[0] and str(key_file) in said[0], said
    assert list(isolated_cache.iterdir()) == []  # nothing written without the key


def _fill_then(cache: Path, wasm_dir: Path) -> set[str]:
    assert _load_fresh(wasm_dir / "echo.wat", cache=cache).origin == "compiled"
    return {p.name for p in cache.iterdir()}


def test_a_cache_directory_others_can_write_is_not_used(wasm_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "shared"
    before = _fill_then(cache, wasm_dir)
    cache.chmod(0o777)  # anyone could have swapped the entry since
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert _load_fresh(wasm_dir / "echo.wat", cache=cache).origin == "compiled"
        assert _load_fresh(wasm_dir / "trap.wat", cache=cache).origin == "compiled"
    said = _cache_warnings(record)
    assert len(said) == 1, said
    assert f"not using the artifact cache {cache}" in said[0] and "other users can write" in said[0]
    assert {p.name for p in cache.iterdir()} == before  # nothing written there


@needs_root
def test_a_cache_directory_another_user_owns_is_not_used_even_by_root(
    wasm_dir: Path,
    shared_dir: Path,  # noqa: F811
) -> None:
    """nobody makes the cache directory and plants another module's code in it, trailer recomputed; root must not
    map it (root can read anything: ownership, not permission, decides)."""
    cache = shared_dir / "cache"
    assert _load_fresh(wasm_dir / "trap.wat", cache=cache).origin == "compiled"
    trap_art = _only_artifact(cache)
    trap_elf = _elf_of(trap_art)
    trap_art.unlink()
    _load_fresh(wasm_dir / "echo.wat", cache=cache)
    echo_art = _only_artifact(cache)
    forged = shared_dir / "forged.cwasm"
    _artifact.write_atomic(forged, trap_elf, _unkeyed_meta(echo_art))
    forged.chmod(0o644)
    os.chown(cache, NOBODY, NOBODY)
    echo_art.unlink()
    planted = subprocess.run(
        ["cp", str(forged), str(echo_art)], preexec_fn=as_nobody, capture_output=True, text=True, check=False
    )
    assert planted.returncode == 0, planted.stderr
    assert echo_art.stat().st_uid == NOBODY

    before = {p.name for p in cache.iterdir()}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        guest = _load_fresh(wasm_dir / "echo.wat", cache=cache)
        assert guest.origin == "compiled" and guest.infer([7]) == [7]
        _load_fresh(wasm_dir / "cat.wat", cache=cache)
    said = _cache_warnings(record)
    assert len(said) == 1 and f"belongs to uid {NOBODY}" in said[0], said
    assert {p.name for p in cache.iterdir()} == before


def test_a_planted_lock_symlink_is_not_followed(wasm_dir: Path, isolated_cache: Path, tmp_path: Path) -> None:
    _load_fresh(wasm_dir / "echo.wat")
    art = _only_artifact(isolated_cache)
    lock = isolated_cache / f".{art.stem}.lock"
    art.unlink()
    lock.unlink()
    victim = tmp_path / "victim"
    lock.symlink_to(victim)
    assert _load_fresh(wasm_dir / "echo.wat").origin == "compiled"  # compiled, stored, without the lock
    assert not victim.exists()
    assert lock.is_symlink()  # left alone
    _artifact.verify(_only_artifact(isolated_cache), _key.artifact_key())


def test_a_symlinked_entry_is_not_followed(wasm_dir: Path, isolated_cache: Path, tmp_path: Path) -> None:
    _load_fresh(wasm_dir / "echo.wat")
    art = _only_artifact(isolated_cache)
    elsewhere = tmp_path / "elsewhere.cwasm"
    art.rename(elsewhere)
    art.symlink_to(elsewhere)
    with pytest.warns(edgewasm.CacheWarning, match="discarding cached artifact"):
        assert _load_fresh(wasm_dir / "echo.wat").origin == "compiled"
    assert not _only_artifact(isolated_cache).is_symlink()


@pytest.mark.parametrize("mode", [0o600, 0o666])
def test_the_bytes_verified_are_the_bytes_mapped(wasm_dir: Path, tmp_path: Path, mode: int) -> None:
    """Replace the file (by rename, or in place) between the check and the map: what runs is what was checked.
    0600: mapped through the descriptor that was verified; 0666 (others could rewrite it): a verified copy."""
    echo = tmp_path / "echo.cwasm"
    trap = tmp_path / "trap.cwasm"
    _loader.compile_to(wasm_dir / "echo.wat", echo, EngineSettings(), Engines())
    _loader.compile_to(wasm_dir / "trap.wat", trap, EngineSettings(), Engines())
    echo.chmod(mode)
    swapped = []

    def accept_then_swap(meta: dict[str, object]) -> object:
        if mode == 0o600:
            os.replace(trap, echo)
        else:
            with open(echo, "r+b") as f:
                f.write(_elf_of(trap))
        swapped.append(True)
        return engines.engine_for(EngineSettings())

    engines = Engines()
    fd = os.open(echo, os.O_RDONLY)
    try:
        module, meta = _artifact.load(fd, str(echo), accept_then_swap, None)  # type: ignore[arg-type]
    finally:
        os.close(fd)
    assert swapped and meta["source"] == "echo.wat"
    loaded = _loader._finish(
        _loader.open_source(wasm_dir / "echo.wat"), EngineSettings(), engines, module, frozenset(), "artifact", echo
    )
    guest = edgewasm.Guest(loaded, edgewasm._sandbox.Sandbox())
    assert guest.infer([1, 2]) == [1, 2]  # echo's code, not trap's division by zero


def test_a_precompiled_artifact_needs_an_explicit_opt_in(wasm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "echo.cwasm"
    _loader.compile_to(wasm_dir / "echo.wat", out, EngineSettings(), Engines())
    with edgewasm.Runtime() as runtime:
        with pytest.raises(edgewasm.ArtifactError, match="precompiled native code") as refused:
            runtime.load(out)
        assert "allow_precompiled=True" in refused.value.one_line()
        assert runtime.load(out, allow_precompiled=True).infer([3]) == [3]
        with pytest.raises(edgewasm.ArtifactError, match="precompiled native code"):
            runtime.load(out)  # not through the in-memory cache either
        with pytest.raises(edgewasm.ArtifactError, match="precompiled native code"):
            runtime.load(out.read_bytes())


def test_explicit_artifact_runs_only_on_its_own_host(wasm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "echo.cwasm"
    _loader.compile_to(wasm_dir / "echo.wat", out, EngineSettings(), Engines())
    guest = _load_fresh(out, allow_precompiled=True)
    assert guest.origin == "artifact" and guest.infer([1, 2]) == [1, 2]

    meta = _unkeyed_meta(out)
    elf = _elf_of(out)
    meta["engine"]["host"]["cpu"] = "feedfacefeedface"  # type: ignore[index]
    foreign = tmp_path / "foreign.cwasm"
    _artifact.write_atomic(foreign, elf, meta)
    with pytest.raises(edgewasm.ArtifactError, match=r"another CPU features.*SIGILL"):
        _load_fresh(foreign, allow_precompiled=True)

    tampered = tmp_path / "tampered.cwasm"
    tampered.write_bytes(out.read_bytes())
    _flip(tampered, len(elf) // 2)
    with pytest.raises(edgewasm.ArtifactError, match="checksum mismatch"):
        _load_fresh(tampered, allow_precompiled=True)

    bare = tmp_path / "bare.cwasm"
    bare.write_bytes(elf)  # wasmtime's own serialization, without our trailer
    with pytest.raises(edgewasm.ArtifactError, match="not an edgewasm artifact"):
        _load_fresh(bare, allow_precompiled=True)

    with pytest.raises(edgewasm.ArtifactError, match="other engine settings"):
        _load_fresh(out, fuel=1000, allow_precompiled=True)


def test_an_artifact_of_the_older_format_is_named_as_such(wasm_dir: Path, tmp_path: Path) -> None:
    import json
    import struct

    out = tmp_path / "echo.cwasm"
    _loader.compile_to(wasm_dir / "echo.wat", out, EngineSettings(), Engines())
    blob = json.dumps(dict(_unkeyed_meta(out), format=1)).encode()
    old = tmp_path / "old.cwasm"
    old.write_bytes(_elf_of(out) + blob + struct.pack("<Q8s", len(blob), b"EDGEWASM"))
    with pytest.raises(edgewasm.ArtifactError, match="older edgewasm"):
        _load_fresh(old, allow_precompiled=True)


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        _artifact.write_atomic(tmp_path / "x.cwasm", b"\x7fELF" + b"\0" * 100, {})
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = os.fsync

    def enospc(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(28, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", enospc)
    yield


@pytest.mark.parametrize("how", ["a file in the way", "read-only", "full disk"])
def test_an_unwritable_cache_warns_once_and_still_loads(
    wasm_dir: Path, tmp_path: Path, request: pytest.FixtureRequest, how: str
) -> None:
    if how == "a file in the way":
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        cache, why = blocker / "cache", "Not a directory"
    elif how == "read-only":
        cache = tmp_path / "cache"
        cache.mkdir(mode=0o700)
        request.getfixturevalue("make_read_only")(cache)
        why = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    else:
        request.getfixturevalue("full_disk")
        cache, why = tmp_path / "cache", "No space left on device"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert _load_fresh(wasm_dir / "echo.wat", cache=cache).infer(1) == 1
        assert _load_fresh(wasm_dir / "trap.wat", cache=cache).origin == "compiled"
        assert _load_fresh(wasm_dir / "echo.wat", cache=cache).origin == "compiled"
    said = _cache_warnings(record)
    assert len(said) == 1, said
    assert said[0].startswith(f"cannot write the artifact cache {cache}: {why}") and "hint:" in said[0]
    if cache.is_dir():
        assert not [p for p in cache.iterdir() if p.suffix in (".cwasm", ".tmp")]


_LIBRARY_USER = """
import sys, warnings, edgewasm
if sys.argv[2] == "ignore":
    warnings.simplefilter("ignore", edgewasm.CacheWarning)
g = edgewasm.load(sys.argv[1], cache=sys.argv[3])
assert g.infer([1]) == [1]
"""


@pytest.mark.parametrize("filtered", ["show", "ignore"])
def test_a_library_user_sees_one_clean_line_and_can_filter_it(wasm_dir: Path, tmp_path: Path, filtered: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-c", _LIBRARY_USER, str(wasm_dir / "echo.wat"), filtered, str(blocker / "c")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    if filtered == "ignore":
        assert proc.stderr == ""
    else:
        assert proc.stderr.count("\n") == 1, proc.stderr  # no Python source line under it
        assert proc.stderr.startswith(f"edgewasm: warning: cannot write the artifact cache {blocker / 'c'}")


_WORKER = """
import sys, edgewasm
g = edgewasm.load(sys.argv[1])
assert g.infer({"n": 1}) == {"n": 1}
print(g.origin)
"""


def test_processes_filling_the_cache_at_once(wasm_dir: Path, isolated_cache: Path, tmp_path: Path) -> None:
    # A fresh key too: the processes race to make it, and must agree (or they would discard each other's entries).
    env = dict(os.environ, EDGEWASM_CACHE_DIR=str(isolated_cache), EDGEWASM_KEY_FILE=str(tmp_path / "k" / "key"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(wasm_dir / "echo.wat")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    origins = sorted(out.strip() for out, _ in results)
    assert origins.count("compiled") >= 1 and set(origins) <= {"compiled", "disk"}
    assert not any("warning" in err.lower() for _, err in results), results
    _artifact.verify(_only_artifact(isolated_cache), _key.artifact_key(tmp_path / "k" / "key"))
    assert not [p for p in isolated_cache.iterdir() if p.name.endswith(".tmp")]
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["key"]


def test_cache_entries_and_clear(wasm_dir: Path, isolated_cache: Path) -> None:
    _load_fresh(wasm_dir / "echo.wat")
    _load_fresh(wasm_dir / "trap.wat")
    cache = edgewasm.DiskCache()
    assert sorted(e.meta["source"] for e in cache.entries()) == ["echo.wat", "trap.wat"]
    assert cache.clear() == 2
    assert cache.entries() == []


def test_clear_that_cannot_remove_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(edgewasm.CacheError, match=r"cannot clear .*Not a directory"):
        edgewasm.DiskCache(blocker).clear()
    assert edgewasm.DiskCache(tmp_path / "never-made").clear() == 0  # nothing to clear is not an error
