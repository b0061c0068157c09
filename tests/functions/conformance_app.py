"""A test-only Functions app whose orchestrations exercise one durable behaviour each.

Module-level dictionaries let tests steer activities (how often to fail) and observe them;
every key is scoped by something the test chooses, so tests do not interfere.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

Orchestration = Generator[Any, Any, Any]

_lock = threading.Lock()
attempts: dict[str, int] = {}
calls: list[tuple[str, Any]] = []
replays: dict[str, int] = {}


def _count_attempt(key: str) -> int:
    with _lock:
        attempts[key] = attempts.get(key, 0) + 1
        return attempts[key]


# -- activities ---------------------------------------------------------------------------


@app.activity_trigger(input_name="value")
def double(value: int) -> int:
    calls.append(("double", value))
    return value * 2


@app.activity_trigger(input_name="value")
def square(value: int) -> int:
    return value * value


@app.activity_trigger(input_name="name")
def greet(name: str) -> str:
    return f"Hello {name}!"


@app.activity_trigger(input_name="request")
def flaky(request: dict[str, Any]) -> str:
    """Fails the first ``fail_times`` attempts for ``key``."""
    attempt = _count_attempt(str(request["key"]))
    if attempt <= int(request["fail_times"]):
        raise ValueError(f"attempt {attempt} failed")
    return f"succeeded on attempt {attempt}"


@app.activity_trigger(input_name="payload", activity="RecordPayload")
async def record_payload(payload: Any) -> dict[str, Any]:
    """An async activity with a declared activity name: echoes the decoded input's type."""
    return {"type": type(payload).__name__, "value": payload}


@app.activity_trigger(input_name="value")
def activity_a(value: Any) -> str:
    return "a"


@app.activity_trigger(input_name="value")
def activity_b(value: Any) -> str:
    return "b"


# -- orchestrators --------------------------------------------------------------------------


@app.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext) -> Orchestration:
    first = yield context.call_activity("double", context.get_input())
    second = yield context.call_activity("double", first)
    third = yield context.call_activity("double", second)
    return [first, second, third]


@app.orchestration_trigger(context_name="context")
def hello_sequence(context: df.DurableOrchestrationContext) -> Orchestration:
    results = []
    for city in ("Tokyo", "Seattle", "London"):
        results.append((yield context.call_activity("greet", city)))
    return results


@app.orchestration_trigger(context_name="context")
def fan_out_fan_in(context: df.DurableOrchestrationContext) -> Orchestration:
    count = int(context.get_input())
    squares = yield context.task_all([context.call_activity("square", i) for i in range(count)])
    total = yield context.call_activity("double", sum(squares))
    return {"squares": squares, "total": total}


@app.orchestration_trigger(context_name="context")
def with_retry(context: df.DurableOrchestrationContext) -> Orchestration:
    request = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=3)
    try:
        return (yield context.call_activity_with_retry("flaky", options, request))
    except Exception as error:
        if request.get("catch"):
            return f"gave up: {error}".split("\n")[0]
        raise


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext) -> Orchestration:
    minutes = int(context.get_input())
    deadline = context.current_utc_datetime + timedelta(minutes=minutes)
    timer = context.create_timer(deadline)
    answer = context.wait_for_external_event("Approval")
    winner = yield context.task_any([answer, timer])
    if winner == answer:
        timer.cancel()
        confirmation = yield context.call_activity("greet", str(answer.result))
        return {"approved": answer.result, "confirmation": confirmation}
    return {"approved": None, "timed_out_at": context.current_utc_datetime.isoformat()}


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext) -> Orchestration:
    request = context.get_input()
    try:
        result = yield context.call_sub_orchestrator(
            "child", request, instance_id=request.get("child_id")
        )
        return {"child": result}
    except Exception as error:
        return {"child_failed": str(error).split("\n")[0]}


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext) -> Orchestration:
    request = context.get_input()
    doubled = yield context.call_activity("double", request["value"])
    if request.get("fail"):
        raise ValueError(f"child refuses {doubled}")
    return doubled


@app.orchestration_trigger(context_name="context")
def parent_with_retry(context: df.DurableOrchestrationContext) -> Orchestration:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=2)
    result = yield context.call_sub_orchestrator_with_retry(
        "flaky_child", options, context.get_input()
    )
    return result


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext) -> Orchestration:
    request = context.get_input()
    outcome = yield context.call_activity("flaky", request)
    return outcome


@app.entity_trigger(context_name="context")
def counter(context: df.DurableEntityContext) -> None:
    value = context.get_state(lambda: 0)
    operation = context.operation_name
    if operation == "add":
        value += context.get_input()
        context.set_state(value)
        context.set_result(value)
    elif operation == "get":
        context.set_result(value)
    elif operation == "fail":
        raise RuntimeError("counter cannot fail on demand")
    elif operation == "delete":
        context.destruct_on_exit()


@app.orchestration_trigger(context_name="context")
def entity_user(context: df.DurableOrchestrationContext) -> Orchestration:
    entity = df.EntityId("Counter", context.get_input())
    context.signal_entity(entity, "add", 5)
    after_add = yield context.call_entity(entity, "add", 2)
    current = yield context.call_entity(entity, "get")
    try:
        yield context.call_entity(entity, "fail")
        failure = None
    except Exception as error:
        failure = str(error)
    return {"after_add": after_add, "current": current, "failure": failure}


