"""Small adaptations around the durable SDK's host handles."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import re
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any

_HISTORY_EVENT_MODULE = "azure.durable_functions.models.history.HistoryEvent"
_EXECUTOR_MODULE = "azure.durable_functions.models.TaskOrchestrationExecutor"
_OUT_OF_PROC_MARKER = "$OutOfProcData$:"


def memoize_history_timestamps(maxsize: int = 1 << 17) -> None:
    """Every replay parses every history timestamp again with ``dateutil``, which is most of
    the SDK's replay cost. The parse is a pure function of the string, so remembering its
    results changes no result and keeps replay cheap. Idempotent.

    A timestamp seen for the first time (every episode has one) is in the form devhost
    writes, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``dateutil`` takes about 50 µs for it, the
    standard library about 1 µs. So that form is read with ``datetime.fromisoformat`` and
    given the very zone ``dateutil`` gives it on this machine (``tzutc()``, or ``tzlocal()``
    where the local zone is UTC), whenever that zone is the same whatever the date; any
    other text goes to ``dateutil`` as before."""
    module = importlib.import_module(_HISTORY_EVENT_MODULE)
    current = getattr(module, "dt_parse")  # noqa: B009 - the module is untyped
    if getattr(current, "devhost_memoized", False):
        return
    zone = _utc_zone_of(current)

    @functools.lru_cache(maxsize=maxsize)
    def parse(text: str) -> datetime:
        if zone is not None and _DEVHOST_TS.fullmatch(text):
            with contextlib.suppress(ValueError):  # not a date (a 30 February): dateutil says
                return datetime.fromisoformat(text[:-1]).replace(tzinfo=zone)
        parsed: datetime = current(text)
        return parsed

    parse.devhost_memoized = True  # type: ignore[attr-defined]
    setattr(module, "dt_parse", parse)  # noqa: B010 - the module is untyped


def share_executor_tuple_types() -> None:
    """Every orchestrator episode builds a fresh ``TaskOrchestrationExecutor``, whose
    constructor defines a ``namedtuple`` class from scratch (``namedtuple`` compiles code for
    each new class): about a third of a small episode's time in the SDK. The class only
    holds two fields of a lookup table the executor never changes, so one class per name and
    fields serves every episode alike. Idempotent."""
    module = importlib.import_module(_EXECUTOR_MODULE)
    current = getattr(module, "namedtuple")  # noqa: B009 - the module is untyped
    if getattr(current, "devhost_shared", False):
        return
    cached = functools.lru_cache(maxsize=64)(current)

    def shared(typename: str, field_names: Any, **options: Any) -> Any:
        try:
            return cached(typename, field_names, **options)
        except TypeError:  # unhashable field names (a list): a class of its own
            return current(typename, field_names, **options)

    shared.devhost_shared = True  # type: ignore[attr-defined]
    setattr(module, "namedtuple", shared)  # noqa: B010 - the module is untyped


# What ``devhost.durable.history.format_ts`` writes: microseconds, always six digits, and Z.
_DEVHOST_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_ZONE_PROBES = ("2001-01-15T12:00:00.000000Z", "2001-07-15T12:00:00.000000Z")


def _utc_zone_of(parse: Callable[[str], datetime]) -> tzinfo | None:
    """The ``tzinfo`` that ``parse`` gives a ``...Z`` timestamp, if the same in winter and
    in summer (the local zone decides between ``tzutc()`` and ``tzlocal()``); else None."""
    try:
        probes = [parse(text) for text in _ZONE_PROBES]
    except Exception:
        return None
    shapes = {(type(p.tzinfo), p.utcoffset(), p.tzname(), p.fold) for p in probes}
    first = probes[0]
    if len(shapes) != 1 or first.utcoffset() != timedelta(0) or first.fold:
        return None
    if any(
        p.replace(tzinfo=None) != datetime.fromisoformat(t[:-1])
        for p, t in zip(probes, _ZONE_PROBES, strict=True)
    ):
        return None
    return first.tzinfo


def read_failure(error: BaseException) -> tuple[dict[str, Any] | None, str, str | None]:
    """What a failed orchestrator invocation left behind: the orchestrator state carried after
    ``$OutOfProcData$:`` (if any), the error message, and the user code's traceback."""
    cause = error.__cause__ or error
    details = "".join(traceback.format_exception(cause))
    message = str(error)
    marker = message.find(_OUT_OF_PROC_MARKER)
    if marker < 0:
        return None, f"{type(error).__name__}: {message}", details
    try:
        state = json.loads(message[marker + len(_OUT_OF_PROC_MARKER) :])
    except json.JSONDecodeError:
        return None, message[:marker].strip(), details
    if not isinstance(state, dict):
        return None, message[:marker].strip(), details
    reason = state.get("error") or message[:marker].strip() or type(cause).__name__
    return state, str(reason), details
