"""What a run cost in function executions: each function's invocations and their summed
duration, as the Functions host would bill them (an orchestrator or entity episode is one
execution, like an activity or a trigger). Written at the end of a run in the format
``python -m activities.cost_cli --measured`` prices."""

from __future__ import annotations

import functools
import inspect
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The host's trigger names, as the cost model takes them.
TRIGGERS = {
    "eventHubTrigger": "eventHub",
    "orchestrationTrigger": "orchestration",
    "activityTrigger": "activity",
    "entityTrigger": "entity",
    "timerTrigger": "timer",
    "httpTrigger": "http",
}
TRADING_DAY_S = 6.5 * 3600


@dataclass
class _Tally:
    trigger: str
    count: int = 0
    total_ms: float = 0.0


class Invocations:
    def __init__(self) -> None:
        self._tallies: dict[str, _Tally] = {}
        self._lock = threading.Lock()

    def add(self, name: str, trigger: str, duration_ms: float) -> None:
        with self._lock:
            tally = self._tallies.setdefault(name, _Tally(TRIGGERS.get(trigger, trigger)))
            tally.count += 1
            tally.total_ms += duration_ms

    def take(self) -> list[tuple[str, str, int, float]]:
        """What was counted since the last ``take`` (name, trigger, count, total ms), for a
        worker process to hand to the host process; the tallies start again from zero."""
        with self._lock:
            taken = [(n, t.trigger, t.count, t.total_ms) for n, t in self._tallies.items()]
            self._tallies.clear()
        return taken

    def merge(self, taken: list[tuple[str, str, int, float]]) -> None:
        """Add what another process's ``take`` returned."""
        with self._lock:
            for name, trigger, count, total_ms in taken:
                tally = self._tallies.setdefault(name, _Tally(trigger))
                tally.count += count
                tally.total_ms += total_ms

    def measured(self, name: str, trigger: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function``, counting its invocations and their time (awaited, for a coroutine)."""
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    self.add(name, trigger, (time.perf_counter() - started) * 1000)

            return timed_async

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name, trigger, (time.perf_counter() - started) * 1000)

        return timed

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                name: {
                    "trigger": tally.trigger,
                    "count": tally.count,
                    "total_duration_ms": round(tally.total_ms, 3),
                    "memory_mb": 2048,
                }
                for name, tally in sorted(self._tallies.items())
            }

    def write(
        self, path: Path, *, period_days: float, ticks: int | None, trades: int | None
    ) -> bool:
        """The measurement as JSON; False when nothing ran."""
        functions = self.snapshot()
        if not functions:
            return False
        document: dict[str, Any] = {"period_days": period_days, "functions": functions}
        if ticks is not None:
            document["ticks"] = ticks
        if trades is not None:
            document["trades"] = trades
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        return True


INVOCATIONS = Invocations()
