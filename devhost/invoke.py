"""Calling a function the way the Python worker does."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import Executor
from typing import Any

from devhost import worker_loop
from devhost.app_index import FunctionSpec


async def invoke(spec: FunctionSpec, kwargs: dict[str, Any], executor: Executor | None) -> Any:
    """Coroutine functions run on the worker loop, plain functions on a worker thread."""
    if spec.is_async:
        coroutine: Coroutine[Any, Any, Any] = spec.call(**kwargs)
        return await worker_loop.run_async(coroutine)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, lambda: spec.call(**kwargs))
