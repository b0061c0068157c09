"""Timer triggers: NCRONTAB schedules, run on startup, past-due after a missed occurrence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devhost.app_index import FunctionSpec, UnsupportedApp, index_app
from devhost.timers import TimerRunner, TimerSchedule
from tests.devhost import sample_app

T0 = datetime(2026, 3, 2, 14, 3, 10, tzinfo=UTC)


def timer_spec() -> FunctionSpec:
    return index_app(sample_app.app).functions["every_five_minutes"]


def test_six_field_schedule_starts_with_seconds() -> None:
    schedule = TimerSchedule.parse("30 */5 * * * *", UTC, "t")
    assert schedule.next_after(T0) == datetime(2026, 3, 2, 14, 5, 30, tzinfo=UTC)
    weekdays = TimerSchedule.parse("0 30 9 * * Mon-Fri", UTC, "t")
    friday_evening = datetime(2026, 3, 6, 18, 0, tzinfo=UTC)
    assert weekdays.next_after(friday_evening) == datetime(2026, 3, 9, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("expression", ["*/5 * * * *", "00:05:00", "0 0 25 * * *", "nonsense"])
def test_schedules_that_are_not_six_field_ncrontab_are_refused(expression: str) -> None:
    with pytest.raises(UnsupportedApp, match="NCRONTAB"):
        TimerSchedule.parse(expression, UTC, "t")


def test_schedule_in_a_configured_time_zone() -> None:
    runner = TimerRunner([timer_spec()], now=T0, time_zone="America/New_York")
    assert runner.timers[0].schedule.next_after(T0) == datetime(2026, 3, 2, 14, 5, tzinfo=UTC)


def test_run_on_startup_fires_once_immediately_then_on_schedule() -> None:
    runner = TimerRunner([timer_spec()], now=T0)
    first = runner.due(T0)
    assert len(first) == 1 and first[0][1].past_due is False
    assert runner.due(T0 + timedelta(seconds=30)) == []
    assert runner.next_wakeup() == datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
    fired = runner.due(datetime(2026, 3, 2, 14, 5, 0, 100, tzinfo=UTC))
    assert len(fired) == 1 and fired[0][1].past_due is False
    assert runner.next_wakeup() == datetime(2026, 3, 2, 14, 10, tzinfo=UTC)


def test_an_occurrence_missed_while_down_fires_once_past_due(tmp_path: Path) -> None:
    status = tmp_path / "timers.json"
    runner = TimerRunner([timer_spec()], now=T0, status_path=status)
    runner.due(T0)  # the start-up run, which also saves the schedule status
    # The host is down from 14:03 until 14:22: the 14:05..14:20 occurrences were missed.
    later = datetime(2026, 3, 2, 14, 22, tzinfo=UTC)
    restarted = TimerRunner([timer_spec()], now=later, status_path=status)
    restarted.timers[0].startup_pending = False
    fired = restarted.due(later)
    assert len(fired) == 1
    assert fired[0][1].past_due is True
    assert fired[0][1].schedule_status["Next"] == "2026-03-02T14:25:00+00:00"
    assert restarted.due(later + timedelta(seconds=1)) == []
