"""edgewasm.Runtime: what guests share (engines, epoch tickers, the module and WASI-NN graph caches) has an owner,
and closing it stops what it started."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import edgewasm
from edgewasm import _engine, _runtime
from edgewasm._engine import EngineSettings

TIMERS = Path("/proc/self/timers")  # glibc's SIGEV_THREAD timers of this process, one "ID:" line each
timers_visible = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not TIMERS.exists(), reason="needs Linux's /proc/self/timers"
)
TIMED = EngineSettings()  # what load(timeout=...) asks for with the default opt level


def _timers() -> int:
    return sum(line.startswith("ID:") for line in TIMERS.read_text().splitlines())


def _epoch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "edgewasm-epoch"]


def test_two_runtimes_share_no_cache(wasm_dir: Path) -> None:
    echo = wasm_dir / "echo.wat"
    with edgewasm.Runtime() as a, edgewasm.Runtime() as b:
        assert a.load(echo).origin == "compiled"
        assert a.load(echo).origin == "memory"
        assert b.load(echo).origin == "disk"  # not a's module: b compiled nothing, it read the artifact
        assert len(a.modules) == len(b.modules) == 1
        assert a.engines.engine_for(TIMED) is not b.engines.engine_for(TIMED)
        assert a.graphs is not b.graphs
        assert edgewasm.load(echo).origin == "disk"  # the default runtime is a third one


def test_close_stops_the_posix_timer(wasm_dir: Path) -> None:
    if not TIMERS.exists():
        pytest.skip("needs Linux's /proc/self/timers")
    before = _timers()
    runtime = edgewasm.Runtime()
    spin = runtime.load(wasm_dir / "spin.wat", timeout=0.05, cache=False)
    with pytest.raises(edgewasm.GuestTimeout):
        spin.infer({})
    assert runtime.engines.ticker_kind(TIMED) == "posix-timer"
    assert _timers() == before + 1
    runtime.close()
    assert _timers() == before
    assert runtime.engines.ticker_kind(TIMED) is None
    runtime.close()  # idempotent


def test_close_ends_the_thread_ticker(wasm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_engine, "PREFER_THREAD_TICKER", True)
    before = set(_epoch_threads())
    with edgewasm.Runtime() as runtime:
        spin = runtime.load(wasm_dir / "spin.wat", timeout=0.05, cache=False)
        with pytest.raises(edgewasm.GuestTimeout):
            spin.infer({})
        assert runtime.engines.ticker_kind(TIMED) == "thread"
        mine = [t for t in _epoch_threads() if t not in before]
        assert len(mine) == 1
    mine[0].join(timeout=10)  # it wakes within one tick period and sees it was stopped
    assert not mine[0].is_alive()


@timers_visible
def test_a_runtime_dropped_without_close_stops_its_ticker(wasm_dir: Path) -> None:
    before = _timers()

    def use_and_drop() -> None:
        runtime = edgewasm.Runtime()
        spin = runtime.load(wasm_dir / "spin.wat", timeout=0.05, cache=False)
        with pytest.raises(edgewasm.GuestTimeout):
            spin.infer({})
        assert _timers() == before + 1

    use_and_drop()
    gc.collect()
    assert _timers() == before


def test_a_guest_keeps_its_runtime_and_ticker_alive(wasm_dir: Path) -> None:
    """Only the guest is kept: dropping the runtime object must not stop the ticker under it."""
    spin = edgewasm.Runtime().load(wasm_dir / "spin.wat", timeout=0.05, cache=False)
    gc.collect()
    with pytest.raises(edgewasm.GuestTimeout):
        spin.infer({})
    box: list[BaseException] = []
    worker = threading.Thread(target=_capture, args=(box, spin.infer, {}))  # an instance made after the collection
    worker.start()
    worker.join()
    assert len(box) == 1 and isinstance(box[0], edgewasm.GuestTimeout), box


def _capture(box: list[BaseException], fn: object, *args: object) -> None:
    try:
        fn(*args)  # type: ignore[operator]
    except BaseException as e:  # handed to the test's thread
        box.append(e)


def test_a_closed_runtime_refuses_load_in_one_line(wasm_dir: Path) -> None:
    runtime = edgewasm.Runtime()
    runtime.close()
    with pytest.raises(edgewasm.ModuleLoadError) as refused:
        runtime.load(wasm_dir / "echo.wat")
    line = refused.value.one_line()
    assert "edgewasm.Runtime is closed" in line and "make a new edgewasm.Runtime" in line
    assert "\n" not in line
    assert repr(runtime) == "<edgewasm.Runtime closed>"


def test_guests_of_a_closed_runtime_are_refused_on_every_thread(wasm_dir: Path) -> None:
    """Closing a runtime closes its guests: every later call, from any thread (each had its own instance), is
    refused with a clear line, not run without its timeout; guests of other runtimes are untouched."""
    other = edgewasm.load(wasm_dir / "echo.wat", timeout=1.0)
    runtime = edgewasm.Runtime()
    echo = runtime.load(wasm_dir / "echo.wat", timeout=1.0)
    cat = runtime.load(wasm_dir / "cat.wat", timeout=1.0)  # a WASI command
    assert cat.run(b"meow").stdout == b"meow"
    go, done = threading.Event(), threading.Event()
    seen: list[BaseException] = []

    def worker() -> None:
        assert echo.infer({"t": 1}) == {"t": 1}  # this thread's own instance
        done.set()
        go.wait()
        _capture(seen, echo.infer, {"t": 2})

    t = threading.Thread(target=worker)
    t.start()
    done.wait()
    runtime.close()
    go.set()
    t.join()
    assert len(seen) == 1 and isinstance(seen[0], edgewasm.ModuleLoadError)
    assert "guest is closed (its edgewasm.Runtime was closed)" in seen[0].one_line()
    with pytest.raises(edgewasm.ModuleLoadError, match=r"its edgewasm\.Runtime was closed"):
        echo.infer({})
    with pytest.raises(edgewasm.ModuleLoadError, match=r"its edgewasm\.Runtime was closed"):
        cat.run(b"meow")
    assert other.infer({"still": "here"}) == {"still": "here"}


def test_the_default_runtime_is_behind_load(wasm_dir: Path) -> None:
    guest = edgewasm.load(wasm_dir / "echo.wat")
    assert guest.runtime is _runtime.default_runtime()
    assert guest.runtime.load(wasm_dir / "echo.wat").origin == "memory"


def test_import_makes_no_runtime() -> None:
    """`import edgewasm` (and so `edgewasm run`'s start) makes no runtime, engine or thread, nor imports WASI-NN."""
    code = (
        "import sys, threading, edgewasm, edgewasm._runtime as r;"
        "assert r._default is None, r._default;"
        "assert 'edgewasm.nn' not in sys.modules;"
        "assert threading.active_count() == 1, threading.enumerate();"
        "g = edgewasm.load(sys.argv[1]);"
        "assert g.runtime is r._default and 'edgewasm.nn' not in sys.modules"
    )
    wasm = Path(__file__).resolve().parents[1] / "wasm" / "echo.wat"
    subprocess.run([sys.executable, "-c", code, str(wasm)], check=True, timeout=120)


_FORKED = """
import os, sys
import edgewasm
runtime = edgewasm.Runtime()
closed = edgewasm.Runtime()
g = runtime.load(sys.argv[1], timeout=0.1, cache=False)
c = closed.load(sys.argv[1], timeout=0.1, cache=False)
for guest in (g, c):
    try:
        guest.infer({})
    except edgewasm.GuestTimeout:
        pass
closed.close()
pid = os.fork()
if pid == 0:
    try:
        g.infer({})  # this runtime's ticker, started again in the child
    except edgewasm.GuestTimeout:
        os._exit(0 if closed.engines.ticker_kind(c._loaded.settings) is None else 5)
    os._exit(3)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_restarts_each_open_runtimes_ticker(wasm_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _FORKED, str(wasm_dir / "spin.wat")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["0"], proc.stdout


@timers_visible
def test_the_server_closes_its_runtime_on_shutdown(wasm_dir: Path) -> None:
    """The registry of `edgewasm serve` loads through a runtime of its own; stopping it stops the ticker its
    timed guests started (before, the process-wide ticker ran on after the server had stopped)."""
    from edgewasm.serve.config import ModelConfig
    from edgewasm.serve.metrics import Metrics
    from edgewasm.serve.registry import Registry

    before = _timers()
    options = edgewasm.GuestOptions(timeout=2.0, memory_limit="64MiB")
    config = ModelConfig(name="e", module=wasm_dir / "echo.wat", options=options, instances=1)
    registry = Registry([config.checked()], Metrics())

    async def serve_and_stop() -> None:
        await registry.start()
        pool = await registry.get("e")
        assert pool.guest.runtime is registry.runtime
        assert _timers() == before + 1
        await registry.stop(5.0)

    asyncio.run(serve_and_stop())
    assert _timers() == before
    assert registry.runtime.closed
    asyncio.run(registry.start())  # a registry started again gets a new runtime
    assert not registry.runtime.closed
    asyncio.run(registry.stop(5.0))
