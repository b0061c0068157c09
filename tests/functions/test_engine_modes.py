"""The engine's modes and guarantees beyond single histories: incremental replay, long
timers, redelivered results, the background thread, and thread/process activity pools."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from devhost.durable import (
    DurableEngine,
    EngineBusy,
    RuntimeStatus,
    SystemClock,
    VirtualClock,
)
from devhost.durable.history import parse_ts
from devhost.measure import INVOCATIONS
from tests.functions import conformance_app
from tests.functions.conftest import T0
from tests.functions.history_outline import episodes, outline


def test_replay_work_per_episode_does_not_grow_with_the_history(engine: DurableEngine) -> None:
    engine.start_new("counted_chain", "long", 50)
    engine.run_until_idle()
    status = engine.get_status("long", show_history=True)
    assert status is not None and status.history is not None
    assert status.runtime_status is RuntimeStatus.COMPLETED
    assert status.output == sum(i * i for i in range(50))
    # Every event was checked against the actions exactly once, not once per episode (the
    # OrchestratorCompleted markers and the final ExecutionCompleted are never fed).
    checked = [e for e in status.history if e["EventType"] not in (1, 13)]
    assert engine.stats.replay_events == len(checked)
    assert engine.stats.full_replays == 0


def test_a_timer_longer_than_six_days_is_split_into_three_day_intervals(
    engine: DurableEngine,
) -> None:
    engine.start_new("long_sleep", "sleeper", 10)
    engine.run_until_idle()

    status = engine.get_status("sleeper", show_history=True)
    assert status is not None and status.history is not None
    assert status.output == (T0 + timedelta(days=10)).isoformat()
    assert episodes(status.history) == [
        ["ExecutionStarted long_sleep", "TimerCreated#0"],
        ["TimerFired->0", "TimerCreated#1"],
        ["TimerFired->1", "TimerCreated#2"],
        ["TimerFired->2", "ExecutionCompleted#3 Completed"],
    ]
    fire_times = [parse_ts(e["FireAt"]) for e in status.history if e["EventType"] == 10]
    assert fire_times == [T0 + timedelta(days=d) for d in (3, 6, 10)]


def test_a_redelivered_activity_result_is_appended_to_history_once(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = tmp_path / "durable.db"
    with DurableEngine(conformance_app.app, path, clock=clock, activity_workers=0) as first:
        first.start_new("waits_forever", "redelivered")
        first.run_until_idle()
        result = first.get_status("redelivered", show_history=True)
        assert result is not None and result.history is not None
        execution = result.execution_id
    # The same completion again, as an activity that ran twice would deliver it.
    duplicate = {
        "k": "event",
        "exec": execution,
        "event": {
            "EventType": 5,
            "EventId": -1,
            "IsPlayed": False,
            "Timestamp": "2026-03-02T14:31:00.000000Z",
            "TaskScheduledId": 0,
            "Result": "2",
        },
    }
    db = sqlite3.connect(str(path))
    db.execute(
        "INSERT INTO messages (id, target, due, dedup, body) "
        "VALUES (999, 'redelivered', 0, NULL, ?)",
        (json.dumps(duplicate),),
    )
    db.commit()
    db.close()
    with DurableEngine(conformance_app.app, path, clock=clock, activity_workers=0) as second:
        second.run_until_idle()
        status = second.get_status("redelivered", show_history=True)
        assert status is not None
        assert outline(status.history).count("TaskCompleted->0") == 1
        assert status.runtime_status is RuntimeStatus.RUNNING


def test_run_until_idle_stops_at_its_bound_for_endless_work(engine: DurableEngine) -> None:
    engine.start_new("long_sleep", "bounded", 10)
    report = engine.run_until_idle(until=T0 + timedelta(days=4))
    assert report.idle
    assert report.now == T0 + timedelta(days=3)
    status = engine.get_status("bounded")
    assert status is not None and status.runtime_status is RuntimeStatus.RUNNING
    with pytest.raises(EngineBusy):
        engine.run_until_idle(max_rounds=1)


def test_background_mode_runs_orchestrations_with_a_thread_pool(tmp_path: Path) -> None:
    with DurableEngine(
        conformance_app.app, tmp_path / "durable.db", clock=SystemClock(), activity_workers=4
    ) as engine:
        engine.start()
        for index in range(20):
            engine.start_new("fan_out_fan_in", f"bg-{index}", 5)
        statuses = [engine.wait_for_status(f"bg-{index}", timeout=20) for index in range(20)]
        assert all(
            s is not None and s.output == {"squares": [0, 1, 4, 9, 16], "total": 60}
            for s in statuses
        )
        with pytest.raises(RuntimeError):
            engine.step()
        engine.stop()


def test_background_mode_runs_a_backlog_bigger_than_a_round_without_idling(
    tmp_path: Path,
) -> None:
    # One episode per round and no activities: nothing kicks the engine after the first
    # round, so only the work the rounds leave ready keeps it going. An engine that waited
    # after every round would take three idle waits of 1 s; the bound leaves a slow machine
    # room for the episodes themselves.
    with DurableEngine(
        conformance_app.app,
        tmp_path / "durable.db",
        clock=SystemClock(),
        activity_workers=0,
        round_size=1,
    ) as engine:
        for index in range(4):
            engine.start_new("entity_user", f"backlog-{index}", f"key-{index}")
        started = time.monotonic()
        engine.start()
        statuses = [engine.wait_for_status(f"backlog-{i}", timeout=20) for i in range(4)]
        elapsed = time.monotonic() - started
        engine.stop()
    assert all(s is not None and s.runtime_status is RuntimeStatus.COMPLETED for s in statuses)
    assert elapsed < 2.0


def test_background_mode_fires_timers_on_the_system_clock(tmp_path: Path) -> None:
    with DurableEngine(
        conformance_app.app, tmp_path / "durable.db", clock=SystemClock(), activity_workers=1
    ) as engine:
        engine.start()
        engine.start_new("long_sleep", "short-sleep", 0)
        status = engine.wait_for_status("short-sleep", timeout=10)
        assert status is not None and status.runtime_status is RuntimeStatus.COMPLETED


def test_background_mode_fires_timers_when_a_virtual_clock_is_advanced(
    tmp_path: Path, clock: VirtualClock
) -> None:
    with DurableEngine(
        conformance_app.app, tmp_path / "durable.db", clock=clock, activity_workers=1
    ) as engine:
        engine.start()
        engine.start_new("approval", "virtual-bg", 15)
        running = engine.wait_for_status("virtual-bg", 10, statuses=[RuntimeStatus.RUNNING])
        assert running is not None
        clock.advance(timedelta(minutes=15))
        status = engine.wait_for_status("virtual-bg", timeout=10)
        assert status is not None and status.output == {
            "approved": None,
            "timed_out_at": (T0 + timedelta(minutes=15)).isoformat(),
        }


def test_cpu_bound_activities_run_in_worker_processes(tmp_path: Path, clock: VirtualClock) -> None:
    counted_before = INVOCATIONS.snapshot().get("burn_cpu", {"count": 0})["count"]
    with DurableEngine(
        conformance_app.app,
        tmp_path / "durable.db",
        clock=clock,
        activity_workers=2,
        cpu_bound_activities=["burn_cpu"],
        process_workers=2,
        app_import="tests.functions.conformance_app:app",
    ) as engine:
        engine.start_new("cpu_fan_out", "cpu", 4)
        engine.run_until_idle(timeout=60)
        status = engine.get_status("cpu")
        assert status is not None and status.runtime_status is RuntimeStatus.COMPLETED
        results = status.output
        assert [r["total"] for r in results] == [sum(i * i for i in range(20_000))] * 4
        assert all(r["pid"] != os.getpid() for r in results)
    # The workers' invocations are counted where the run's measurement is written.
    counted = INVOCATIONS.snapshot()["burn_cpu"]
    assert counted["count"] - counted_before == 4
    assert counted["trigger"] == "activity" and counted["total_duration_ms"] > 0


def test_a_chained_round_carries_an_orchestration_through_its_entity_calls(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = tmp_path / "durable.db"
    with DurableEngine(conformance_app.app, path, clock=clock, activity_workers=0) as engine:
        engine.start_new("entity_user", "chained", "c1")
        # Each entity answer makes the orchestration ready again; one round runs it all.
        assert engine.step(chain=True)
        status = engine.get_status("chained", show_history=True)
        assert status is not None and status.history is not None
        assert status.runtime_status is RuntimeStatus.COMPLETED
        assert status.output["after_add"] == 7 and status.output["current"] == 7
        assert engine.stats.rounds == 1
        history = status.history
    # Everything the round did was committed: another process reads the same end.
    with DurableEngine(conformance_app.app, path, clock=clock, activity_workers=0) as reopened:
        again = reopened.get_status("chained", show_history=True)
        assert again is not None and again.history == history
        entity = reopened.read_entity(("Counter", "c1"))
        assert entity.exists and entity.state == 7
        assert not reopened.step(), "nothing was left to run"


def test_a_single_pass_step_leaves_what_it_made_ready_for_the_next(
    engine: DurableEngine,
) -> None:
    engine.start_new("entity_user", "stepped", "c2")
    assert engine.step()
    status = engine.get_status("stepped")
    assert status is not None and status.runtime_status is RuntimeStatus.RUNNING
    steps = 1
    while engine.step():
        steps += 1
    status = engine.get_status("stepped")
    assert status is not None and status.runtime_status is RuntimeStatus.COMPLETED
    assert steps > 2


def test_a_continued_orchestration_starts_its_next_execution_in_a_later_round(
    engine: DurableEngine,
) -> None:
    engine.start_new("eternal_counter", "gens", {"generation": 0, "total": 0, "last": 2})
    engine.run_until_idle()
    engine.raise_event("gens", "bump", 3)
    # The episode that continues as new ends the round's work for that instance: its history
    # is wiped and restarted in the next round, never wiped and appended in one commit.
    assert engine.step(chain=True)
    status = engine.get_status("gens", show_history=True)
    assert status is not None and status.runtime_status is RuntimeStatus.CONTINUED_AS_NEW
    engine.run_until_idle()
    engine.raise_event("gens", "bump", 4)
    engine.run_until_idle()
    status = engine.get_status("gens", show_history=True)
    assert status is not None and status.runtime_status is RuntimeStatus.COMPLETED
    assert status.output == {"generation": 2, "total": 7}
    assert status.history is not None
    starts = [e for e in status.history if e["EventType"] == 0]
    assert len(starts) == 1, "one execution's history only"


def test_a_short_call_runs_in_place_only_while_the_engine_is_free(engine: DurableEngine) -> None:
    assert engine.call_if_free(lambda: engine.start_new("hello_sequence", "free")) == (
        True,
        "free",
    )
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine._lock:
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        calls: list[int] = []
        assert engine.call_if_free(lambda: calls.append(1)) == (False, None)
        assert calls == [], "nothing ran while a round held the engine"
    finally:
        release.set()
        holder.join()
    engine.run_until_idle()
    status = engine.get_status("free")
    assert status is not None and status.runtime_status is RuntimeStatus.COMPLETED


def test_a_chained_round_stops_to_send_an_activity_it_scheduled(engine: DurableEngine) -> None:
    engine.start_new("entity_user", "entities", "c3")
    engine.start_new("chain", "activities", 1)
    # "chain" schedules an activity in the first pass: the round commits and sends it
    # rather than carry "entity_user" through its entity calls first.
    assert engine.step(chain=True)
    waiting = engine.get_status("entities")
    assert waiting is not None and waiting.runtime_status is RuntimeStatus.RUNNING
    engine.run_until_idle()
    for instance_id in ("entities", "activities"):
        status = engine.get_status(instance_id)
        assert status is not None and status.runtime_status is RuntimeStatus.COMPLETED


def test_a_client_call_whose_commit_fails_leaves_nothing_behind(
    engine: DurableEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.start_new("approval", "waiting", 60)
    engine.run_until_idle(until=engine.clock.now())
    real = engine.store.commit

    def locked(batch: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(engine.store, "commit", locked)
    with pytest.raises(sqlite3.OperationalError):
        engine.start_new("chain", "ghost", 1)
    with pytest.raises(sqlite3.OperationalError):
        engine.raise_event("waiting", "Approval", True)
    monkeypatch.setattr(engine.store, "commit", real)
    engine.run_until_idle(until=engine.clock.now())
    # The caller was told neither happened: neither does.
    assert engine.get_status("ghost") is None
    status = engine.get_status("waiting")
    assert status is not None and status.runtime_status is RuntimeStatus.RUNNING