@app.orchestration_trigger(context_name="context")
def eternal_counter(context: df.DurableOrchestrationContext) -> Orchestration:
    state = context.get_input()
    generation = int(state["generation"])
    total = int(state["total"])
    if generation >= int(state["last"]):
        return {"generation": generation, "total": total}
    bump = yield context.wait_for_external_event("bump")
    context.continue_as_new(
        {"generation": generation + 1, "total": total + int(bump), "last": state["last"]}
    )
    return None


@app.orchestration_trigger(context_name="context")
def waits_forever(context: df.DurableOrchestrationContext) -> Orchestration:
    yield context.call_activity("double", 1)
    yield context.wait_for_external_event("never")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def reports_progress(context: df.DurableOrchestrationContext) -> Orchestration:
    context.set_custom_status("greeting")
    greeting = yield context.call_activity("greet", "status")
    context.set_custom_status({"step": 2, "greeting": greeting})
    yield context.wait_for_external_event("go")
    return "done"


@app.orchestration_trigger(context_name="context")
def nondeterministic(context: df.DurableOrchestrationContext) -> Orchestration:
    """Chooses its activity from a module-level counter, so a replay takes another path."""
    key = context.instance_id
    seen = replays.get(key, 0)
    replays[key] = seen + 1
    first = yield context.call_activity("activity_a" if seen == 0 else "activity_b", None)
    second = yield context.call_activity("double", 1)
    return [first, second]


@app.orchestration_trigger(context_name="context")
def raises_after_activity(context: df.DurableOrchestrationContext) -> Orchestration:
    doubled = yield context.call_activity("double", 21)
    raise RuntimeError(f"boom after {doubled}")


@app.orchestration_trigger(context_name="context")
def payloads(context: df.DurableOrchestrationContext) -> Orchestration:
    results = []
    for payload in context.get_input():
        results.append((yield context.call_activity("RecordPayload", payload)))
    return results


@app.orchestration_trigger(context_name="context")
def all_fail_fast(context: df.DurableOrchestrationContext) -> Orchestration:
    """task_all fails as soon as one child fails in Python, but the extension's WhenAll waits
    for the others before anything after it is scheduled."""
    failing = context.call_activity("flaky", {"key": context.instance_id, "fail_times": 9})
    slow = context.wait_for_external_event("slow")
    failure = None
    try:
        yield context.task_all([failing, slow])
    except Exception as error:
        failure = str(error).split(" \n")[0]
    after = yield context.call_activity("double", 4)
    return {"after": after, "failure": failure}


@app.orchestration_trigger(context_name="context")
def calls_missing_activity(context: df.DurableOrchestrationContext) -> Orchestration:
    yield context.call_activity("does_not_exist", 1)
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def waits_for_two_events(context: df.DurableOrchestrationContext) -> Orchestration:
    first = yield context.wait_for_external_event("first")
    second = yield context.wait_for_external_event("second")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def counted_chain(context: df.DurableOrchestrationContext) -> Orchestration:
    """``input`` activities one after the other: a history that grows by four events a step."""
    total = 0
    for step in range(int(context.get_input())):
        total += yield context.call_activity("square", step)
    return total


@app.orchestration_trigger(context_name="context")
def long_sleep(context: df.DurableOrchestrationContext) -> Orchestration:
    """A timer longer than the storage provider's longest: the SDK splits it."""
    wake_at = context.current_utc_datetime + timedelta(days=int(context.get_input()))
    yield context.create_timer(wake_at)
    return context.current_utc_datetime.isoformat()


@app.activity_trigger(input_name="value")
def burn_cpu(value: int) -> dict[str, object]:
    """A CPU-bound activity: reports the process it ran in, and the cores it may use."""
    import os

    total = sum(i * i for i in range(int(value)))
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {"pid": os.getpid(), "total": total, "cores": cores}


@app.orchestration_trigger(context_name="context")
def cpu_fan_out(context: df.DurableOrchestrationContext) -> Orchestration:
    results = yield context.task_all(
        [context.call_activity("burn_cpu", 20_000) for _ in range(int(context.get_input()))]
    )
    return results


@app.orchestration_trigger(context_name="context")
def nested_compounds(context: df.DurableOrchestrationContext) -> Orchestration:
    """A WhenAll holding a WhenAll and a WhenAny: numbers go depth first."""
    first = context.call_activity("double", 1)
    inner = context.task_all(
        [context.call_activity("double", 2), context.call_activity("square", 3)]
    )
    race = context.task_any(
        [
            context.wait_for_external_event("go"),
            context.create_timer(context.current_utc_datetime + timedelta(hours=1)),
        ]
    )
    outer = yield context.task_all([first, inner, race])
    return [outer[0], outer[1], "event" if outer[2].result == "now" else "timer"]


replay_flags: dict[str, list[tuple[int, bool]]] = {}


@app.orchestration_trigger(context_name="context")
def notes_replaying(context: df.DurableOrchestrationContext) -> Orchestration:
    """Records, each time its code runs, whether the SDK says it is replaying (test only)."""
    notes = replay_flags.setdefault(context.instance_id, [])
    notes.append((0, context.is_replaying))
    yield context.call_activity("double", 1)
    notes.append((1, context.is_replaying))
    yield context.call_activity("double", 2)
    notes.append((2, context.is_replaying))
    return len(notes)
