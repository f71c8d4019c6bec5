"""The Rust guest toolchain: build.sh reproduces the committed modules byte for byte, from any checkout path."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "guest"
CARGO = Path("/usr/bin/cargo")
RUSTC = Path("/usr/bin/rustc")
HOST_TARGET = "x86_64-unknown-linux-gnu"


def _missing_toolchain() -> str | None:
    """Why the Debian Rust toolchain for wasm32-wasi is unusable here, or None when it is complete."""
    if not (CARGO.exists() and RUSTC.exists()):
        return "no /usr/bin/cargo or /usr/bin/rustc (apt-get install rustc cargo libstd-rust-dev-wasm32)"
    sysroot = subprocess.run([str(RUSTC), "--print", "sysroot"], capture_output=True, text=True, check=True)
    if not glob.glob(f"{sysroot.stdout.strip()}/lib/rustlib/wasm32-wasi/lib/libstd-*.rlib"):
        return "no wasm32-wasi standard library (apt-get install libstd-rust-dev-wasm32)"
    for crate in ("serde", "serde_bytes", "rmp-serde"):
        if not glob.glob(f"/usr/share/cargo/registry/{crate}-[0-9]*"):
            return f"Debian's {crate} crate is not installed (apt-get install librust-{crate.replace('_', '-')}-dev)"
    return None


needs_toolchain = pytest.mark.skipif(
    _missing_toolchain() is not None, reason=f"Rust guest toolchain unavailable: {_missing_toolchain()}"
)


def _build_sh(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(cwd / "guest" / "build.sh"), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=1500,
    )


@needs_toolchain
def test_committed_guests_are_reproducible() -> None:
    proc = _build_sh("--check")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "match wasm/" in proc.stderr


@needs_toolchain
def test_build_is_independent_of_the_checkout_path(tmp_path: Path) -> None:
    """A checkout elsewhere (with a space in its path, another HOME) builds the identical hello.wasm."""
    clone = tmp_path / "other checkout"
    shutil.copytree(GUEST, clone / "guest", ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    (clone / "wasm").mkdir()
    shutil.copy2(ROOT / "wasm" / "hello.wasm", clone / "wasm" / "hello.wasm")
    proc = _build_sh("--check", "hello", cwd=clone, env={"HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr[-4000:]

    # ...and --check fails, naming the file, once the committed module is not what the sources build.
    module = clone / "wasm" / "hello.wasm"
    module.write_bytes(module.read_bytes() + b"\0")
    proc = _build_sh("--check", "hello", cwd=clone, env={"HOME": str(tmp_path / "home")})
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "differ from the committed ones: wasm/hello.wasm" in proc.stderr


@needs_toolchain
def test_sdk_unit_tests_pass() -> None:
    """The SDK's own tests (wire forms, buffers, error maps) on the host target."""
    proc = subprocess.run(
        [str(CARGO), "test", "--offline", "--target", HOST_TARGET, "-p", "edgewasm-guest"],
        cwd=GUEST,
        env={**os.environ, "CARGO_TARGET_DIR": str(GUEST / "target" / "sdk-tests")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "test result: ok" in proc.stdout


@needs_toolchain
def test_classifier_request_tests_pass() -> None:
    """guest/classifier-common's request tests on the host target: every refusal, and 20,000 fuzzed requests that
    must each end in an answer or an error map, never a panic (a trap in the guest). Release: fuzzing decodes images."""
    proc = subprocess.run(
        [str(CARGO), "test", "--offline", "--release", "--target", HOST_TARGET, "-p", "classifier-common"],
        cwd=GUEST,
        env={**os.environ, "CARGO_TARGET_DIR": str(GUEST / "target" / "classifier-common-tests")},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "fuzzed_requests_end_in_an_answer_or_an_error_never_a_panic ... ok" in proc.stdout


def test_missing_toolchain_is_one_clear_line(tmp_path: Path) -> None:
    proc = _build_sh(env={"EDGEWASM_CARGO": str(tmp_path / "no-cargo")})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "guest/build.sh: Debian's Rust toolchain is missing: apt-get install rustc cargo libstd-rust-dev-wasm32"
    ]


def test_unknown_guest_name_is_refused() -> None:
    if _missing_toolchain() is not None:
        pytest.skip(f"Rust guest toolchain unavailable: {_missing_toolchain()}")
    proc = _build_sh("no-such-guest")
    assert proc.returncode == 2
    assert "no guest named no-such-guest" in proc.stderr
