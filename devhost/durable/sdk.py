"""Small adaptations around the durable SDK's host handles."""

from __future__ import annotations

import functools
import importlib
import json
import traceback
from datetime import datetime
from typing import Any

_HISTORY_EVENT_MODULE = "azure.durable_functions.models.history.HistoryEvent"
_OUT_OF_PROC_MARKER = "$OutOfProcData$:"


def memoize_history_timestamps(maxsize: int = 1 << 17) -> None:
    """Every replay parses every history timestamp again with ``dateutil``, which is most of
    the SDK's replay cost. The parse is a pure function of the string, so remembering its
    results changes no result and keeps replay cheap. Idempotent."""
    module = importlib.import_module(_HISTORY_EVENT_MODULE)
    current = getattr(module, "dt_parse")  # noqa: B009 - the module is untyped
    if getattr(current, "devhost_memoized", False):
        return

    @functools.lru_cache(maxsize=maxsize)
    def parse(text: str) -> datetime:
        parsed: datetime = current(text)
        return parsed

    parse.devhost_memoized = True  # type: ignore[attr-defined]
    setattr(module, "dt_parse", parse)  # noqa: B010 - the module is untyped


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
