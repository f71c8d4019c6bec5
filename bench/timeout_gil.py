"""How well a timeout holds while another thread holds the GIL: the worst case of a Python host.

A guest spins (`wasm/spin.wat`) under `timeout=TIMEOUT` in one thread; the main thread then holds the GIL for HOLD
seconds in one native call (`ctypes.PyDLL` keeps the GIL across `usleep`). Two figures per run:

- *stopped*: when the guest stopped executing, seen from another process that samples the guest thread's CPU clock
  (`/proc/PID/task/TID/schedstat`) every millisecond: the end of the last millisecond in which it ran;
- *returned*: when the call came back to Python (it needs the GIL, so never before the holder lets go).

    python bench/timeout_gil.py [--ticker auto|thread] [--runs N] [--timeout S] [--hold S]

`--ticker thread` forces the portable Python-thread ticker, for comparison in the same session. Linux only (the
observer reads /proc). docs/cache.md quotes the figures.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import edgewasm
from edgewasm import _engine, _runtime

WASM = Path(__file__).resolve().parent.parent / "wasm"

#: The observer: prints, as JSON, the monotonic times at which the thread's CPU clock advanced (1 ms samples).
_OBSERVER = r"""
import json, sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
print("ready", flush=True)
samples, last, end = [], None, time.monotonic() + seconds
while time.monotonic() < end:
    try:
        with open(path) as f:
            ns = int(f.read().split()[0])
    except OSError:
        break
    now = time.monotonic()
    if last is not None and ns > last:
        samples.append((now, ns - last))
    last = ns
    time.sleep(0.001)
print(json.dumps(samples))
"""


def _stopped_at(samples: list[tuple[float, int]], start: float) -> float:
    """The end of the last sample interval in which the thread ran for more than half the interval: spinning.

    A thread that waits for the GIL wakes briefly every switch interval; those wake-ups are far below half."""
    spinning = [t for (t, ran), (prev, _) in zip(samples[1:], samples[:-1], strict=True) if ran > 0.5e9 * (t - prev)]
    return (spinning[-1] if spinning else start) - start


def once(timeout: float, hold: float) -> dict[str, float]:
    guest = edgewasm.load(WASM / "spin.wat", timeout=timeout, cache=False)
    started = threading.Event()
    out: dict[str, float] = {}

    def call() -> None:
        out["start"] = time.monotonic()
        started.set()
        try:
            guest.infer({})
        except edgewasm.GuestTimeout:
            out["returned"] = time.monotonic() - out["start"]

    worker = threading.Thread(target=call)
    worker.start()
    started.wait()
    assert worker.native_id is not None
    path = f"/proc/{os.getpid()}/task/{worker.native_id}/schedstat"
    observer = subprocess.Popen(
        [sys.executable, "-c", _OBSERVER, path, str(hold + 1.0)], stdout=subprocess.PIPE, text=True
    )
    assert observer.stdout is not None
    observer.stdout.readline()  # "ready"
    ctypes.PyDLL(None).usleep(int(hold * 1e6))  # the GIL stays held for all of it
    worker.join()
    samples = [tuple(s) for s in json.loads(observer.communicate()[0])]
    guest.close()
    return {"stopped": _stopped_at(samples, out["start"]), "returned": out["returned"]}  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticker", choices=["auto", "thread"], default="auto")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=0.2)
    parser.add_argument("--hold", type=float, default=1.5)
    args = parser.parse_args()
    if args.ticker == "thread":
        _engine.PREFER_THREAD_TICKER = True
    runs = [once(args.timeout, args.hold) for _ in range(args.runs)]
    kind = _runtime.default_runtime().engines.ticker_kind(_engine.EngineSettings())
    result: dict[str, Any] = {"ticker": kind, "timeout_s": args.timeout, "gil_held_s": args.hold}
    for field in ("stopped", "returned"):
        values = [r[field] for r in runs]
        result[f"{field}_s"] = {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
