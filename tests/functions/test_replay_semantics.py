"""The extension-side replay on its own: how issued actions get sequence numbers, when the
re-issued action list is blocked, and what counts as non-deterministic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from devhost.durable import DurableEngine, RuntimeStatus
from devhost.durable import history as h
from devhost.durable.replay import NonDeterminismError, Replay, WorkKind
from tests.functions.history_outline import episodes

TS = "2026-03-02T14:30:00.000000Z"
NOW = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


class Everything:
    def has_activity(self, name: str) -> bool:
        return True

    def has_orchestrator(self, name: str) -> bool:
        return True

    def has_entity(self, name: str) -> bool:
        return True


def activity(name: str) -> dict[str, Any]:
    return {"actionType": 0, "functionName": name, "input": "null"}


def timer(canceled: bool = False) -> dict[str, Any]:
    return {"actionType": 5, "fireAt": "2026-03-02T15:30:00.000000Z", "isCanceled": canceled}


def event(name: str) -> dict[str, Any]:
    return {"actionType": 6, "externalEventName": name, "reason": "ExternalEvent"}


def when_all(*children: dict[str, Any]) -> dict[str, Any]:
    return {"actionType": 12, "compoundActions": list(children)}


def when_any(*children: dict[str, Any]) -> dict[str, Any]:
    return {"actionType": 11, "compoundActions": list(children)}


def retry(name: str, attempts: int) -> dict[str, Any]:
    options = {"firstRetryIntervalInMilliseconds": 1000, "maxNumberOfAttempts": attempts}
    return {"actionType": 1, "functionName": name, "input": "null", "retryOptions": options}


def started_replay(actions: list[dict[str, Any]]) -> Replay:
    replay = Replay("i", "e", Everything(), NOW)
    replay.extend(actions)
    replay.feed(h.orchestrator_started(TS))
    replay.feed(
        h.execution_started(
            TS, name="o", instance_id="i", execution_id="e", input_json=None, parent=None
        )
    )
    return replay


def done(replay: Replay) -> bool:
    # A function, so that type narrowing does not treat the property as a constant.
    return replay.finished


def scheduled(replay: Replay) -> list[tuple[int, str]]:
    return [
        (w.seq, w.kind.value if w.kind is not WorkKind.ACTIVITY else w.name)
        for w in replay.new_work()
    ]


def test_leaves_are_numbered_depth_first_in_the_order_of_the_list() -> None:
    replay = started_replay(
        [when_all(activity("a"), when_any(timer(), activity("b")), activity("c"))]
    )
    assert scheduled(replay) == [(0, "a"), (1, "timer"), (2, "b"), (3, "c")]
    assert not done(replay)


def test_the_next_action_is_issued_only_when_the_previous_one_completes() -> None:
    replay = started_replay([activity("a"), activity("b")])
    assert scheduled(replay) == [(0, "a")]
    replay.feed(h.task_scheduled(TS, 0, "a", "null"))
    replay.feed(h.task_completed(TS, 0, "1"))
    assert scheduled(replay) == [(1, "b")]


def test_a_failed_task_does_not_stop_the_list_but_a_when_all_waits_for_all_children() -> None:
    replay = started_replay([when_all(activity("a"), event("x")), activity("b")])
    replay.feed(h.task_scheduled(TS, 0, "a", "null"))
    replay.feed(h.task_failed(TS, 0, "boom", None))
    assert scheduled(replay) == []
    replay.feed(h.event_raised(TS, "X", "1"))  # event names match case-insensitively
    assert scheduled(replay) == [(1, "b")]


def test_a_retry_takes_numbers_for_its_timers_and_attempts_when_failures_land() -> None:
    replay = started_replay([retry("flaky", 2)])
    replay.feed(h.task_scheduled(TS, 0, "flaky", "null"))
    replay.feed(h.task_failed(TS, 0, "boom", None))
    assert scheduled(replay) == [(1, "timer")]
    fire_at = replay.new_work()[0].fire_at
    assert fire_at == "2026-03-02T14:30:01.000000Z"
    replay.feed(h.timer_created(TS, 1, str(fire_at)))
    replay.feed(h.timer_fired(TS, 1, str(fire_at)))
    assert scheduled(replay) == [(2, "flaky")]
    replay.feed(h.task_scheduled(TS, 2, "flaky", "null"))
    replay.feed(h.task_failed(TS, 2, "boom", None))
    replay.feed(h.timer_created(TS, 3, str(fire_at)))
    assert not done(replay)
    replay.feed(h.timer_fired(TS, 3, str(fire_at)))
    assert done(replay)


def test_a_timer_cancelled_when_issued_is_recorded_but_never_awaited() -> None:
    replay = started_replay([when_any(timer(canceled=True), event("x"))])
    assert scheduled(replay) == [(0, "timer")]
    assert replay.canceled_timers == [0]
    assert done(replay)


def test_events_raised_before_a_wait_are_kept_for_later_waits() -> None:
    replay = started_replay([event("x")])
    replay.feed(h.event_raised(TS, "x", "1"))
    replay.feed(h.event_raised(TS, "x", "2"))
    assert done(replay)
    replay.extend([event("x"), event("x"), event("x")])
    # One buffered event left for the second wait; the third waits.
    assert not done(replay)
    replay.feed(h.event_raised(TS, "x", "3"))
    assert done(replay)


def test_history_that_recorded_other_work_is_non_deterministic() -> None:
    replay = started_replay([activity("b")])
    with pytest.raises(NonDeterminismError, match=r"TaskScheduled #0 'a'.*named 'b'"):
        replay.feed(h.task_scheduled(TS, 0, "a", "null"))
    replay = started_replay([activity("a")])
    with pytest.raises(NonDeterminismError, match=r"produced an activity #0 named 'a'"):
        replay.feed(h.timer_created(TS, 0, TS))
    replay = started_replay([])
    with pytest.raises(NonDeterminismError, match=r"has not \(yet\?\) scheduled"):
        replay.feed(h.task_scheduled(TS, 0, "a", "null"))


def test_extending_is_refused_when_a_full_replay_would_number_differently() -> None:
    replay = started_replay([when_any(activity("a"), retry("r", 3))])
    replay.feed(h.task_scheduled(TS, 0, "a", "null"))
    replay.feed(h.task_scheduled(TS, 1, "r", "null"))
    replay.feed(h.task_completed(TS, 0, "1"))
    assert done(replay)
    grown = [when_any(activity("a"), retry("r", 3)), activity("next")]
    assert replay.can_extend(grown)
    # The losing retry fails afterwards and takes number 2 for its timer; a full replay
    # would have issued "next" first, so extending is no longer equivalent.
    replay.feed(h.task_failed(TS, 1, "boom", None))
    assert not replay.can_extend(grown)
    assert not replay.can_extend([activity("changed")])


def test_nested_compounds_through_the_sdk_get_depth_first_numbers(engine: DurableEngine) -> None:
    engine.start_new("nested_compounds", "nested")
    engine.run_until_idle(until=None)
    status = engine.get_status("nested", show_history=True)
    assert status is not None
    assert status.runtime_status is RuntimeStatus.COMPLETED
    assert status.output == [2, [4, 9], "timer"]
    assert episodes(status.history)[0] == [
        "ExecutionStarted nested_compounds",
        "TaskScheduled#0 double",
        "TaskScheduled#1 double",
        "TaskScheduled#2 square",
        "TimerCreated#3",
    ]
