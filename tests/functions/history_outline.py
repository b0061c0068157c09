"""A compact, readable rendering of a history, so tests can assert it event by event."""

from __future__ import annotations

from typing import Any

_NAMES = {
    0: "ExecutionStarted",
    1: "ExecutionCompleted",
    3: "ExecutionTerminated",
    4: "TaskScheduled",
    5: "TaskCompleted",
    6: "TaskFailed",
    7: "SubOrchestrationInstanceCreated",
    8: "SubOrchestrationInstanceCompleted",
    9: "SubOrchestrationInstanceFailed",
    10: "TimerCreated",
    11: "TimerFired",
    12: "OrchestratorStarted",
    13: "OrchestratorCompleted",
    14: "EventSent",
    15: "EventRaised",
    16: "ContinueAsNew",
}


def outline(events: list[dict[str, Any]] | None) -> list[str]:
    """``TaskScheduled#0 double``, ``TaskCompleted->0``, ``EventRaised Approval``, ..."""
    assert events is not None, "the status was read without history"
    lines = []
    for event in events:
        kind = event["EventType"]
        line = _NAMES.get(kind, str(kind))
        if event["EventId"] >= 0:
            line += f"#{event['EventId']}"
        if kind in (5, 6, 8, 9):
            line += f"->{event['TaskScheduledId']}"
        elif kind == 11:
            line += f"->{event['TimerId']}"
        if kind in (0, 4, 7, 15):
            line += f" {event['Name']}"
        elif kind == 14:
            line += f" {event['InstanceId']}"
        elif kind == 1:
            line += f" {event['OrchestrationStatus']}"
        lines.append(line)
    return lines


def episodes(events: list[dict[str, Any]] | None) -> list[list[str]]:
    """The outline split into episodes (each from OrchestratorStarted to
    OrchestratorCompleted), which makes long histories easier to read in a test."""
    groups: list[list[str]] = []
    for line in outline(events):
        if line == "OrchestratorStarted":
            groups.append([])
        elif line != "OrchestratorCompleted":
            groups[-1].append(line)
    return groups
