"""Async functions share one worker loop, whichever thread calls them, and a shutdown
cancels what is still running instead of leaving its callers waiting."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import CancelledError

import pytest

from devhost import worker_loop


async def which_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_calls_from_any_thread_or_loop_run_on_the_same_loop() -> None:
    seen: list[asyncio.AbstractEventLoop] = []
    threads = [
        threading.Thread(target=lambda: seen.append(worker_loop.run(which_loop())))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen.append(asyncio.run(worker_loop.run_async(which_loop())))
    assert len({id(loop) for loop in seen}) == 1


def test_shutdown_cancels_what_is_running_and_a_later_call_gets_a_new_loop() -> None:
    before = worker_loop.run(which_loop())
    stuck = worker_loop.submit(asyncio.sleep(60))
    worker_loop.shutdown(timeout=5)
    with pytest.raises(CancelledError):
        stuck.result(timeout=5)
    assert before.is_closed()
    after = worker_loop.run(which_loop())
    assert after is not before and after.is_running()
