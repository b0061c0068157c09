"""Entities, continue-as-new, termination, and the client-facing lifecycle policies."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import azure.durable_functions as df
import pytest

from devhost.durable import (
    DurableEngine,
    EntityRef,
    ExistingInstance,
    FunctionNotFound,
    InstanceAlreadyExists,
    InstanceNotFound,
    InstanceNotRunning,
    InstanceStillRunning,
    RuntimeStatus,
    VirtualClock,
)
from tests.functions import conformance_app
from tests.functions.conftest import T0
from tests.functions.history_outline import episodes, outline


def test_call_entity_sends_a_request_and_resumes_on_the_response(engine: DurableEngine) -> None:
    engine.start_new("entity_user", "caller", "acct-1")
    engine.run_until_idle()

    status = engine.get_status("caller", show_history=True)
    assert status is not None and status.history is not None
    assert status.runtime_status is RuntimeStatus.COMPLETED
    assert status.output == {
        "after_add": 7,
        "current": 7,
        "failure": "counter cannot fail on demand",
    }
    sent = [e for e in status.history if e["EventType"] == 14]
    requests = [json.loads(e["Input"]) for e in sent]
    # The signal and the first call go out in the first episode, each with its own number.
    assert episodes(status.history) == [
        [
            "ExecutionStarted entity_user",
            "EventSent#0 @counter@acct-1",
            "EventSent#1 @counter@acct-1",
        ],
        [f"EventRaised {requests[1]['id']}", "EventSent#2 @counter@acct-1"],
        [f"EventRaised {requests[2]['id']}", "EventSent#3 @counter@acct-1"],
        [f"EventRaised {requests[3]['id']}", "ExecutionCompleted#4 Completed"],
    ]
    assert [(r["op"], r["signal"], r["input"]) for r in requests] == [
        ("add", True, "5"),
        ("add", False, "2"),
        ("get", False, "null"),
        ("fail", False, "null"),
    ]
    response = next(
        e for e in status.history if e["EventType"] == 15 and e["Name"] == requests[1]["id"]
    )
    assert json.loads(response["Input"]) == {"result": "7"}
    entity = engine.read_entity(("Counter", "acct-1"))
    assert entity.exists and entity.state == 7


def test_client_signals_are_applied_in_order_and_readable(engine: DurableEngine) -> None:
    for amount in (1, 2, 3):
        engine.signal_entity(df.EntityId("counter", "k"), "add", amount)
    engine.run_until_idle()
    assert engine.read_entity("@counter@k").state == 6
    assert engine.read_entity(EntityRef("COUNTER", "k")).state == 6
    assert [e.entity.key for e in engine.list_entities("counter")] == ["k"]

    engine.signal_entity(("counter", "k"), "delete")
    engine.run_until_idle()
    gone = engine.read_entity(("counter", "k"))
    assert not gone.exists and gone.state is None


def test_an_entity_operation_that_raises_keeps_the_state_it_had(engine: DurableEngine) -> None:
    engine.signal_entity(("counter", "e"), "add", 4)
    engine.signal_entity(("counter", "e"), "fail")
    engine.signal_entity(("counter", "e"), "add", 1)
    engine.run_until_idle()
    assert engine.read_entity(("counter", "e")).state == 5


def test_signalling_an_entity_the_app_does_not_have_is_refused(engine: DurableEngine) -> None:
    with pytest.raises(FunctionNotFound):
        engine.signal_entity(("nope", "k"), "add", 1)


def test_continue_as_new_starts_a_fresh_execution_with_the_new_input(
    engine: DurableEngine,
) -> None:
    engine.start_new("eternal_counter", "eternal", {"generation": 0, "total": 0, "last": 2})
    engine.run_until_idle()
    first = engine.get_status("eternal")
    assert first is not None and first.runtime_status is RuntimeStatus.RUNNING

    engine.raise_event("eternal", "bump", 5)
    assert engine.step()  # the episode that continues as new
    continued = engine.get_status("eternal", show_history=True)
    assert continued is not None
    assert continued.runtime_status is RuntimeStatus.CONTINUED_AS_NEW
    assert continued.execution_id != first.execution_id
    assert outline(continued.history)[-4:] == [
        "OrchestratorStarted",
        "EventRaised bump",
        "ContinueAsNew#0",
        "OrchestratorCompleted",
    ]
    # Raised after the old execution ended: waits in the inbox for the new execution.
    engine.raise_event("eternal", "bump", 7)
    engine.run_until_idle()

    status = engine.get_status("eternal", show_history=True)
    assert status is not None
    assert status.runtime_status is RuntimeStatus.COMPLETED
    assert status.output == {"generation": 2, "total": 12}
    assert status.input == {"generation": 2, "total": 12, "last": 2}
    # Only the last execution's history is kept.
    assert outline(status.history) == [
        "OrchestratorStarted",
        "ExecutionStarted eternal_counter",
        "ExecutionCompleted#0 Completed",
        "OrchestratorCompleted",
    ]


def test_events_the_old_execution_received_but_never_awaited_are_dropped(
    engine: DurableEngine,
) -> None:
    engine.start_new("eternal_counter", "drops", {"generation": 0, "total": 0, "last": 2})
    engine.raise_event("drops", "bump", 5)
    engine.raise_event("drops", "bump", 7)
    engine.run_until_idle()

    status = engine.get_status("drops")
    assert status is not None
    # Both events landed in generation 0; it used one and the other went with its history.
    assert status.runtime_status is RuntimeStatus.RUNNING
    assert status.input == {"generation": 1, "total": 5, "last": 2}


def test_terminate_ends_a_waiting_instance_without_running_it(engine: DurableEngine) -> None:
    engine.start_new("waits_forever", "stuck")
    engine.run_until_idle()
    engine.terminate("stuck", "enough")
    engine.run_until_idle()

    status = engine.get_status("stuck", show_history=True)
    assert status is not None
    assert status.runtime_status is RuntimeStatus.TERMINATED
    assert status.output == "enough"
    assert episodes(status.history) == [
        ["ExecutionStarted waits_forever", "TaskScheduled#0 double"],
        ["TaskCompleted->0"],
        ["ExecutionTerminated", "ExecutionCompleted#1 Terminated"],
    ]
    with pytest.raises(InstanceNotRunning):
        engine.terminate("stuck", "again")
    with pytest.raises(InstanceNotFound):
        engine.terminate("nobody", "why")


def test_terminating_a_child_fails_the_parents_call(engine: DurableEngine) -> None:
    engine.start_new("parent", "waiting-parent", {"value": 1, "child_id": "never-child"})
    # Two rounds: the parent creates the child, the child starts and waits on an activity.
    engine.step()
    engine.step()
    engine.terminate("never-child", "cancelled by operator")
    engine.run_until_idle()
    parent = engine.get_status("waiting-parent")
    assert parent is not None and parent.runtime_status is RuntimeStatus.COMPLETED
    assert parent.output == {
        "child_failed": "Orchestration 'never-child' was terminated: cancelled by operator "
    }


def test_start_refuses_or_ignores_an_id_that_is_still_running(engine: DurableEngine) -> None:
    engine.start_new("waits_forever", "dup")
    with pytest.raises(InstanceAlreadyExists):
        engine.start_new("waits_forever", "dup")
    assert engine.start_new("chain", "dup", 1, if_exists=ExistingInstance.IGNORE) == "dup"
    engine.run_until_idle()
    status = engine.get_status("dup")
    assert status is not None and status.name == "waits_forever"


def test_start_replaces_a_finished_instance_with_a_new_execution(engine: DurableEngine) -> None:
    engine.start_new("chain", "again", 1)
    engine.run_until_idle()
    first = engine.get_status("again")
    engine.start_new("chain", "again", 10)
    pending = engine.get_status("again", show_history=True)
    assert pending is not None and pending.runtime_status is RuntimeStatus.PENDING
    assert pending.history == []
    engine.run_until_idle()
    second = engine.get_status("again")
    assert first is not None and second is not None
    assert second.execution_id != first.execution_id
    assert second.output == [20, 40, 80]


def test_starting_an_unknown_orchestrator_is_refused(engine: DurableEngine) -> None:
    with pytest.raises(FunctionNotFound):
        engine.start_new("no_such_orchestrator")


def test_purge_deletes_only_finished_instances(engine: DurableEngine) -> None:
    engine.start_new("chain", "old", 1)
    engine.start_new("waits_forever", "busy")
    engine.run_until_idle()
    with pytest.raises(InstanceStillRunning):
        engine.purge("busy")
    assert engine.purge("old") is True
    assert engine.get_status("old") is None
    assert engine.purge("old") is False


def test_query_filters_by_status_creation_time_and_prefix(
    engine: DurableEngine, clock: VirtualClock
) -> None:
    engine.start_new("chain", "q-1", 1)
    clock.advance(timedelta(minutes=1))
    engine.start_new("waits_forever", "q-2")
    engine.start_new("waits_forever", "other")
    engine.run_until_idle()
    running = engine.query(runtime_status=[RuntimeStatus.RUNNING])
    assert [s.instance_id for s in running] == ["other", "q-2"]
    recent = engine.query(created_from=T0 + timedelta(seconds=30), instance_id_prefix="q-")
    assert [s.instance_id for s in recent] == ["q-2"]
    assert len(engine.query(top=1)) == 1
    assert engine.purge_instances(runtime_status=[RuntimeStatus.COMPLETED]) == 1


def test_an_instance_resumes_in_a_new_engine_on_the_same_store(
    tmp_path: Path, clock: VirtualClock
) -> None:
    path = tmp_path / "durable.db"
    with DurableEngine(conformance_app.app, path, clock=clock, activity_workers=0) as first:
        first.start_new("reports_progress", "resume")
        first.run_until_idle()
    with DurableEngine(conformance_app.app, path, clock=clock, activity_workers=0) as second:
        second.raise_event("resume", "go")
        second.run_until_idle()
        status = second.get_status("resume", show_history=True)
        assert status is not None
        assert status.runtime_status is RuntimeStatus.COMPLETED
        # The restarted engine rebuilt its view of the execution from the stored history.
        assert second.stats.full_replays == 1
        assert episodes(status.history)[-1] == ["EventRaised go", "ExecutionCompleted#1 Completed"]


def test_a_timer_survives_a_restart(tmp_path: Path, clock: VirtualClock) -> None:
    path = tmp_path / "durable.db"
    with DurableEngine(conformance_app.app, path, clock=clock, activity_workers=0) as first:
        first.start_new("approval", "timer-restart", 10)
        first.run_until_idle(until=T0)
    clock.advance(timedelta(minutes=10))
    with DurableEngine(conformance_app.app, path, clock=clock, activity_workers=0) as second:
        second.run_until_idle()
        status = second.get_status("timer-restart")
        assert status is not None
        assert status.output == {
            "approved": None,
            "timed_out_at": (T0 + timedelta(minutes=10)).isoformat(),
        }


def test_a_continued_instance_resumes_in_a_new_engine(tmp_path: Path, clock: VirtualClock) -> None:
    path = tmp_path / "durable.db"
    with DurableEngine(conformance_app.app, path, clock=clock, activity_workers=0) as first:
        first.start_new("eternal_counter", "reborn", {"generation": 0, "total": 0, "last": 1})
        first.run_until_idle()
        first.raise_event("reborn", "bump", 3)
        first.step()
        status = first.get_status("reborn")
        assert status is not None
        assert status.runtime_status is RuntimeStatus.CONTINUED_AS_NEW
    with DurableEngine(conformance_app.app, path, clock=clock, activity_workers=0) as second:
        second.run_until_idle()
        status = second.get_status("reborn", show_history=True)
        assert status is not None
        assert status.output == {"generation": 1, "total": 3}
        assert outline(status.history)[:2] == [
            "OrchestratorStarted",
            "ExecutionStarted eternal_counter",
        ]


def test_timers_of_a_finished_instance_are_dropped(
    engine: DurableEngine, clock: VirtualClock
) -> None:
    engine.start_new("nested_compounds", "leftover-timer")
    engine.run_until_idle(until=T0)
    engine.raise_event("leftover-timer", "go", "now")
    engine.run_until_idle()
    status = engine.get_status("leftover-timer")
    assert status is not None and status.output == [2, [4, 9], "event"]
    # The losing one-hour timer was never cancelled by the code, but nothing waits for it.
    assert clock.now() == T0
