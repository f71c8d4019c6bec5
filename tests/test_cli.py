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


# -- issue 8: inputs that never escape the error hierarchy, and the first hour of a new user ---------------------------


def test_fuel_zero_turns_the_limit_off(wasm_dir: Path) -> None:
    proc = edgewasm("run", str(wasm_dir / "echo.wat"), "--fuel", "0", stdin=b"[1]")
    assert proc.returncode == 0 and json.loads(proc.stdout) == [1], proc.stderr
    assert_one_line_error(edgewasm("run", str(wasm_dir / "spin.wat"), "--fuel", "1000", stdin=b"{}"), 4, "fuel")


def test_global_options_work_after_the_subcommand(wasm_dir: Path, tmp_path: Path) -> None:
    proc = edgewasm("run", str(wasm_dir / "trap.wat"), "--debug", stdin=b"{}")
    assert proc.returncode != 0 and b"Traceback" in proc.stderr
    cache = tmp_path / "after"
    assert edgewasm("run", str(wasm_dir / "echo.wat"), "--cache-dir", str(cache), stdin=b"1").returncode == 0
    assert list(cache.glob("*.cwasm"))
    listing = edgewasm("cache", "list", "--cache-dir", str(cache)).stdout.decode()
    assert listing.startswith(f"{cache}: 1 artifacts")


def test_no_arguments_prints_the_usage_without_an_error() -> None:
    proc = edgewasm()
    err = proc.stderr.decode()
    assert proc.returncode == 2  # click's convention for a group invoked without a command
    assert err.startswith("Usage: edgewasm [OPTIONS] COMMAND") and "Commands:" in err
    assert "error" not in err and "hint" not in err


def test_a_memory_limit_below_the_modules_own_is_a_bad_option(wasm_dir: Path) -> None:
    proc = edgewasm("run", str(wasm_dir / "echo.wat"), "--memory-limit", "1KiB", stdin=b"{}")
    assert_one_line_error(proc, 2, "initial memory does not fit", "--memory-limit")
    with pytest.raises(SystemExit):  # still a GuestOutOfMemory for library code that catches that
        import edgewasm as lib

        try:
            lib.load(wasm_dir / "echo.wat", memory_limit="1KiB")
        except lib.GuestOutOfMemory as e:
            assert isinstance(e, lib.SandboxError)
            raise SystemExit from None


def test_a_photo_on_stdin_is_told_about_image(wasm_dir: Path) -> None:
    jpeg = (wasm_dir.parent / "examples" / "cat.jpg").read_bytes()
    assert_one_line_error(edgewasm("run", str(wasm_dir / "echo.wat"), stdin=jpeg), 2, "a JPEG image", "--image")
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    assert_one_line_error(edgewasm("run", str(wasm_dir / "echo.wat"), stdin=png), 2, "a PNG image", "--image")


def test_text_named_wasm_is_not_a_webassembly_binary(tmp_path: Path) -> None:
    fake = tmp_path / "model.wasm"
    fake.write_text("<html>404 not found</html>\n")
    proc = edgewasm("run", str(fake), stdin=b"{}")
    assert_one_line_error(proc, 2, "neither WebAssembly", "binary module")
    assert "WAT" not in proc.stderr.decode()
    wat = tmp_path / "module.txt"  # text under another name is still tried as WAT
    wat.write_text("(module")
    assert_one_line_error(edgewasm("run", str(wat), stdin=b"{}"), 2, "invalid WAT")


@pytest.mark.parametrize(
    ("what", "request_bytes", "code", "needle"),
    [
        ("a list as a map key", b"\x81\x91\x01\x02", 2, "map key is an array or a map"),
        ("a map as a map key", b"\x81\x81\x01\x02\x03", 2, "map key is an array or a map"),
        ("2,000-deep JSON", b"[" * 2000 + b"]" * 2000, 2, "nests deeper than 1024 levels"),
        ("1,000,000-deep JSON", b"[" * 10**6 + b"]" * 10**6, 2, "nests too deeply"),
        ("5,000-deep msgpack", b"\x91" * 5000 + b"\x01", 2, "nests deeper than 1024 levels"),
        ("a truncated timestamp", b"\xd4\xff\x00", 2, "invalid timestamp"),
        ("a huge declared length", b"\xdb\xff\xff\xff\xff", 2, "not JSON or msgpack"),
    ],
)
def test_bad_requests_stay_in_the_hierarchy(
    wasm_dir: Path, what: str, request_bytes: bytes, code: int, needle: str
) -> None:
    assert_one_line_error(edgewasm("run", str(wasm_dir / "echo.wat"), stdin=request_bytes), code, needle)


