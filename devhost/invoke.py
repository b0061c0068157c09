"""Calling a function the way the Python worker does."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from concurrent.futures import Executor
from typing import Any

import azure.functions as func

from devhost import worker_loop
from devhost.app_index import FunctionSpec

CONTEXT_PARAM = "context"


class InvocationContext(func.Context):
    """What the worker hands a function that asks for ``context``: this invocation's id and
    the function's name (no trace or retry context: devhost has neither)."""

    def __init__(self, function_name: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return ""

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


def _with_context(spec: FunctionSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The worker passes ``context`` to a function with a parameter of that name."""
    if CONTEXT_PARAM in kwargs or CONTEXT_PARAM not in spec.parameter_names:
        return kwargs
    return {**kwargs, CONTEXT_PARAM: InvocationContext(spec.name)}


async def invoke(spec: FunctionSpec, kwargs: dict[str, Any], executor: Executor | None) -> Any:
    """Coroutine functions run on the worker loop, plain functions on a worker thread."""
    kwargs = _with_context(spec, kwargs)
    if spec.is_async:
        coroutine: Coroutine[Any, Any, Any] = spec.call(**kwargs)
        return await worker_loop.run_async(coroutine)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, lambda: spec.call(**kwargs))
