"""Orchestrations run through the real SDK under the engine: histories (event types, order and
sequence numbers) and outputs, event by event, the way the Durable extension records them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from devhost.durable import (
    DurableEngine,
    InstanceNotRunning,
    RuntimeStatus,
    VirtualClock,
)
from devhost.durable.history import parse_ts
from tests.functions import conformance_app
from tests.functions.conftest import T0
from tests.functions.history_outline import episodes, outline


def finished(engine: DurableEngine, instance_id: str) -> tuple[RuntimeStatus, object, list[str]]:
    status = engine.get_status(instance_id, show_history=True)
    assert status is not None
    return status.runtime_status, status.output, outline(status.history)


def test_chain_schedules_each_activity_after_the_previous_result(engine: DurableEngine) -> None:
    engine.start_new("chain", "chain-1", 3)
    engine.run_until_idle()

    runtime_status, output, events = finished(engine, "chain-1")
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == [6, 12, 24]
    assert events == [
        "OrchestratorStarted",
        "ExecutionStarted chain",
        "TaskScheduled#0 double",
        "OrchestratorCompleted",
        "OrchestratorStarted",
        "TaskCompleted->0",
        "TaskScheduled#1 double",
        "OrchestratorCompleted",
        "OrchestratorStarted",
        "TaskCompleted->1",
        "TaskScheduled#2 double",
        "OrchestratorCompleted",
        "OrchestratorStarted",
        "TaskCompleted->2",
        "ExecutionCompleted#3 Completed",
        "OrchestratorCompleted",
    ]


def test_history_payloads_are_the_json_the_sdk_and_activities_produced(
    engine: DurableEngine,
) -> None:
    engine.start_new("chain", "chain-payloads", 5)
    engine.run_until_idle()
    status = engine.get_status("chain-payloads", show_history=True)
    assert status is not None and status.history is not None
    started, scheduled, completed = status.history[1], status.history[2], status.history[5]
    assert started["Input"] == "5"
    assert started["OrchestrationInstance"]["InstanceId"] == "chain-payloads"
    assert scheduled["Input"] == "5"
    assert completed["Result"] == "10"
    assert status.history[-2]["Result"] == "[10, 20, 40]"
    assert status.input == 5
    assert status.to_dict()["runtimeStatus"] == "Completed"


def test_fan_out_schedules_every_activity_in_one_episode_with_consecutive_ids(
    engine: DurableEngine,
) -> None:
    engine.start_new("fan_out_fan_in", "fan", 4)
    engine.run_until_idle()

    runtime_status, output, _ = finished(engine, "fan")
    status = engine.get_status("fan", show_history=True)
    assert status is not None
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == {"squares": [0, 1, 4, 9], "total": 28}
    assert episodes(status.history) == [
        [
            "ExecutionStarted fan_out_fan_in",
            "TaskScheduled#0 square",
            "TaskScheduled#1 square",
            "TaskScheduled#2 square",
            "TaskScheduled#3 square",
        ],
        [
            "TaskCompleted->0",
            "TaskCompleted->1",
            "TaskCompleted->2",
            "TaskCompleted->3",
            "TaskScheduled#4 double",
        ],
        ["TaskCompleted->4", "ExecutionCompleted#5 Completed"],
    ]


def test_retry_that_recovers_waits_on_a_retry_timer_after_each_failure(
    engine: DurableEngine, clock: VirtualClock
) -> None:
    engine.start_new("with_retry", "retry-ok", {"key": "retry-ok", "fail_times": 2})
    engine.run_until_idle()

    runtime_status, output, _ = finished(engine, "retry-ok")
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == "succeeded on attempt 3"
    status = engine.get_status("retry-ok", show_history=True)
    assert status is not None and status.history is not None
    assert episodes(status.history) == [
        ["ExecutionStarted with_retry", "TaskScheduled#0 flaky"],
        ["TaskFailed->0", "TimerCreated#1"],
        ["TimerFired->1", "TaskScheduled#2 flaky"],
        ["TaskFailed->2", "TimerCreated#3"],
        ["TimerFired->3", "TaskScheduled#4 flaky"],
        ["TaskCompleted->4", "ExecutionCompleted#5 Completed"],
    ]
    timers = [e for e in status.history if e["EventType"] == 10]
    started = [e for e in status.history if e["EventType"] == 12]
    # The retry interval counts from the episode that saw the failure, and the episode that
    # delivers the timer starts no earlier than the timer's FireAt.
    assert parse_ts(timers[0]["FireAt"]) == parse_ts(started[1]["Timestamp"]) + timedelta(seconds=5)
    assert parse_ts(started[2]["Timestamp"]) >= parse_ts(timers[0]["FireAt"])
    assert clock.now() == T0 + timedelta(seconds=10)
    failure = next(e for e in status.history if e["EventType"] == 6)
    assert failure["Reason"] == "Activity function 'flaky' failed: ValueError: attempt 1 failed"


def test_retry_that_exhausts_fails_after_one_more_timer_than_attempts(
    engine: DurableEngine,
) -> None:
    engine.start_new("with_retry", "retry-out", {"key": "retry-out", "fail_times": 9})
    engine.run_until_idle()

    runtime_status, output, _ = finished(engine, "retry-out")
    status = engine.get_status("retry-out", show_history=True)
    assert status is not None
    assert runtime_status is RuntimeStatus.FAILED
    assert episodes(status.history) == [
        ["ExecutionStarted with_retry", "TaskScheduled#0 flaky"],
        ["TaskFailed->0", "TimerCreated#1"],
        ["TimerFired->1", "TaskScheduled#2 flaky"],
        ["TaskFailed->2", "TimerCreated#3"],
        ["TimerFired->3", "TaskScheduled#4 flaky"],
        ["TaskFailed->4", "TimerCreated#5"],
        ["TimerFired->5", "ExecutionCompleted#6 Failed"],
    ]
    assert isinstance(output, str)
    assert output.startswith(
        "Orchestrator function 'with_retry' failed: Activity function 'flaky' failed: "
        "ValueError: attempt 3 failed"
    )
    assert conformance_app.attempts["retry-out"] == 3


def test_retry_that_exhausts_reaches_the_orchestrator_as_a_plain_exception(
    engine: DurableEngine,
) -> None:
    request = {"key": "retry-caught", "fail_times": 9, "catch": True}
    engine.start_new("with_retry", "retry-caught", request)
    engine.run_until_idle()

    runtime_status, output, events = finished(engine, "retry-caught")
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == "gave up: Activity function 'flaky' failed: ValueError: attempt 3 failed "
    assert events[-2] == "ExecutionCompleted#6 Completed"


def test_event_that_beats_the_timer_cancels_it_and_the_timer_never_fires(
    engine: DurableEngine, clock: VirtualClock
) -> None:
    engine.start_new("approval", "approve", 30)
    engine.run_until_idle(until=T0)
    clock.advance(timedelta(minutes=5))
    engine.raise_event("approve", "Approval", "alice")
    engine.run_until_idle()
    # Idle with no timer left: the cancelled one is gone, even well past its deadline.
    clock.advance(timedelta(hours=2))
    engine.run_until_idle()

    runtime_status, output, _ = finished(engine, "approve")
    status = engine.get_status("approve", show_history=True)
    assert status is not None and status.history is not None
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == {"approved": "alice", "confirmation": "Hello alice!"}
    assert episodes(status.history) == [
        ["ExecutionStarted approval", "TimerCreated#0"],
        ["EventRaised Approval", "TaskScheduled#1 greet"],
        ["TaskCompleted->1", "ExecutionCompleted#2 Completed"],
    ]
    created = status.history[2]
    assert parse_ts(created["FireAt"]) == T0 + timedelta(minutes=30)


def test_timer_that_beats_the_event_fires_at_its_deadline(
    engine: DurableEngine, clock: VirtualClock
) -> None:
    engine.start_new("approval", "expire", 30)
    engine.run_until_idle()

    runtime_status, output, _ = finished(engine, "expire")
    status = engine.get_status("expire", show_history=True)
    assert status is not None and status.history is not None
    assert runtime_status is RuntimeStatus.COMPLETED
    deadline = T0 + timedelta(minutes=30)
    assert output == {"approved": None, "timed_out_at": deadline.isoformat()}
    assert episodes(status.history) == [
        ["ExecutionStarted approval", "TimerCreated#0"],
        ["TimerFired->0", "ExecutionCompleted#1 Completed"],
    ]
    assert clock.now() == deadline
    with pytest.raises(InstanceNotRunning):
        engine.raise_event("expire", "Approval", "too late")


def test_orchestrator_started_timestamps_never_go_backwards(
    engine: DurableEngine, clock: VirtualClock
) -> None:
    engine.start_new("waits_for_two_events", "clocked")
    engine.run_until_idle()
    clock.advance(timedelta(seconds=3))
    engine.raise_event("clocked", "first", 1)
    engine.run_until_idle()
    clock.advance(timedelta(seconds=4))
    engine.raise_event("clocked", "second", 2)
    engine.run_until_idle()
    status = engine.get_status("clocked", show_history=True)
    assert status is not None and status.history is not None
    stamps = [parse_ts(e["Timestamp"]) for e in status.history if e["EventType"] == 12]
    assert stamps == [T0, T0 + timedelta(seconds=3), T0 + timedelta(seconds=7)]


def test_events_raised_before_the_orchestrator_waits_are_buffered(engine: DurableEngine) -> None:
    engine.start_new("waits_for_two_events", "early")
    engine.raise_event("early", "second", "2nd")
    engine.raise_event("early", "first", "1st")
    engine.run_until_idle()

    runtime_status, output, events = finished(engine, "early")
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == ["1st", "2nd"]
    assert events == [
        "OrchestratorStarted",
        "ExecutionStarted waits_for_two_events",
        "EventRaised second",
        "EventRaised first",
        "ExecutionCompleted#0 Completed",
        "OrchestratorCompleted",
    ]


def test_sub_orchestration_result_reaches_the_parent(engine: DurableEngine) -> None:
    engine.start_new("parent", "parent-ok", {"value": 21})
    engine.run_until_idle()

    runtime_status, output, _ = finished(engine, "parent-ok")
    parent_status = engine.get_status("parent-ok", show_history=True)
    assert parent_status is not None
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == {"child": 42}
    assert episodes(parent_status.history) == [
        ["ExecutionStarted parent", "SubOrchestrationInstanceCreated#0 child"],
        ["SubOrchestrationInstanceCompleted->0", "ExecutionCompleted#1 Completed"],
    ]
    child_id = parent_status.history[2]["InstanceId"] if parent_status.history else None
    # Without an explicit id the framework names the child after the parent's execution.
    assert child_id == f"{parent_status.execution_id}:0"
    child_status = engine.get_status(str(child_id), show_history=True)
    assert child_status is not None
    assert child_status.parent_instance_id == "parent-ok"
    assert child_status.output == 42
    assert episodes(child_status.history) == [
        ["ExecutionStarted child", "TaskScheduled#0 double"],
        ["TaskCompleted->0", "ExecutionCompleted#1 Completed"],
    ]
    assert child_status.history is not None
    assert child_status.history[1]["ParentInstance"]["OrchestrationInstance"] == {
        "InstanceId": "parent-ok",
        "ExecutionId": parent_status.execution_id,
    }


def test_sub_orchestration_failure_reaches_the_parent_as_an_exception(
    engine: DurableEngine,
) -> None:
    engine.start_new("parent", "parent-ko", {"value": 3, "fail": True, "child_id": "kid"})
    engine.run_until_idle()

    runtime_status, output, events = finished(engine, "parent-ko")
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == {"child_failed": "Orchestrator function 'child' failed: child refuses 6 "}
    assert events[4:7] == [
        "OrchestratorStarted",
        "SubOrchestrationInstanceFailed->0",
        "ExecutionCompleted#1 Completed",
    ]
    kid = engine.get_status("kid", show_history=True)
    assert kid is not None
    assert kid.runtime_status is RuntimeStatus.FAILED
    assert kid.output == "Orchestrator function 'child' failed: child refuses 6"
    assert outline(kid.history)[-2:] == ["ExecutionCompleted#1 Failed", "OrchestratorCompleted"]


def test_sub_orchestration_with_retry_starts_a_new_child_after_the_retry_timer(
    engine: DurableEngine,
) -> None:
    engine.start_new("parent_with_retry", "parent-retry", {"key": "sub-retry", "fail_times": 1})
    engine.run_until_idle()

    runtime_status, output, _ = finished(engine, "parent-retry")
    status = engine.get_status("parent-retry", show_history=True)
    assert status is not None and status.history is not None
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == "succeeded on attempt 2"
    assert episodes(status.history) == [
        ["ExecutionStarted parent_with_retry", "SubOrchestrationInstanceCreated#0 flaky_child"],
        ["SubOrchestrationInstanceFailed->0", "TimerCreated#1"],
        ["TimerFired->1", "SubOrchestrationInstanceCreated#2 flaky_child"],
        ["SubOrchestrationInstanceCompleted->2", "ExecutionCompleted#3 Completed"],
    ]
    first, second = (e["InstanceId"] for e in status.history if e["EventType"] == 7)
    assert (first, second) == (f"{status.execution_id}:0", f"{status.execution_id}:2")
    failed_child = engine.get_status(first)
    assert failed_child is not None and failed_child.runtime_status is RuntimeStatus.FAILED


def test_custom_status_is_visible_while_running_and_kept_after(engine: DurableEngine) -> None:
    engine.start_new("reports_progress", "progress")
    engine.run_until_idle()
    running = engine.get_status("progress")
    assert running is not None
    assert running.runtime_status is RuntimeStatus.RUNNING
    assert running.custom_status == {"step": 2, "greeting": "Hello status!"}

    engine.raise_event("progress", "go")
    engine.run_until_idle()
    done = engine.get_status("progress")
    assert done is not None
    assert done.runtime_status is RuntimeStatus.COMPLETED
    assert done.output == "done"
    assert done.custom_status == {"step": 2, "greeting": "Hello status!"}


def test_a_failing_orchestrator_records_failed_with_its_error(engine: DurableEngine) -> None:
    engine.start_new("raises_after_activity", "boom")
    engine.run_until_idle()

    runtime_status, output, events = finished(engine, "boom")
    assert runtime_status is RuntimeStatus.FAILED
    assert output == "Orchestrator function 'raises_after_activity' failed: boom after 42"
    assert events[-3:] == [
        "TaskCompleted->0",
        "ExecutionCompleted#1 Failed",
        "OrchestratorCompleted",
    ]
    status = engine.get_status("boom", show_history=True)
    assert status is not None and status.history is not None
    assert "RuntimeError: boom after 42" in status.history[-2]["Details"]


def test_a_changed_code_path_fails_the_instance_as_non_deterministic(
    engine: DurableEngine,
) -> None:
    engine.start_new("nondeterministic", "nd")
    engine.run_until_idle()

    runtime_status, output, events = finished(engine, "nd")
    assert runtime_status is RuntimeStatus.FAILED
    assert isinstance(output, str)
    assert output.startswith("Non-Deterministic workflow detected: ")
    assert "TaskScheduled #0 'activity_a'" in output
    assert "activity #0 named 'activity_b'" in output
    assert events == [
        "OrchestratorStarted",
        "ExecutionStarted nondeterministic",
        "TaskScheduled#0 activity_a",
        "OrchestratorCompleted",
        "OrchestratorStarted",
        "TaskCompleted->0",
        "ExecutionCompleted#1 Failed",
        "OrchestratorCompleted",
    ]


def test_calling_an_activity_the_app_does_not_have_fails_the_instance(
    engine: DurableEngine,
) -> None:
    engine.start_new("calls_missing_activity", "missing")
    engine.run_until_idle()

    runtime_status, output, events = finished(engine, "missing")
    assert runtime_status is RuntimeStatus.FAILED
    assert output == (
        "Orchestrator function 'calls_missing_activity' failed: The function 'does_not_exist' "
        "doesn't exist, is disabled, or is not an activity function."
    )
    assert "TaskScheduled#0 does_not_exist" not in events


def test_activity_inputs_are_decoded_like_the_python_worker_does(engine: DurableEngine) -> None:
    payloads = ["text", 3, 2.5, {"a": [1, 2]}, [1, "two"], None, True]
    engine.start_new("payloads", "payloads", payloads)
    engine.run_until_idle()

    runtime_status, output, events = finished(engine, "payloads")
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == [
        {"type": "str", "value": "text"},
        {"type": "int", "value": 3},
        {"type": "float", "value": 2.5},
        {"type": "dict", "value": {"a": [1, 2]}},
        {"type": "list", "value": [1, "two"]},
        {"type": "NoneType", "value": None},
        {"type": "bool", "value": True},
    ]
    # The activity is registered under the name its trigger declares.
    assert events[2] == "TaskScheduled#0 RecordPayload"


def test_when_all_waits_for_every_child_before_the_next_action_is_scheduled(
    engine: DurableEngine,
) -> None:
    engine.start_new("all_fail_fast", "fail-fast")
    engine.run_until_idle()
    # Python caught the failure at once and asked for the next activity, but the extension's
    # Task.WhenAll still waits for the event, so nothing new is scheduled yet.
    waiting = engine.get_status("fail-fast", show_history=True)
    assert waiting is not None
    assert waiting.runtime_status is RuntimeStatus.RUNNING
    assert episodes(waiting.history) == [
        ["ExecutionStarted all_fail_fast", "TaskScheduled#0 flaky"],
        ["TaskFailed->0"],
    ]

    engine.raise_event("fail-fast", "slow", None)
    engine.run_until_idle()
    runtime_status, output, _ = finished(engine, "fail-fast")
    status = engine.get_status("fail-fast", show_history=True)
    assert status is not None
    assert runtime_status is RuntimeStatus.COMPLETED
    assert output == {
        "after": 8,
        "failure": "Activity function 'flaky' failed: ValueError: attempt 1 failed",
    }
    assert episodes(status.history)[2:] == [
        ["EventRaised slow", "TaskScheduled#1 double"],
        ["TaskCompleted->1", "ExecutionCompleted#2 Completed"],
    ]


def test_sub_orchestration_retries_that_run_out_fail_the_parent(engine: DurableEngine) -> None:
    engine.start_new("parent_with_retry", "parent-gives-up", {"key": "sub-out", "fail_times": 9})
    engine.run_until_idle()

    runtime_status, output, _ = finished(engine, "parent-gives-up")
    status = engine.get_status("parent-gives-up", show_history=True)
    assert status is not None
    assert runtime_status is RuntimeStatus.FAILED
    assert episodes(status.history) == [
        ["ExecutionStarted parent_with_retry", "SubOrchestrationInstanceCreated#0 flaky_child"],
        ["SubOrchestrationInstanceFailed->0", "TimerCreated#1"],
        ["TimerFired->1", "SubOrchestrationInstanceCreated#2 flaky_child"],
        ["SubOrchestrationInstanceFailed->2", "TimerCreated#3"],
        ["TimerFired->3", "ExecutionCompleted#4 Failed"],
    ]
    assert isinstance(output, str)
    assert output.startswith(
        "Orchestrator function 'parent_with_retry' failed: Orchestrator function 'flaky_child' "
        "failed: Activity function 'flaky' failed: ValueError: attempt 2 failed"
    )


def test_the_sdk_sees_earlier_episodes_as_replay_and_new_events_as_live(
    engine: DurableEngine,
) -> None:
    engine.start_new("notes_replaying", "flags")
    engine.run_until_idle()
    assert conformance_app.replay_flags["flags"] == [
        (0, False),
        (0, True),
        (1, False),
        (0, True),
        (1, True),
        (2, False),
    ]