@pytest.mark.parametrize("depth", [1000, 1024])
def test_deep_messages_round_trip(wasm_dir: Path, depth: int) -> None:
    """As deep as msgpack goes, in JSON and in msgpack: answered, not an internal error (exit 70)."""
    text = "[" * depth + "]" * depth
    proc = edgewasm("run", str(wasm_dir / "echo.wat"), stdin=text.encode())
    assert proc.returncode == 0 and proc.stdout.decode().replace(" ", "").strip() == text, proc.stderr[-300:]
    proc = edgewasm("run", str(wasm_dir / "echo.wat"), stdin=b"\x91" * depth + b"\x01")
    assert proc.returncode == 0 and proc.stdout.decode().strip() == "[" * depth + "1" + "]" * depth


def test_ext_types_round_trip_and_print(wasm_dir: Path) -> None:
    import msgpack

    req = {"when": msgpack.Timestamp(1_700_000_000, 5), "blob": msgpack.ExtType(7, b"\x01\x02")}
    proc = edgewasm("run", str(wasm_dir / "echo.wat"), stdin=msgpack.packb(req))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["blob"] == {"$ext": 7, "$base64": "AQI="}
    assert out["when"]["$ext"] == -1
    back = msgpack.unpackb(edgewasm("run", str(wasm_dir / "echo.wat"), "--output", "msgpack",
                                    stdin=msgpack.packb(req)).stdout)
    assert back["blob"] == {"$ext": 7, "$base64": "AQI="}  # as JSON shows it, like bytes ($base64)


def _answering(tmp_path: Path, payload: bytes) -> Path:
    """A reactor that answers every request with `payload`."""
    data = "".join(f"\\{b:02x}" for b in payload)
    module = tmp_path / "answer.wat"
    module.write_text(f"""(module (memory (export "memory") 2)
      (data (i32.const 65536) "{data}")
      (func (export "edge_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "edge_free") (param i32 i32))
      (func (export "infer") (param i32 i32) (result i64)
        (i64.or (i64.shl (i64.const 65536) (i64.const 32)) (i64.const {len(payload)}))))""")
    return module


@pytest.mark.parametrize(
    ("what", "payload", "needle"),
    [
        ("a list as a map key", b"\x81\x91\x01\x02", "map key is an array or a map"),
        ("2,000-deep nesting", b"\x91" * 2000 + b"\x01", "nests deeper than 1024 levels"),
        ("a bad timestamp", b"\xd4\xff\x00", "invalid timestamp"),
    ],
)
def test_bad_responses_are_abi_errors(tmp_path: Path, what: str, payload: bytes, needle: str) -> None:
    assert_one_line_error(edgewasm("run", str(_answering(tmp_path, payload)), stdin=b"{}"), 2, needle)
    import edgewasm as lib

    guest = lib.load(_answering(tmp_path, payload))
    for _ in range(2):  # and the guest keeps serving
        with pytest.raises(lib.AbiError, match=needle):
            guest.infer({})


def test_a_rust_guest_out_of_memory_says_so(wasm_dir: Path, tmp_path: Path) -> None:
    """hello.wasm (the Rust SDK) doubles 24 MB of floats under a 40 MiB limit: Rust prints "memory allocation of
    24000000 bytes failed" and aborts with `unreachable`, far from the limit, which the size heuristic misses."""
    import msgpack
    import numpy as np

    n = 6_000_000
    req = {"name": "x", "values": {"dtype": "float32", "shape": [n], "data": np.ones(n, np.float32).tobytes()}}
    path = tmp_path / "big.msgpack"
    path.write_bytes(msgpack.packb(req))
    proc = edgewasm("run", str(wasm_dir / "hello.wasm"), "--memory-limit", "40MiB", "--request", str(path))
    err = proc.stderr.decode().splitlines()
    assert proc.returncode == 4, err
    assert err[0] == "memory allocation of 24000000 bytes failed"  # what the guest said stays visible
    assert err[-1].startswith("edgewasm: error: ") and "ran out of memory" in err[-1]
    assert "could not allocate 24000000 bytes" in err[-1] and "--memory-limit" in err[-1]
