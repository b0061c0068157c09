"""The orchestrations the durable benchmark runs: small, cheap activities so that what is
measured is the host's work, not the activities'."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

app = df.DFApp()

Orchestration = Generator[Any, Any, Any]


@app.activity_trigger(input_name="value")
def add_one(value: int) -> int:
    return value + 1


@app.activity_trigger(input_name="value")
def times_two(value: int) -> int:
    return value * 2


@app.activity_trigger(input_name="value")
def minus_three(value: int) -> int:
    return value - 3


@app.orchestration_trigger(context_name="context")
def chain3(context: df.DurableOrchestrationContext) -> Orchestration:
    value = yield context.call_activity("add_one", context.get_input())
    value = yield context.call_activity("times_two", value)
    value = yield context.call_activity("minus_three", value)
    return value


@app.orchestration_trigger(context_name="context")
def fanout20(context: df.DurableOrchestrationContext) -> Orchestration:
    base = int(context.get_input())
    values = yield context.task_all([context.call_activity("add_one", base + i) for i in range(20)])
    return sum(values)


@app.orchestration_trigger(context_name="context")
def sequential(context: df.DurableOrchestrationContext) -> Orchestration:
    """One activity after another: the history grows by four events per step (scheduled,
    completed, and the episode's started/completed markers)."""
    value = 0
    for _ in range(int(context.get_input())):
        value = yield context.call_activity("add_one", value)
    return value
