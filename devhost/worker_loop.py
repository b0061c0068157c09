"""The one event loop async functions run on, as in the Python worker.

The worker runs every coroutine function on a single long-lived loop, and libraries rely on
that: the durable SDK keeps one module-level HTTP session, bound to the loop that opened
it. So devhost runs every async invocation (HTTP, Event Hub, activities) on one loop of its
own, on a daemon thread, whatever thread or loop the invocation comes from.
"""

from __future__ import annotations

import asyncio
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
