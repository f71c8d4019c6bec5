"""The inline lane: a model whose calls are short runs them on the event loop thread, skipping the worker hand-off.

Handing a request to a worker thread and back costs two thread wake-ups, far more than a small guest's whole call
(an echo is microseconds). So once a model's worker calls have all been short (`QUALIFY` in a row, each under
`FAST`), a request that finds none of the model's requests queued or running, and has a small body, runs on the
loop thread, on a second `Guest` of the same module and sandbox whose timeout is `BOUND`.

Why this never stalls the loop past a short bound:
- the guest's wasm is interrupted by its epoch deadline `BOUND` (honoured within about two ticks of the engine's
  ticker), so a spin, or an input that happens to be slow, blocks the loop once, for milliseconds;
- the request's own mapping work runs inline only for bodies up to `MAX_BODY`, and the answer it maps is what the
  guest could write within `BOUND`;
- a call that overruns (`BOUND`, or `SLOW` for the whole job) or ends the instance (a trap, memory, fuel)
  closes the lane until the workers have seen twice as many fast calls in a row as last time, so such stalls are
  rare as well as short (an overrun's request is run again on a worker, with the model's full timeout, which is
  safe because of the next point);
- only models without side effects outside their own instance run inline: no writable mount, no WASI-NN (its host
  functions run outside the epoch interrupt). An interrupted call's instance is discarded, so running its request
  again on a worker is indistinguishable from having sent it there first, save the milliseconds.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import AbiError, GuestError, GuestTimeout, GuestTrap, ModuleLoadError
from .._guest import Guest

if TYPE_CHECKING:
    from pathlib import Path

    from .._options import GuestOptions
    from .._runtime import Runtime

log = logging.getLogger("edgewasm.serve")

#: The inline guest's timeout, seconds: the longest its wasm may hold the event loop (within the ticker's ticks).
BOUND = 0.002
#: A worker call (the whole job: mapping, guest, answer) this short counts towards qualifying.
FAST = BOUND / 4
#: Consecutive fast worker calls before a model runs inline; each time the lane closes the number doubles.
QUALIFY = 16
#: Doublings at most; a strike also wears off after that many inline calls without one.
MAX_STRIKES = 10
#: A whole inline job longer than this (wall clock) closes the lane (its answer still counts).
SLOW = 5 * BOUND
#: Request bodies larger than this always go to a worker (their mapping runs there).
MAX_BODY = 16 * 1024
#: The request's deadline must leave at least this much time, so that a retry on a worker can still answer.
MIN_REMAINING = 0.1


class Overrun(Exception):
    """The inline call ran past `BOUND`: run the request on a worker instead."""


def eligible(guest: Guest, timeout: float | None) -> bool:
    """Whether a model may ever run inline: no side effects beyond its own instance, a deadline worth keeping."""
    if guest.nn is not None or guest.kind != "reactor":
        return False
    if any(m.writable for m in guest.sandbox.mounts):
        return False
    # With no timeout the model's engine has no epoch interrupt; the inline guest's would be another engine, compiled
    # or read from disk on the loop thread.
    return timeout is not None and timeout >= 10 * BOUND


class InlineLane:
    """One model's inline lane; every method runs on the event loop thread."""

    def __init__(self, name: str, load: Callable[[], Guest]) -> None:
        self.name = name
        self._load = load  # makes the inline guest: its instance is made on (and belongs to) the calling thread
        self.guest: Guest | None = None
        self.streak = 0  # consecutive fast worker calls since the lane last closed
        self.strikes = 0  # times the lane closed, less one per `needed` calls inline without one: the doublings
        self.good = 0  # inline calls since the last strike or decay
        self.closed = False  # for good: the pool is stopping
        self.calls = 0

    @property
    def needed(self) -> int:
        return QUALIFY << min(self.strikes, MAX_STRIKES)

    @property
    def open(self) -> bool:
        return not self.closed and self.streak >= self.needed

    def observe(self, seconds: float) -> None:
        """A worker call of `seconds` (the whole job) finished."""
        if self.streak < self.needed:
            self.streak = self.streak + 1 if seconds < FAST else 0

    def strike(self, why: str) -> None:
        """Send the model's calls to the workers until they have been fast for twice as long as last time."""
        self.streak = self.good = 0
        self.strikes += 1
        log.info(
            "%s: calls go to the workers until %d in a row are fast (%s)",
            self.name,
            self.needed,
            why,
            extra={"fields": {"model": self.name}},
        )

    def run(self, fn: Callable[[Guest], Any]) -> Any:
        """`fn(guest)` on the loop thread; raises Overrun for the caller to hand the request to a worker."""
        started = time.perf_counter()
        if self.guest is None:
            self.guest = self._load()
        self.calls += 1
        try:
            result = fn(self.guest)
        except GuestTimeout:
            self.strike(f"a call ran past the inline bound of {BOUND * 1e3:g} ms")
            raise Overrun() from None
        except GuestError:
            raise  # the guest answered: an error about the request, its instance goes on
        except (GuestTrap, AbiError, ModuleLoadError) as e:  # its instance is gone: the next would be made here
            self.strike(f"a call ended its instance: {type(e).__name__}")
            raise
        if time.perf_counter() - started > SLOW:  # or the OS preempted the loop thread: a wasted strike, no harm
            self.strike(f"a call took more than {SLOW * 1e3:g} ms")
        else:
            self.good += 1
            if self.good >= self.needed and self.strikes:
                self.good = 0
                self.strikes -= 1
        return result

    def close(self) -> None:
        self.closed = True
        if self.guest is not None:
            self.guest.close()


def load_inline(runtime: Runtime, module: Path, options: GuestOptions) -> Guest:
    """The model's module and sandbox, with the inline bound as its timeout."""
    return runtime.load(module, options=dataclasses.replace(options, timeout=BOUND))
