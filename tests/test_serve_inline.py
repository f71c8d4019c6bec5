"""The inline lane (serve/inline.py): short calls skip the worker hand-off; an overrun goes back to a worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import edgewasm
from edgewasm import GuestTimeout
from edgewasm.serve import inline
from edgewasm.serve.inline import InlineLane, Overrun, eligible, load_inline
from edgewasm.serve.pool import InstancePool

WASM = Path(__file__).resolve().parent.parent / "wasm"


def _pool(module: str, timeout: float, **kwargs: object) -> InstancePool:
    options = edgewasm.GuestOptions(timeout=timeout, **kwargs)  # type: ignore[arg-type]
    runtime = edgewasm.Runtime()
    guest = runtime.load(WASM / module, options=options)
    lane = InlineLane(module, lambda: load_inline(runtime, WASM / module, options))
    pool = InstancePool(module, guest, 1, 4, inline=lane)
    pool.start()
    return pool


def test_fast_calls_go_inline_after_they_qualify() -> None:
    pool = _pool("echo.wat", 30.0)
    lane = pool.inline
    assert lane is not None

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        answers = []
        for _ in range(4 * inline.QUALIFY + 20):
            answers.append(await pool.submit(lambda g: g.infer({"text": "hi"}), loop.time() + 30, 10))
        return answers

    try:
        answers = asyncio.run(main())
    finally:
        pool.stop(10)
    assert all(a == {"text": "hi"} for a in answers)
    assert 0 < lane.calls <= 3 * inline.QUALIFY + 20  # the first QUALIFY at least ran on the worker


def test_an_overrun_inline_runs_again_on_a_worker_with_the_full_timeout() -> None:
    # The spin guest never qualifies by itself (its worker calls are slow): open its lane by hand to see what an
    # input that happens to be slow does to an open lane.
    pool = _pool("spin.wat", 0.3)
    lane = pool.inline
    assert lane is not None
    lane.streak = lane.needed
    worker_calls = []

    def job(guest: edgewasm.Guest) -> object:
        worker_calls.append(guest is pool.guest)
        return guest.infer({"x": 1})

    async def main() -> object:
        return await pool.submit(job, asyncio.get_running_loop().time() + 30, 10)

    try:
        with pytest.raises(GuestTimeout, match=r"timeout of 0\.3 s"):  # the worker's guest, not the inline bound
            asyncio.run(main())
    finally:
        pool.stop(10)
    assert worker_calls == [False, True]  # inline first, then once on the worker
    assert lane.strikes == 1 and not lane.open and lane.needed == 2 * inline.QUALIFY


def test_the_lane_itself_raises_overrun_and_closes() -> None:
    lane = InlineLane("spin", lambda: load_inline(edgewasm.Runtime(), WASM / "spin.wat", edgewasm.GuestOptions()))
    lane.streak = lane.needed
    with pytest.raises(Overrun):
        lane.run(lambda g: g.infer({}))
    assert not lane.open
    lane.close()


def test_only_models_without_outside_effects_may_run_inline(tmp_path: Path) -> None:
    echo = edgewasm.load(WASM / "echo.wat", timeout=30)
    assert eligible(echo, 30.0)
    assert not eligible(echo, None)  # no timeout: its engine has no epoch interrupt
    rw = edgewasm.load(WASM / "echo.wat", timeout=30, dirs=[f"{tmp_path}::/data:rw"])
    ro = edgewasm.load(WASM / "echo.wat", timeout=30, dirs=[f"{tmp_path}::/data"])
    assert not eligible(rw, 30.0)
    assert eligible(ro, 30.0)
    for g in (echo, rw, ro):
        g.close()
