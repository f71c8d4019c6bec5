"""Timeouts that hold: a ticker that needs no GIL, one per engine and stoppable, surviving fork(), and timeout values
that all mean something (a clear SandboxError, or no limit)."""

from __future__ import annotations

import ctypes
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import edgewasm
from edgewasm import _engine, _ticker, _wasmtime
from edgewasm._engine import EngineSettings

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX timers and /proc are Linux's here")
#: The POSIX-timer ticker calls wasmtime's C function, which the public-API fallback has no address of.
gil_free = pytest.mark.skipif(not _wasmtime.GIL_FREE_TICKER, reason="wasmtime-py's public API: a Python-thread ticker")


def _cpu_ns(native_id: int) -> int:
    """The thread's time on a CPU so far, in nanoseconds: the scheduler's exact sum, not two rounded tick counts."""
    with open(f"/proc/self/task/{native_id}/schedstat") as f:
        return int(f.read().split()[0])


@linux
@gil_free
def test_a_guest_stops_at_its_timeout_while_another_thread_holds_the_gil(wasm_dir: Path) -> None:
    """The Python-thread ticker cannot tick while the GIL is held, so the guest would spin for as long as it is.

    Once the guest thread is spinning in wasm (its CPU clock runs), the main thread holds the GIL in one native call
    (PyDLL keeps it across usleep) for four times the timeout, then, still holding it, reads the guest thread's CPU
    clock twice, half a second apart: stopped at its timeout, the thread waits for the GIL and its clock stands
    still; still spinning, it runs, however loaded the machine. No wall-clock bound is asserted. The thread's own
    work after the trap (wasmtime unwinding it, a few ms of CPU that a loaded machine may delay into the window) is
    not spinning: the bound is a twentieth of the window, and a spinning guest takes all of it (a quarter with two
    other busy threads per core)."""
    spin = edgewasm.load(wasm_dir / "spin.wat", timeout=0.5, cache=False)
    libc = ctypes.PyDLL(None)
    done = threading.Event()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            spin.infer({})
        except BaseException as e:
            outcome.append(e)
        done.wait()  # stay alive, so that its CPU clock can be read

    worker = threading.Thread(target=call)
    worker.start()
    try:
        assert worker.native_id is not None
        while _cpu_ns(worker.native_id) < 50_000_000 and worker.is_alive():  # it is in wasm, spinning
            time.sleep(0.001)
        libc.usleep(2_000_000)
        before = _cpu_ns(worker.native_id)
        libc.usleep(500_000)
        after = _cpu_ns(worker.native_id)
    finally:
        done.set()
    worker.join()
    assert outcome and isinstance(outcome[0], edgewasm.GuestTimeout), outcome
    spun_ms = (after - before) / 1e6
    assert spun_ms < 25, f"the guest ran {spun_ms:.1f} ms of the 500 ms in which the GIL was held past its timeout"


@linux
@gil_free
def test_the_ticker_is_a_posix_timer_and_stops(wasm_dir: Path) -> None:
    settings = EngineSettings(opt_level="none")  # an engine of its own
    guest = edgewasm.load(wasm_dir / "spin.wat", timeout=0.05, opt_level="none", cache=False)
    engines = guest.runtime.engines
    assert engines.ticker_kind(settings) == "posix-timer"
    timers = Path("/proc/self/timers")  # glibc's SIGEV_THREAD timers show as signals to its helper thread

    def count() -> int:
        return sum(line.startswith("ID:") for line in timers.read_text().splitlines()) if timers.exists() else 0

    before = count()
    engines.stop_ticker(settings)
    assert engines.ticker_kind(settings) is None
    if timers.exists():
        assert count() == before - 1
    guest.close()
    again = edgewasm.load(wasm_dir / "spin.wat", timeout=0.05, opt_level="none", cache=False)
    with pytest.raises(edgewasm.GuestTimeout):  # a new instance starts a new ticker
        again.infer({})
    assert engines.ticker_kind(settings) == "posix-timer"


def test_the_python_thread_ticker_still_works(wasm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = EngineSettings(opt_level="speed_and_size")
    monkeypatch.setattr(_engine, "PREFER_THREAD_TICKER", True)
    spin = edgewasm.load(wasm_dir / "spin.wat", timeout=0.05, opt_level="speed_and_size", cache=False)
    with pytest.raises(edgewasm.GuestTimeout):
        spin.infer({})
    assert spin.runtime.engines.ticker_kind(settings) == "thread"


@linux
@gil_free
def test_a_timer_outlives_no_engine() -> None:
    """The timer holds its own engine reference: the Python Engine may be freed while it ticks."""
    import gc

    import wasmtime

    cfg = wasmtime.Config()
    cfg.epoch_interruption = True
    engine = wasmtime.Engine(cfg)
    ticker = _ticker.PosixTimerTicker(engine, 0.001)
    del engine
    gc.collect()
    threading.Event().wait(0.05)  # ~50 expiries into an engine only the timer holds
    ticker.stop()
    ticker.stop()  # idempotent


_FORKED = """
import os, sys
import edgewasm
g = edgewasm.load(sys.argv[1], timeout=0.1, cache=False)
codes = []
for _ in range(int(sys.argv[2])):  # many forks: a deadlock inherited from the timer's helper thread shows
    try:
        g.infer({})
    except edgewasm.GuestTimeout:
        pass
    pid = os.fork()
    if pid == 0:
        try:
            g.infer({})  # an instance made in the parent, a ticker the child must have started again
        except edgewasm.GuestTimeout:
            os._exit(0 if g.runtime.engines.ticker_kind(g._loaded.settings) else 4)
        os._exit(3)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(sorted(set(codes)))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork()")
def test_timeouts_still_fire_in_a_forked_child(wasm_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _FORKED, str(wasm_dir / "spin.wat"), "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "[0]", (proc.stdout, proc.stderr)


@pytest.mark.parametrize("timeout", [math.inf, 1e300, _engine.MAX_TIMEOUT])
def test_an_infinite_or_huge_timeout_means_no_limit(wasm_dir: Path, timeout: float) -> None:
    guest = edgewasm.load(wasm_dir / "echo.wat", timeout=timeout)
    assert guest.sandbox.timeout is None and guest.infer([1]) == [1]


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -math.inf, math.nan, "5", True])
def test_a_meaningless_timeout_is_a_sandbox_error(wasm_dir: Path, timeout: object) -> None:
    with pytest.raises(edgewasm.SandboxError, match="timeout must be") as refused:
        edgewasm.load(wasm_dir / "echo.wat", timeout=timeout)  # type: ignore[arg-type]
    assert "None" in refused.value.one_line()


def test_numpy_seconds_are_seconds(wasm_dir: Path) -> None:
    import numpy as np

    assert edgewasm.load(wasm_dir / "echo.wat", timeout=np.int64(2)).sandbox.timeout == 2.0  # type: ignore[arg-type]


def test_deadlines_never_overflow() -> None:
    assert _engine.deadline_ticks(1e300) == _engine.NO_DEADLINE_TICKS
    assert _engine.deadline_ticks(math.inf) == _engine.NO_DEADLINE_TICKS
    assert _engine.deadline_ticks(0.2) == 41


@pytest.mark.parametrize(("value", "code"), [("inf", 0), ("1e300", 0), ("nan", 2), ("-1", 2)])
def test_timeout_values_on_the_command_line(wasm_dir: Path, value: str, code: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgewasm", "run", str(wasm_dir / "echo.wat"), "--timeout", value],
        input=b"[1]",
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == code, proc.stderr
    if code:
        lines = proc.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgewasm: error: timeout must be"), lines
