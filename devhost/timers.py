"""Timer triggers on their six-field NCRONTAB schedules (``{second} {minute} {hour} {day}
{month} {day-of-week}``), with ``run_on_startup`` and ``TimerRequest.past_due``.

The schedule status (last and next occurrence) is kept in a JSON file so a restart knows
which occurrence it missed: one missed occurrence fires once, late, with ``past_due``
set, the way the host's schedule monitor behaves.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from azure.functions.timer import TimerRequest
from croniter import croniter

from devhost.app_index import FunctionSpec, UnsupportedApp

log = logging.getLogger("devhost.timers")


@dataclass(frozen=True)
class TimerSchedule:
    expression: str
    zone: tzinfo

    @classmethod
    def parse(cls, expression: str, zone: tzinfo, needed_by: str) -> TimerSchedule:
        if len(expression.split()) != 6 or not croniter.is_valid(
            expression, second_at_beginning=True
        ):
            raise UnsupportedApp(
                f"{needed_by}: schedule {expression!r} is not a six-field NCRONTAB expression"
            )
        return cls(expression, zone)

    def next_after(self, moment: datetime) -> datetime:
        local = moment.astimezone(self.zone)
        following: datetime = croniter(self.expression, local, second_at_beginning=True).get_next(
            datetime
        )
        return following.astimezone(moment.tzinfo)


@dataclass
class TimerState:
    spec: FunctionSpec
    schedule: TimerSchedule
    next_due: datetime
    last: datetime | None
    startup_pending: bool


class TimerRunner:
    """Decides which timers are due at a given moment; the caller invokes them."""

    def __init__(
        self,
        specs: list[FunctionSpec],
        *,
        now: datetime,
        status_path: Path | None = None,
        time_zone: str | None = None,
    ) -> None:
        zone: tzinfo = ZoneInfo(time_zone) if time_zone else now.tzinfo or ZoneInfo("UTC")
        self.status_path = status_path
        saved = self._load()
        self.timers: list[TimerState] = []
        for spec in specs:
            schedule = TimerSchedule.parse(str(spec.trigger["schedule"]), zone, spec.name)
            status = saved.get(spec.name, {})
            last = datetime.fromisoformat(status["Last"]) if status.get("Last") else None
            # A saved "Next" in the past is an occurrence missed while the host was down.
            if status.get("Next"):
                next_due = datetime.fromisoformat(status["Next"])
            else:
                next_due = schedule.next_after(now)
            self.timers.append(
                TimerState(spec, schedule, next_due, last, bool(spec.trigger.get("runOnStartup")))
            )

    def due(self, now: datetime) -> list[tuple[FunctionSpec, TimerRequest]]:
        """Every invocation due at ``now``, each timer at most once per call; advances the
        schedules and saves the status."""
        ready: list[tuple[FunctionSpec, TimerRequest]] = []
        for timer in self.timers:
            if timer.startup_pending or timer.next_due <= now:
                scheduled = timer.next_due
                past_due = not timer.startup_pending and self._is_past_due(timer, now)
                timer.startup_pending = False
                if scheduled <= now:
                    timer.next_due = timer.schedule.next_after(now)
                timer.last = now
                request = TimerRequest(
                    past_due=past_due,
                    schedule_status={
                        "Last": now.isoformat(),
                        "Next": timer.next_due.isoformat(),
                        "LastUpdated": now.isoformat(),
                    },
                    schedule={"AdjustForDST": True},
                )
                ready.append((timer.spec, request))
        if ready:
            self._save()
        return ready

    def next_wakeup(self) -> datetime | None:
        return min((t.next_due for t in self.timers), default=None)

    @staticmethod
    def _is_past_due(timer: TimerState, now: datetime) -> bool:
        # Late by more than one period means at least one occurrence was skipped.
        following = timer.schedule.next_after(timer.next_due)
        return now >= following

    def _load(self) -> dict[str, Any]:
        if self.status_path is None or not self.status_path.is_file():
            return {}
        data = json.loads(self.status_path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        if self.status_path is None:
            return
        data = {
            t.spec.name: {
                "Last": t.last.isoformat() if t.last else None,
                "Next": t.next_due.isoformat(),
            }
            for t in self.timers
        }
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.status_path)
