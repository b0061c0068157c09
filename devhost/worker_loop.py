"""The one event loop async functions run on, as in the Python worker.

The worker runs every coroutine function on a single long-lived loop, and libraries rely on
that: the durable SDK keeps one module-level HTTP session, bound to the loop that opened
it. So devhost runs every async invocation (HTTP, Event Hub, activities) on one loop of its
own, on a daemon thread, whatever thread or loop the invocation comes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def worker_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="devhost-async", daemon=True)
            thread.start()
            _loop, _thread = loop, thread
        return _loop


def submit(coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
    """Schedule ``coroutine`` on the worker loop."""
    return asyncio.run_coroutine_threadsafe(coroutine, worker_loop())


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` on the worker loop and wait for it (from a plain thread). Raises
    ``CancelledError`` if the loop is shut down first."""
    return submit(coroutine).result()


async def run_async(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coroutine`` running on the worker loop (from any other loop)."""
    return await asyncio.wrap_future(submit(coroutine))


async def _close_sdk_session() -> None:
    # The durable SDK opens its session lazily and never closes it; the Python worker's
    # process simply exits. Closing it here keeps a clean shutdown free of aiohttp warnings.
    from azure.durable_functions.models.utils import http_utils

    close = getattr(http_utils, "_close_session", None)
    if close is not None:
        await close()


async def _wind_down() -> None:
    """Cancel what is still running (its callers get ``CancelledError`` instead of waiting
    for ever), then close the SDK's session."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await _close_sdk_session()


def shutdown(timeout: float = 5.0) -> None:
    """Wind the worker loop down and close it. A later submit starts a fresh loop."""
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop = _thread = None
    if loop is None or loop.is_closed():
        return
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(_wind_down(), loop).result(timeout=timeout)
    loop.call_soon_threadsafe(loop.stop)
    if thread is not None:
        thread.join(timeout=timeout)
    if not loop.is_running():
        loop.close()
