"""The real `edgewasm` command in a real process: answers, exit codes, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = [shutil.which("edgewasm")] if shutil.which("edgewasm") else [sys.executable, "-m", "edgewasm"]


def edgewasm(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*EXE, *args], input=stdin, capture_output=True, timeout=120, cwd=cwd)  # type: ignore[list-item]


def assert_one_line_error(proc: subprocess.CompletedProcess[bytes], code: int, *needles: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgewasm: error: "), err
    for needle in needles:
        assert needle in lines[0], err


def test_run_answers_json(wasm_dir: Path) -> None:
    req = {"model_id": "m", "image_data": [0.5, 1.5], "width": 1, "height": 2}
    proc = edgewasm("run", str(wasm_dir / "echo.wat"), stdin=json.dumps(req).encode())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == req


def test_run_msgpack_in_and_out(wasm_dir: Path) -> None:
    import msgpack

    proc = edgewasm("run", str(wasm_dir / "echo.wat"), "--output", "msgpack", stdin=msgpack.packb({"k": b"\x00\x01"}))
    assert proc.returncode == 0, proc.stderr
    assert msgpack.unpackb(proc.stdout) == {"k": {"$base64": "AAE="}}


def test_run_command_module_passes_stdout_and_exit_code(wasm_dir: Path) -> None:
    proc = edgewasm("run", str(wasm_dir / "cat.wat"), stdin=b"raw bytes\n")
    assert (proc.returncode, proc.stdout) == (0, b"raw bytes\n")
    assert edgewasm("run", str(wasm_dir / "cat.wat")).returncode == 3


@pytest.mark.parametrize(
    ("args", "stdin", "code", "needles"),
    [
        (["run", "missing.wasm"], b"{}", 2, ["no such module file: missing.wasm"]),
        (["run", "{echo}"], b'{"model_id": "m", "pix', 2, ["unexpected EOF", "cut short"]),
        (["run", "{echo}"], b'{"a": 1,,}', 2, ["not valid JSON"]),
        (["run", "{echo}"], b"", 2, ["empty request"]),
        (["run", "{spin}", "--timeout", "0.2"], b"{}", 4, ["exceeded its timeout of 0.2 s", "hint:"]),
        (["run", "{grow}", "--memory-limit", "16MiB"], b"{}", 4, ["ran out of linear memory", "memory-limit"]),
        (["run", "{trap}"], b"{}", 4, ["guest trapped: wasm trap: integer divide by zero"]),
        (["run", "{bad_range}"], b"{}", 2, ["outside its memory"]),
        (["run", "{absurd_len}"], b"{}", 2, ["absurd response length"]),
        (["run", "{echo}", "--memory-limit", "lots"], b"{}", 2, ["cannot read memory limit"]),
        (["run", "{cat}", "--dir", "/no/such/dir::/data"], b"", 2, ["cannot preopen /no/such/dir"]),
        (["inspect", "{garbage}"], b"", 2, ["neither WebAssembly"]),
    ],
)
def test_mistakes_get_one_line_and_an_exit_code(
    wasm_dir: Path, tmp_path: Path, args: list[str], stdin: bytes, code: int, needles: list[str]
) -> None:
    garbage = tmp_path / "garbage.wasm"
    garbage.write_bytes(b"\xff\xfe not wasm")
    names = {f"{{{p.stem}}}": str(p) for p in wasm_dir.glob("*.wat")} | {"{garbage}": str(garbage)}
    assert_one_line_error(edgewasm(*[names.get(a, a) for a in args], stdin=stdin), code, *needles)


def test_debug_shows_the_traceback(wasm_dir: Path) -> None:
    proc = edgewasm("--debug", "run", str(wasm_dir / "trap.wat"), stdin=b"{}")
    assert proc.returncode != 0 and b"Traceback" in proc.stderr


def test_dir_is_read_only_by_default(wasm_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello from the host")
    files = str(wasm_dir / "files.wat")
    ro = edgewasm("run", files, "--dir", f"{tmp_path}::/data", "--env", "K=V")
    assert ro.returncode == 3 and b"K=V" in ro.stdout and b"hello from the host" in ro.stdout
    assert edgewasm("run", files, "--dir", f"{tmp_path}::/data:rw").returncode == 0
    assert (tmp_path / "written.txt").exists()


def test_compile_then_run_the_artifact(wasm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "echo.cwasm"
    proc = edgewasm("compile", str(wasm_dir / "echo.wat"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert b"reactor guest" in proc.stdout and out.exists()
    run = edgewasm("run", "--allow-precompiled", str(out), stdin=b'{"x": 1}')
    assert json.loads(run.stdout) == {"x": 1}
    # another machine's artifact: forge the CPU in its trailer and expect a refusal, never a SIGILL
    from edgewasm import _artifact

    meta = _artifact.read_meta(out)
    elf = out.read_bytes()[: meta["elf_size"]]
    meta["engine"]["host"]["cpu"] = "0123456789abcdef"
    _artifact.write_atomic(out, elf, {k: v for k, v in meta.items() if not k.startswith("elf_")})
    foreign = edgewasm("run", "--allow-precompiled", str(out), stdin=b"{}")
    assert_one_line_error(foreign, 2, "another CPU features", "edgewasm compile")


def test_inspect_shows_exports_and_verdict(wasm_dir: Path) -> None:
    proc = edgewasm("inspect", str(wasm_dir / "echo.wat"))
    out = proc.stdout.decode()
    assert proc.returncode == 0
    assert "infer: func (i32, i32) -> i64" in out and "abi:     reactor" in out
    cat = edgewasm("inspect", str(wasm_dir / "cat.wat")).stdout.decode()
    assert "wasi_snapshot_preview1.fd_read" in cat and "WASI command" in cat


def test_cache_list_and_clear(wasm_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "c"
    env_args = ["--cache-dir", str(cache)]
    assert edgewasm(*env_args, "run", str(wasm_dir / "echo.wat"), stdin=b"1").returncode == 0
    listing = edgewasm(*env_args, "cache", "list").stdout.decode()
    assert "1 artifacts" in listing and "echo.wat" in listing
    assert "removed 1 artifacts" in edgewasm(*env_args, "cache", "clear").stdout.decode()
    assert not list(cache.glob("*.cwasm"))


def test_cache_dir_from_environment(wasm_dir: Path, tmp_path: Path) -> None:
    env = dict(os.environ, EDGEWASM_CACHE_DIR=str(tmp_path / "envcache"))
    proc = subprocess.run([*EXE, "run", str(wasm_dir / "echo.wat")], input=b"2", capture_output=True, env=env)  # type: ignore[list-item]
    assert proc.returncode == 0
    assert list((tmp_path / "envcache").glob("*.cwasm"))


def test_usage_errors_are_one_line_too(wasm_dir: Path) -> None:
    assert_one_line_error(edgewasm("run"), 2, "Missing argument 'MODULE'", "--help")
    bad = edgewasm("run", str(wasm_dir / "echo.wat"), "--nn-preload", "a:b:c", stdin=b"{}")
    assert_one_line_error(bad, 2, "--nn-preload")


def test_artifact_settings_must_fit_the_run(wasm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fast.cwasm"
    assert edgewasm("compile", str(wasm_dir / "echo.wat"), "--no-timeout", "-o", str(out)).returncode == 0
    refused = edgewasm("run", "--allow-precompiled", str(out), stdin=b"{}")
    assert_one_line_error(refused, 2, "no timeout", "--no-timeout")
    ok = edgewasm("run", "--allow-precompiled", str(out), "--timeout", "0", stdin=b"[3]")
    assert ok.returncode == 0 and json.loads(ok.stdout) == [3]


def test_inspect_shows_what_is_wrong_with_a_module_it_cannot_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wat"
    bad.write_text('(module (memory (export "memory") 1) (func (export "run")))')
    proc = edgewasm("inspect", str(bad))
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert "run: func ()" in out and "abi:     not runnable:" in out and "undefined export infer" in out
