"""History events in the shape the Durable Task Framework serialises them (Newtonsoft, the
property names of DurableTask.Core's event classes), which is what the Python SDK reads.

Every event carries ``EventType``, ``EventId``, ``IsPlayed`` and ``Timestamp``. Events that
schedule work (TaskScheduled, TimerCreated, SubOrchestrationInstanceCreated, EventSent) and
the execution's completion carry the orchestration's sequence number as ``EventId``; the
others carry -1 and point at their task through ``TaskScheduledId`` or ``TimerId``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

Event = dict[str, Any]


class EventType(IntEnum):
    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    GENERIC_EVENT = 17
    HISTORY_STATE = 18
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20


# Events that complete a task, and the field naming the task they complete.
COMPLETION_KEYS: dict[int, str] = {
    EventType.TASK_COMPLETED: "TaskScheduledId",
    EventType.TASK_FAILED: "TaskScheduledId",
    EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED: "TaskScheduledId",
    EventType.SUB_ORCHESTRATION_INSTANCE_FAILED: "TaskScheduledId",
    EventType.TIMER_FIRED: "TimerId",
}

_COMPACT = (",", ":")


def format_ts(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``, the form the SDK itself writes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def dumps(event: Event) -> str:
    return json.dumps(event, separators=_COMPACT)


def played(event: Event) -> Event:
    """The same event as it appears in a later replay."""
    if event.get("IsPlayed"):
        return event
    copy = dict(event)
    copy["IsPlayed"] = True
    return copy


def _base(event_type: EventType, event_id: int, ts: str) -> Event:
    return {"EventType": int(event_type), "EventId": event_id, "IsPlayed": False, "Timestamp": ts}


def orchestrator_started(ts: str) -> Event:
    return _base(EventType.ORCHESTRATOR_STARTED, -1, ts)


def orchestrator_completed(ts: str) -> Event:
    return _base(EventType.ORCHESTRATOR_COMPLETED, -1, ts)


def execution_started(
    ts: str,
    *,
    name: str,
    instance_id: str,
    execution_id: str,
    input_json: str | None,
    parent: dict[str, Any] | None,
) -> Event:
    event = _base(EventType.EXECUTION_STARTED, -1, ts)
    event.update(
        {
            "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id},
            "ParentInstance": parent,
            "Name": name,
            # The SDK reads Version unconditionally; the extension sends "" by default.
            "Version": "",
            "Input": input_json,
        }
    )
    return event


def task_scheduled(ts: str, seq: int, name: str, input_json: str | None) -> Event:
    event = _base(EventType.TASK_SCHEDULED, seq, ts)
    event.update({"Name": name, "Version": "", "Input": input_json})
    return event


def task_completed(ts: str, seq: int, result_json: str | None) -> Event:
    event = _base(EventType.TASK_COMPLETED, -1, ts)
    event.update({"TaskScheduledId": seq, "Result": result_json})
    return event


def task_failed(ts: str, seq: int, reason: str, details: str | None) -> Event:
    event = _base(EventType.TASK_FAILED, -1, ts)
    event.update({"TaskScheduledId": seq, "Reason": reason, "Details": details})
    return event


def sub_orchestration_created(
    ts: str, seq: int, name: str, instance_id: str, input_json: str | None
) -> Event:
    event = _base(EventType.SUB_ORCHESTRATION_INSTANCE_CREATED, seq, ts)
    event.update({"Name": name, "Version": "", "InstanceId": instance_id, "Input": input_json})
    return event


def sub_orchestration_completed(ts: str, seq: int, result_json: str | None) -> Event:
    event = _base(EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED, -1, ts)
    event.update({"TaskScheduledId": seq, "Result": result_json})
    return event


def sub_orchestration_failed(ts: str, seq: int, reason: str, details: str | None) -> Event:
    event = _base(EventType.SUB_ORCHESTRATION_INSTANCE_FAILED, -1, ts)
    event.update({"TaskScheduledId": seq, "Reason": reason, "Details": details})
    return event


def timer_created(ts: str, seq: int, fire_at: str) -> Event:
    event = _base(EventType.TIMER_CREATED, seq, ts)
    event["FireAt"] = fire_at
    return event


def timer_fired(ts: str, seq: int, fire_at: str) -> Event:
    event = _base(EventType.TIMER_FIRED, -1, ts)
    event.update({"TimerId": seq, "FireAt": fire_at})
    return event


def event_sent(ts: str, seq: int, target: str, name: str, input_json: str) -> Event:
    event = _base(EventType.EVENT_SENT, seq, ts)
    event.update({"InstanceId": target, "Name": name, "Input": input_json})
    return event


def event_raised(ts: str, name: str, input_json: str | None) -> Event:
    event = _base(EventType.EVENT_RAISED, -1, ts)
    event.update({"Name": name, "Input": input_json})
    return event


def execution_terminated(ts: str, reason: str | None) -> Event:
    event = _base(EventType.EXECUTION_TERMINATED, -1, ts)
    event["Input"] = reason
    return event


def execution_completed(
    ts: str, seq: int, status: str, result: str | None, details: str | None = None
) -> Event:
    """``result`` is the output's JSON when completed, the reason text when failed or
    terminated (as the framework records them)."""
    event = _base(EventType.EXECUTION_COMPLETED, seq, ts)
    event.update({"OrchestrationStatus": status, "Result": result})
    if details is not None:
        event["Details"] = details
    return event


def continue_as_new(ts: str, seq: int, input_json: str | None) -> Event:
    event = _base(EventType.CONTINUE_AS_NEW, seq, ts)
    event["Result"] = input_json
    return event


def describe(event: Event) -> str:
    """A short human description, for non-determinism messages and debugging."""
    kind = EventType(event["EventType"]).name.title().replace("_", "")
    parts = [kind]
    if event.get("EventId", -1) >= 0:
        parts.append(f"#{event['EventId']}")
    if event.get("Name"):
        parts.append(repr(event["Name"]))
    if event["EventType"] == EventType.EVENT_SENT:
        parts.append(f"to {event.get('InstanceId')!r}")
    return " ".join(parts)
