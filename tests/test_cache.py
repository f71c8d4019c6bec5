"""The AOT artifact cache: keys, integrity, atomicity, concurrency, and artifacts from other machines."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import edgewasm
from edgewasm import _artifact, _loader
from edgewasm._engine import EngineSettings


def _load_fresh(path: Path, **kw: object) -> edgewasm.Guest:
    _loader.forget()
    return edgewasm.load(path, **kw)  # type: ignore[arg-type]


def _only_artifact(cache: Path) -> Path:
    arts = list(cache.glob("*.cwasm"))
    assert len(arts) == 1, arts
    return arts[0]


def test_compile_once_then_disk_then_memory(wasm_dir: Path, isolated_cache: Path) -> None:
    assert _load_fresh(wasm_dir / "echo.wat").origin == "compiled"
    assert _load_fresh(wasm_dir / "echo.wat").origin == "disk"
    assert edgewasm.load(wasm_dir / "echo.wat").origin == "memory"
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


@pytest.mark.parametrize("damage", ["flip_text", "truncate", "garbage", "empty", "trailer"])
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
    else:
        _flip(art, size - 20)  # inside the JSON trailer
    with pytest.warns(edgewasm.CacheWarning, match="discarding cached artifact"):
        guest = _load_fresh(wasm_dir / "echo.wat")
    assert guest.origin == "compiled"
    assert guest.infer({"ok": 1}) == {"ok": 1}
    _artifact.verify(_only_artifact(isolated_cache))  # the rebuilt entry is whole


def test_artifact_claiming_another_host_in_cache_is_not_used(wasm_dir: Path, isolated_cache: Path) -> None:
    _load_fresh(wasm_dir / "echo.wat")
    art = _only_artifact(isolated_cache)
    meta = _artifact.read_meta(art)
    elf = art.read_bytes()[: meta["elf_size"]]
    meta["engine"]["host"]["cpu"] = "0" * 16
    _artifact.write_atomic(art, elf, {k: v for k, v in meta.items() if not k.startswith("elf_")})
    with pytest.warns(edgewasm.CacheWarning, match="different engine"):
        assert _load_fresh(wasm_dir / "echo.wat").origin == "compiled"


def test_explicit_artifact_runs_only_on_its_own_host(wasm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "echo.cwasm"
    _loader.compile_to(wasm_dir / "echo.wat", out, EngineSettings())
    guest = _load_fresh(out)
    assert guest.origin == "artifact" and guest.infer([1, 2]) == [1, 2]

    meta = _artifact.read_meta(out)
    elf = out.read_bytes()[: meta["elf_size"]]
    meta["engine"]["host"]["cpu"] = "feedfacefeedface"
    foreign = tmp_path / "foreign.cwasm"
    _artifact.write_atomic(foreign, elf, {k: v for k, v in meta.items() if not k.startswith("elf_")})
    with pytest.raises(edgewasm.ArtifactError, match=r"another CPU features.*SIGILL"):
        _load_fresh(foreign)

    tampered = tmp_path / "tampered.cwasm"
    tampered.write_bytes(out.read_bytes())
    _flip(tampered, meta["elf_size"] // 2)
    with pytest.raises(edgewasm.ArtifactError, match="checksum mismatch"):
        _load_fresh(tampered)

    bare = tmp_path / "bare.cwasm"
    bare.write_bytes(elf)  # wasmtime's own serialization, without our trailer
    with pytest.raises(edgewasm.ArtifactError, match="not an edgewasm artifact"):
        _load_fresh(bare)

    with pytest.raises(edgewasm.ArtifactError, match="other engine settings"):
        _load_fresh(out, fuel=1000)


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        _artifact.write_atomic(tmp_path / "x.cwasm", b"\x7fELF" + b"\0" * 100, {})
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_still_loads(wasm_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        guest = _load_fresh(wasm_dir / "echo.wat", cache=blocker / "cache")
    assert guest.infer(1) == 1


_WORKER = """
import sys, edgewasm
g = edgewasm.load(sys.argv[1])
assert g.infer({"n": 1}) == {"n": 1}
print(g.origin)
"""


def test_processes_filling_the_cache_at_once(wasm_dir: Path, isolated_cache: Path) -> None:
    env = dict(os.environ, EDGEWASM_CACHE_DIR=str(isolated_cache))
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
    assert not any("Warning" in err for _, err in results), results
    _artifact.verify(_only_artifact(isolated_cache))
    assert not [p for p in isolated_cache.iterdir() if p.name.endswith(".tmp")]


def test_cache_entries_and_clear(wasm_dir: Path, isolated_cache: Path) -> None:
    _load_fresh(wasm_dir / "echo.wat")
    _load_fresh(wasm_dir / "trap.wat")
    cache = edgewasm.DiskCache()
    assert sorted(e.meta["source"] for e in cache.entries()) == ["echo.wat", "trap.wat"]
    assert cache.clear() == 2
    assert cache.entries() == []
