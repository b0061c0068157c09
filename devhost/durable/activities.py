"""Running activity functions the way the Functions Python worker does.

The input arrives as the JSON text the orchestrator's ``call_activity`` produced and goes
through ``azure.functions``' own ``ActivityTriggerConverter`` (so a parameter receives
whatever that JSON decodes to, whatever its annotation); the return value is encoded by the
same converter. A raised exception becomes a TaskFailed whose reason reads like the
extension's: ``Activity function 'name' failed: ValueError: message``.

Activities run on a bounded thread pool; the ones named as CPU-bound run on a process pool
whose workers import the app themselves.
"""

from __future__ import annotations

import importlib
import inspect
import json
import traceback
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from azure.functions.durable_functions import ActivityTriggerConverter
from azure.functions.meta import Datum

from devhost import affinity, worker_loop
from devhost.measure import INVOCATIONS


@dataclass(frozen=True)
class ActivityFunction:
    name: str
    call: Callable[..., Any]
    input_param: str
    client_param: str | None = None


@dataclass(frozen=True)
class ActivityOutcome:
    ok: bool
    result_json: str | None = None
    reason: str | None = None
    details: str | None = None


def failure(name: str, error: BaseException) -> ActivityOutcome:
    message = f"{type(error).__name__}: {error}"
    details = {
        "$type": "System.Exception, System.Private.CoreLib",
        "ClassName": "System.Exception",
        "Message": message,
        "StackTraceString": "".join(traceback.format_exception(error)),
    }
    return ActivityOutcome(
        ok=False,
        reason=f"Activity function '{name}' failed: {message}",
        details=json.dumps(details),
    )


def _await(awaitable: Any) -> Any:
    """Coroutine activities run on the worker loop, like every async function."""
    return worker_loop.run(awaitable)


def invoke(
    function: ActivityFunction, input_json: str | None, client_payload: str | None = None
) -> ActivityOutcome:
    try:
        value = (
            None
            if input_json is None
            else ActivityTriggerConverter.decode(Datum(input_json, "json"), trigger_metadata=None)
        )
        kwargs: dict[str, Any] = {function.input_param: value}
        if function.client_param is not None:
            kwargs[function.client_param] = client_payload
        result = function.call(**kwargs)
        if inspect.isawaitable(result):
            result = _await(result)
        encoded = ActivityTriggerConverter.encode(result, expected_type=None)
        return ActivityOutcome(ok=True, result_json=str(encoded.value))
    except Exception as error:
        return failure(function.name, error)


# -- process pool workers ---------------------------------------------------------------------

_worker_functions: dict[str, ActivityFunction] = {}


def _init_worker(app_import: str, cores: frozenset[int] | None) -> None:
    from devhost.durable.catalog import FunctionCatalog, load_app

    # A worker of a host kept on one core starts on that core: CPU-bound work wants all.
    affinity.restore(cores)
    catalog = FunctionCatalog.from_app(load_app(app_import))
    _worker_functions.update(catalog.activities)


Measured = list[tuple[str, str, int, float]]


def _invoke_in_worker(name: str, input_json: str | None) -> tuple[ActivityOutcome, Measured]:
    """The outcome, and the invocation as the worker measured it: the host process counts
    it with its own (a worker's counts would otherwise never be written)."""
    function = _worker_functions.get(name.lower())
    if function is None:
        missing = f"Activity function '{name}' failed: not found in worker"
        return ActivityOutcome(ok=False, reason=missing), INVOCATIONS.take()
    outcome = invoke(function, input_json)
    return outcome, INVOCATIONS.take()


def import_object(reference: str) -> Any:
    """``package.module:attribute`` -> the attribute."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute or "app")


Done = Callable[[ActivityOutcome], None]


class ActivityRunner:
    """Thread pool for most activities, process pool for the CPU-bound ones."""

    def __init__(
        self,
        functions: Mapping[str, ActivityFunction],
        *,
        threads: int,
        cpu_bound: Collection[str] = (),
        processes: int = 2,
        app_import: str | None = None,
        client_payload: Callable[[], str] | None = None,
    ) -> None:
        self._functions = functions
        self._client_payload = client_payload
        # No threads: activities run inline when dispatched, which makes the grouping of
        # completions into episodes deterministic (tests that assert histories want that).
        self._threads = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activity")
            if threads > 0
            else None
        )
        self._cpu_bound = {name.lower() for name in cpu_bound}
        self._processes: Executor | None = None
        if self._cpu_bound:
            if app_import is None:
                raise ValueError("CPU-bound activities need app_import ('module:attribute')")
            self._processes = ProcessPoolExecutor(
                max_workers=max(1, processes),
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(app_import, affinity.unpinned()),
            )

    def submit(self, name: str, input_json: str | None, done: Done) -> None:
        key = name.lower()
        function = self._functions.get(key)
        if function is None:
            done(failure(name, LookupError(f"no activity function named {name!r}")))
            return
        if self._processes is not None and key in self._cpu_bound:
            future: Future[tuple[ActivityOutcome, Measured]] = self._processes.submit(
                _invoke_in_worker, name, input_json
            )

            def relay(finished: Future[tuple[ActivityOutcome, Measured]]) -> None:
                try:
                    outcome, measured = finished.result()
                except Exception as error:
                    done(failure(name, error))
                    return
                INVOCATIONS.merge(measured)
                done(outcome)

            future.add_done_callback(relay)
            return
        payload = None
        if function.client_param is not None and self._client_payload is not None:
            payload = self._client_payload()
        if self._threads is None:
            done(invoke(function, input_json, payload))
        else:
            self._threads.submit(lambda: done(invoke(function, input_json, payload)))

    def shutdown(self, wait: bool = True) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=wait, cancel_futures=not wait)
        if self._processes is not None:
            self._processes.shutdown(wait=wait, cancel_futures=not wait)
