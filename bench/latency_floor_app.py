"""The smallest app with the trade path's shape, for ``bench.latency``'s floor: an Event Hub
trigger starts one orchestration per event through the durable client; the orchestration
asks an entity, then calls an activity with retries; the activity notes the time where the
desk's would submit to the broker. No validation, signal, audit, books or risk rules: what
is left is the host's and the durable SDK's own cost for that shape."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import orjson

app = df.DFApp()

Orchestration = Generator[Any, Any, Any]


class Arrivals:
    """When each key first arrived, and a condition to wait on."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.arrived = threading.Condition()

    def note(self, key: str) -> None:
        with self.arrived:
            self.at.setdefault(key, time.perf_counter())
            self.arrived.notify_all()


SUBMITTED = Arrivals()
_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)


@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="ticks",
    connection="TICKS_EVENTHUB",
    cardinality="many",
)
@app.durable_client_input(client_name="client")
async def floor_ticks(
    events: list[func.EventHubEvent], client: df.DurableOrchestrationClient
) -> None:
    for event in events:
        body = orjson.loads(event.get_body())
        await client.start_new("floor_trade", f"floor-{event.sequence_number}", body)


@app.orchestration_trigger(context_name="context")
def floor_trade(context: df.DurableOrchestrationContext) -> Orchestration:
    request = context.get_input()
    approved = yield context.call_entity(df.EntityId("FloorRisk", "acct"), "reserve", request)
    if approved:
        yield context.call_activity_with_retry(
            "floor_submit", _RETRY, {"id": context.instance_id, **request}
        )
    return approved


@app.function_name("FloorRisk")
@app.entity_trigger(context_name="context")
def floor_risk(context: df.DurableEntityContext) -> None:
    reserved = context.get_state(lambda: 0) + 1
    context.set_state(reserved)
    context.set_result(True)


@app.activity_trigger(input_name="request")
def floor_submit(request: dict[str, Any]) -> str:
    SUBMITTED.note(str(request["id"]))
    return "submitted"
