"""The instance pool (serve/pool.py): a worker whose guest ran past its deadline is lowered in CPU priority."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import edgewasm
from edgewasm import GuestTimeout
from edgewasm.serve.pool import DEMOTED_NICE, InstancePool

WASM = Path(__file__).resolve().parent.parent / "wasm"

pytestmark = pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice values are Linux's")


def _nice(pool: InstancePool) -> list[int]:
    return [os.getpriority(os.PRIO_PROCESS, t.native_id or 0) for t in pool._threads]


def test_a_worker_whose_guest_spun_to_its_deadline_runs_at_a_lower_priority() -> None:
    runtime = edgewasm.Runtime()
    spin = InstancePool("spin", runtime.load(WASM / "spin.wat", timeout=0.2), 2, 4)
    echo = InstancePool("echo", runtime.load(WASM / "echo.wat", timeout=5), 1, 4)
    spin.start()
    echo.start()
    mine = os.getpriority(os.PRIO_PROCESS, 0)

    async def main() -> tuple[BaseException | None, object]:
        loop = asyncio.get_running_loop()
        failure = None
        try:
            await spin.submit(lambda g: g.infer({"x": 1}), loop.time() + 10)
        except GuestTimeout as e:
            failure = e
        answer = await echo.submit(lambda g: g.infer({"text": "hi"}), loop.time() + 10)
        return failure, answer

    try:
        assert _nice(spin) == [mine, mine]
        failure, answer = asyncio.run(main())
        assert isinstance(failure, GuestTimeout)
        assert answer == {"text": "hi"}
        # exactly the worker that ran the spin is lowered; the other, the echo model's and this thread are not
        assert sorted(_nice(spin)) == [mine, max(mine, DEMOTED_NICE)] and spin.demoted == 1
        assert _nice(echo) == [mine] and echo.demoted == 0
        assert os.getpriority(os.PRIO_PROCESS, 0) == mine
    finally:
        spin.stop(10)
        echo.stop(10)
        runtime.close()
