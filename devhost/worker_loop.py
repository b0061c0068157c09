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


def worker_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="devhost-async", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def submit(coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
    """Schedule ``coroutine`` on the worker loop."""
    return asyncio.run_coroutine_threadsafe(coroutine, worker_loop())


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` on the worker loop and wait for it (from a plain thread)."""
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


def shutdown() -> None:
    """Close what async functions left open on the worker loop, then stop it."""
    global _loop
    with _lock:
        loop, _loop = _loop, None
    if loop is None or loop.is_closed():
        return
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(_close_sdk_session(), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
