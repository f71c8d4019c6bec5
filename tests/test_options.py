"""`GuestOptions`: one parser for load()'s keywords, the guest flags of `run` and `serve`, and model.toml."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests._serve_support import Server

import edgewasm
from edgewasm import GuestOptions, Mount, SandboxError
from edgewasm._cache import DiskCache
from edgewasm._options import COMMAND_LINE_DEFAULTS, format_size, parse_duration, parse_size
from edgewasm.serve import config

WASM = Path(__file__).resolve().parent.parent / "wasm"


# -- the values, parsed once -------------------------------------------------------------------------------------------


def test_sizes() -> None:
    assert parse_size("256MiB") == 256 << 20 and parse_size("1GiB") == 1 << 30 and parse_size("2 pages") == 131072
    assert parse_size(4096) == 4096 and parse_size("1.5KiB") == 1536 and parse_size(None) is None
    for bad in ("lots", "-1MiB", "12 parsecs", "", 0, -5, True, 1.5):
        with pytest.raises(SandboxError):
            parse_size(bad)  # type: ignore[arg-type]
    for size in (1 << 30, 256 << 20, 4096, 1000):
        assert parse_size(format_size(size)) == size
    assert format_size(1 << 30) == "1GiB"


def test_durations() -> None:
    assert parse_duration("30") == 30.0 and parse_duration(2.5) == 2.5 and parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120.0 and parse_duration(".25s") == 0.25
    assert parse_duration("0") is None and parse_duration(0) is None  # text's "no limit"
    assert parse_duration("inf") is None and parse_duration("1e300") is None  # past any deadline: no limit
    for bad in ("abc", "-1", "nan", "5 fortnights", True, [1]):
        with pytest.raises(SandboxError):
            parse_duration(bad)  # type: ignore[arg-type]


def test_options_are_normalized_and_checked(tmp_path: Path) -> None:
    o = GuestOptions(timeout=2, memory_limit="64MiB", dirs={"/data": tmp_path}, env={"B": "2", "A": "1"})
    assert o.timeout == 2.0 and o.memory_limit == 64 << 20
    assert o.dirs == (Mount(tmp_path.resolve(), "/data"),) and o.env == (("A", "1"), ("B", "2"))
    assert GuestOptions(dirs=[f"{tmp_path}::/d:rw"]).dirs == (Mount(tmp_path.resolve(), "/d", True),)
    assert GuestOptions(env=["K=V=W"]).env == (("K", "V=W"),)
    assert GuestOptions(cache=str(tmp_path)).cache == tmp_path and GuestOptions(models="m").models == Path("m")
    assert GuestOptions() == GuestOptions(dirs=[], env={}) and hash(GuestOptions()) == hash(GuestOptions())
    bad: list[dict[str, object]] = [
        {"timeout": 0}, {"timeout": -1}, {"timeout": "soon"}, {"memory_limit": "lots"}, {"memory_limit": 0},
        {"fuel": 0}, {"fuel": -1}, {"fuel": True}, {"dirs": ["/no/such/dir::/d"]}, {"dirs": "/tmp"},
        {"env": {"A=B": "1"}}, {"env": ["NOEQUALS"]}, {"env": 5}, {"args": ["a\0b"]}, {"args": "one"},
        {"opt_level": "fast"}, {"stderr": "yes"}, {"max_output": "huge"}, {"cache": None}, {"models": 3},
        {"nn_preload": ["a:b:c"]}, {"nn_preload": "one-string"}, {"nn_limits": ["graphs=x"]}, {"nn_limits": 5},
    ]  # fmt: skip
    for kwargs in bad:
        with pytest.raises(SandboxError) as e:
            GuestOptions(**kwargs)  # type: ignore[arg-type]
        assert "\n" not in e.value.one_line(), kwargs
    with pytest.raises(SandboxError, match="fuel"):
        dataclasses.replace(GuestOptions(), fuel=-1)  # replace checks again


def test_an_empty_host_directory_is_refused_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--dir ::/data` and `dirs={"/data": ""}` preopened the current directory (Path("") is ".")."""
    monkeypatch.chdir(tmp_path)
    for dirs in (["::/data"], [":: /data:rw"], {"/data": ""}):
        with pytest.raises(SandboxError, match="no host directory"):
            GuestOptions(dirs=dirs)  # type: ignore[arg-type]


