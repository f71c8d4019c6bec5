"""Where a guest's stdout and stderr go: kept in host memory within a bound, streamed to this process, or both.

- `PipeCapture`: a named pipe given to WASI as an output file and drained by a reader thread: as fast as a file,
  but bounded, since bytes past the limit are read and dropped, never stored (a file would fill the disk or a
  tmpfs). `Guest.run` captures a command's stdout and stderr this way.
- `StderrSink`: a wasmtime custom-output callback that passes a guest's stderr through to this process's and
  keeps its tail, so the host can explain a trap (Rust prints "memory allocation of N bytes failed" before it
  aborts). wasmtime runs such a callback, and the finalizer of its stream, on its own threads, some time after
  the store is dropped; a Python process that finalizes meanwhile dies with a Rust panic. Only a process that ends
  with `os._exit` once its guests are done may use them: the CLI sets `callbacks_safe`.

A custom-output callback must also never fail: wasmtime aborts the process when one returns an error.
"""

from __future__ import annotations

import os
import select
import threading

#: How much of an infer guest's stderr the host keeps to explain a trap.
STDERR_TAIL = 8192
#: Whether this process may give wasmtime custom-output callbacks (see the module docstring); the CLI sets it.
callbacks_safe = False


class StderrSink:
    """A guest's stderr as a custom-output callback: written through to this process's fd 2 (if `passthrough`),
    its last `limit` bytes kept in memory."""

    def __init__(self, *, limit: int = STDERR_TAIL, passthrough: bool = True) -> None:
        self.limit = limit
        self.passthrough = passthrough
        self.data = bytearray()
        self._lock = threading.Lock()

    def __call__(self, chunk: bytes) -> None:
        try:
            if self.passthrough:
                _write_all(2, chunk)
            with self._lock:
                self.data += chunk
                if len(self.data) > self.limit:
                    del self.data[: len(self.data) - self.limit]
        except BaseException:  # a failing callback aborts the process (see the docstring)
            pass

    def text(self) -> str:
        with self._lock:
            return self.data.decode("utf-8", "replace")

    def value(self) -> bytes:
        with self._lock:
            return bytes(self.data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:  # stderr closed: the guest's text has nowhere to go, which is not the guest's failure
            return
        view = view[n:]


class PipeCapture:
    """A FIFO for one output stream of a command, read by a thread into at most `limit` bytes of memory.

    `path` goes to `WasiConfig.stdout_file` (or `stderr_file`); `finish()`, once the guest returned (its writes are
    complete by then), drains what is left and stops the reader; `close()` releases the descriptors.
    """

    def __init__(self, directory: str, name: str, limit: int) -> None:
        self.limit = limit
        self.path = os.path.join(directory, name)
        os.mkfifo(self.path, 0o600)
        # Opened non-blocking so the open does not wait for the writer; wasmtime opens the write end at set_wasi.
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._wake_r, self._wake_w = os.pipe()
        self._data = bytearray()
        self.dropped = 0
        self._thread = threading.Thread(target=self._read_loop, name=f"edgewasm-{name}", daemon=True)
        self._thread.start()

    def _take(self, chunk: bytes) -> None:
        room = max(self.limit - len(self._data), 0)
        self._data += chunk[:room]
        self.dropped += max(len(chunk) - room, 0)

    def _drain(self) -> bool:
        """Read what is in the pipe now; False at end of file."""
        while True:
            try:
                chunk = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                return True
            except InterruptedError:
                continue
            if not chunk:
                return False
            self._take(chunk)

    def _read_loop(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd, self._wake_r], [], [])
            if self._wake_r in ready:
                self._drain()
                return
            if not self._drain():
                return

    def finish(self) -> bytes:
        if self._thread.is_alive():
            os.write(self._wake_w, b"x")
            self._thread.join()
        return bytes(self._data)

    def close(self) -> None:
        self.finish()
        for fd in (self._fd, self._wake_r, self._wake_w):
            os.close(fd)
