"""Real `edgewasm serve` processes on 127.0.0.1 for the tests: start on a free port, wait for ready, stop by signal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "wasm"
CAT = ROOT / "examples" / "cat.jpg"
#: ImageNet's cats: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = range(281, 286)


class Server:
    """`python -m edgewasm [--cache-dir C] serve ARGS --port 0 --log-format json`, its log collected as it runs."""

    def __init__(self, args: Sequence[str], *, cache_dir: Path, env: dict[str, str] | None = None) -> None:
        self.args = [sys.executable, "-m", "edgewasm", "--cache-dir", str(cache_dir), "serve", *args]
        self.args += ["--host", "127.0.0.1", "--port", "0", "--log-format", "json"]
        self.env = {**os.environ, **(env or {})}
        self.lines: list[str] = []
        self.url = ""
        self._got_url = threading.Event()
        self.proc: subprocess.Popen[str] | None = None

    def start(self, *, wait_ready: bool = True, timeout: float = 120.0) -> Server:
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            if not self.url:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and "url" in entry:
                    self.url = entry["url"]
                    self._got_url.set()

    def wait_url(self, timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while not self._got_url.wait(0.05):
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"server did not start (rc={self.proc.poll()}):\n" + "\n".join(self.lines))
        return self.url

    def wait_ready(self, timeout: float = 120.0) -> None:
        self.wait_url(timeout)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited (rc={self.proc.returncode}):\n" + "\n".join(self.lines))
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("server never became ready:\n" + "\n".join(self.lines))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.lines += ["server did not stop; its threads:", *_stacks(self.proc.pid)]
                self.proc.kill()
                self.proc.wait()
        time.sleep(0.05)  # let the drain threads take the last lines
        return self.proc.returncode

    def wait_pending(self, model: str, at_least: int, tries: int) -> None:
        """Poll /metrics (at most `tries` times, 10 ms apart) until `model` holds `at_least` requests in flight."""
        for _ in range(tries):
            if metric(httpx.get(self.url + "/metrics").text, "edgewasm_pending_requests", model=model) >= at_least:
                return
            time.sleep(0.01)

    def log(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"msg": line, "level": "raw"}
            out.append(entry if isinstance(entry, dict) else {"msg": line, "level": "raw"})
        return out

    def wait_log(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> list[dict[str, Any]]:
        """The log entries that `match`, once there is one: the server's log arrives through a reader thread, so an
        entry written just after a response may not be here yet when the response is."""
        end = time.monotonic() + timeout
        while True:
            found = [e for e in self.log() if match(e)]
            if found or time.monotonic() > end:
                return found
            time.sleep(0.02)

    def tracebacks(self) -> list[str]:
        return [line for line in self.lines if "Traceback" in line]

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stacks(pid: int) -> list[str]:
    """Every thread's stack in a hung server (py-spy, when installed), so a failure says where it hung."""
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if spy is None:
        return ["(install py-spy to see them)"]
    out = subprocess.run([spy, "dump", "--native", "--pid", str(pid)], capture_output=True, text=True, timeout=60)
    return (out.stdout + out.stderr).splitlines()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0