def test_the_cache_is_converted_in_one_place(tmp_path: Path) -> None:
    assert GuestOptions(cache=False).disk_cache() is None
    mine = DiskCache(tmp_path)
    assert GuestOptions(cache=mine).disk_cache() is mine
    there = GuestOptions(cache=tmp_path / "c").disk_cache()
    assert there is not None and there.dir == tmp_path / "c"
    default = GuestOptions().disk_cache()
    assert default is not None and default.dir == DiskCache().dir


def test_engine_settings_follow_the_limits() -> None:
    assert GuestOptions().engine_settings().epoch is False
    s = GuestOptions(timeout=1, fuel=10, opt_level="none").engine_settings()
    assert s.epoch and s.fuel and s.opt_level == "none"


def test_text_settings_mean_what_the_flags_and_model_toml_say(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    o = COMMAND_LINE_DEFAULTS.updated(
        {"timeout": "0", "memory_limit": "0", "fuel": 0, "dirs": ["data::/data"], "env": {"PORT": 8080},
         "models": "store", "nn_limits": {"graphs": 2, "model-bytes": "1GiB"}},
        relative_to=tmp_path,
    )  # fmt: skip
    assert o.timeout is None and o.memory_limit is None and o.fuel is None
    assert o.dirs == (Mount(tmp_path / "data", "/data"),) and o.env == (("PORT", "8080"),)
    assert o.models == tmp_path / "store"
    assert o.nn_limits is not None and o.nn_limits.graphs == 2 and o.nn_limits.model_bytes == 1 << 30
    assert COMMAND_LINE_DEFAULTS.updated({}) == COMMAND_LINE_DEFAULTS
    assert COMMAND_LINE_DEFAULTS.timeout == 30.0 and COMMAND_LINE_DEFAULTS.memory_limit == 1 << 30
    with pytest.raises(SandboxError, match="unknown setting stderr"):
        COMMAND_LINE_DEFAULTS.updated({"stderr": True})
    for bad in ({"fuel": "many"}, {"fuel": -1}, {"dirs": "data"}, {"timeout": True}, {"allow_precompiled": "yes"}):
        with pytest.raises(SandboxError):
            COMMAND_LINE_DEFAULTS.updated(bad)


# -- load() ------------------------------------------------------------------------------------------------------------


def test_load_takes_exactly_the_options_keywords() -> None:
    """load()'s keywords are GuestOptions' (names and defaults): one cannot gain a setting the other lacks."""
    loads = dict(inspect.signature(edgewasm.load).parameters)
    del loads["module"], loads["options"]
    options = inspect.signature(GuestOptions).parameters
    assert list(loads) == list(options) == [f.name for f in dataclasses.fields(GuestOptions)]
    assert {k: p.default for k, p in loads.items()} == {k: p.default for k, p in options.items()}


def test_load_with_an_options_object(tmp_path: Path) -> None:
    options = GuestOptions(timeout=3, memory_limit="64MiB", env={"A": "1"}, dirs={"/data": tmp_path})
    with edgewasm.load(WASM / "echo.wat", options=options) as guest:
        assert guest.infer({"x": 1}) == {"x": 1}
        assert guest.sandbox.timeout == 3.0 and guest.sandbox.memory_limit == 64 << 20
        assert guest.sandbox.env == (("A", "1"),) and guest.sandbox.mounts == options.dirs
    with pytest.raises(SandboxError, match="both options= and keywords"):
        edgewasm.load(WASM / "echo.wat", options=options, timeout=1)


# -- model.toml --------------------------------------------------------------------------------------------------------


def test_model_toml_reads_the_guest_settings_as_the_flags_do(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "echo.wat").write_bytes((WASM / "echo.wat").read_bytes())
    (folder / "model.toml").write_text('fuel = 0\nmemory_limit = 0\ntimeout = "500ms"\nnn_limits = { graphs = 2 }\n')
    base = config.ModelConfig(name="b", module=Path(), options=GuestOptions(fuel=10, memory_limit="1MiB"))
    c = config.model_from_folder(folder, base)
    assert c.options.fuel is None and c.options.memory_limit is None and c.timeout == 0.5
    assert c.options.nn_limits is not None and c.options.nn_limits.graphs == 2
    for text, words in [
        ("env = 5\n", "env must be"),
        ('dirs = ["nowhere::/d"]\n', "cannot preopen"),
        ('memory_limit = "lots"\n', "cannot read memory limit"),
        ("fuel = -1\n", "fuel must be"),
        ('nn_preload = ["a:b:c"]\n', "bad --nn-preload"),
        ("cache = false\n", "unknown setting cache"),
    ]:
        (folder / "model.toml").write_text(text)
        with pytest.raises(config.ConfigError, match=words) as e:
            config.model_from_folder(folder, base)
        assert str(folder / "model.toml") in e.value.one_line() and "\n" not in e.value.one_line()


# -- the command line: run and serve share one table ------------------------------------------------------------------


def _guest_params(command: object) -> dict[str, tuple[object, ...]]:
    from edgewasm._cli import _GUEST_FLAGS

    flags = {flag for flag, _, _ in _GUEST_FLAGS}
    params = getattr(command, "params")  # noqa: B009 - a click.Command
    return {
        p.opts[0]: (p.name, p.metavar, repr(p.type), p.multiple, p.is_flag, p.default, p.help)
        for p in params
        if p.opts[0] in flags
    }


def test_run_and_serve_declare_the_same_guest_flags() -> None:
    from edgewasm._cli import _GUEST_FLAGS, run
    from edgewasm.serve._cli import serve

    ran, served = _guest_params(run), _guest_params(serve)
    assert list(ran) == list(served) == [flag for flag, _, _ in _GUEST_FLAGS]
    for flag in ran:
        if flag != "--timeout":  # only its help differs: serve's timeout counts the queue time too
            assert ran[flag] == served[flag], flag
    assert ran["--timeout"][:-1] == served["--timeout"][:-1]


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgewasm", "--cache-dir", str(cache), *args],
        input="[1]", capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "flags",
    [
        ["--fuel", "-1"],
        ["--memory-limit", "lots"],
        ["--memory-limit", "-5MiB"],
        ["--timeout", "soon"],
        ["--timeout", "nan"],
        ["--dir", "/no/such/dir::/data"],
        ["--dir", "::/data"],
        ["--env", "NOEQUALS"],
        ["--env", "=value"],
        ["--nn-preload", "a:b:c"],
        ["--nn-limit", "graphs=many"],
    ],
)
def test_run_and_serve_refuse_the_same_values_with_the_same_line(flags: list[str], tmp_path: Path) -> None:
    echo = str(WASM / "echo.wat")
    ran = _cli("run", echo, *flags, cache=tmp_path)
    served = _cli("serve", "--port", "0", echo, *flags, cache=tmp_path)
    assert ran.returncode == served.returncode == 2, (ran.stderr, served.stderr)
    run_line, serve_line = ran.stderr.strip().splitlines(), served.stderr.strip().splitlines()
    assert len(run_line) == len(serve_line) == 1 and "Traceback" not in ran.stderr + served.stderr
    # The same words after the command's name (click's usage errors name the command in their hint).
    assert run_line[0].replace("edgewasm run", "edgewasm X") == serve_line[0].replace("edgewasm serve", "edgewasm X")


def test_serve_accepts_what_run_accepts(tmp_path: Path) -> None:
    """`--fuel 0` (no budget) and the other "no limit" spellings: serve refused `--fuel 0` before (min=1)."""
    (tmp_path / "data").mkdir()
    flags = ["--fuel", "0", "--timeout", "500ms", "--memory-limit", "0", "--env", "A=1",
             "--dir", f"{tmp_path / 'data'}::/data", "--nn-limit", "graphs=2"]  # fmt: skip
    ran = _cli("run", str(WASM / "echo.wat"), *flags, cache=tmp_path / "c")
    assert ran.returncode == 0 and ran.stdout.strip() == "[1]", ran.stderr
    with Server([f"e={WASM / 'echo.wat'}", *flags], cache_dir=tmp_path / "c") as srv:
        reply = httpx.post(f"{srv.url}/models/e/call", json={"x": 1}, timeout=30)
        assert reply.status_code == 200 and reply.json() == {"x": 1}, reply.text
