"""A small app that uses every trigger devhost serves outside the durable engine."""

from __future__ import annotations

import json
from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

received: dict[str, list[Any]] = {"many": [], "one": [], "flaky": [], "timer": []}
flaky_failures_left = {"count": 0}


@app.route(route="echo/{name}/{count:int?}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = req.get_body().decode() if req.get_body() else ""
    payload = {
        "method": req.method,
        "route": dict(req.route_params),
        "query": dict(req.params),
        "body": body,
    }
    return func.HttpResponse(
        json.dumps(payload), status_code=201, headers={"X-Echo": "yes"}, mimetype="application/json"
    )


@app.route(route="open", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def open_route(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("open", mimetype="text/plain")


@app.route(route="admin/thing", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def admin_route(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("exploded")


@app.timer_trigger(schedule="0 */5 * * * *", arg_name="timer", run_on_startup=True)
def every_five_minutes(timer: func.TimerRequest) -> None:
    received["timer"].append(timer.past_due)


@app.event_hub_message_trigger(
    arg_name="events", event_hub_name="ticks", connection="TicksConnection", cardinality="many"
)
def on_ticks(events: list[func.EventHubEvent]) -> None:
    received["many"].append(
        [(e.partition_key, e.sequence_number, json.loads(e.get_body())) for e in events]
    )


@app.event_hub_message_trigger(
    arg_name="event",
    event_hub_name="ticks",
    connection="TicksConnection",
    cardinality="one",
    consumer_group="audit",
)
async def on_tick_one(event: func.EventHubEvent) -> None:
    received["one"].append((event.partition_key, event.sequence_number))


@app.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:00:01")
@app.event_hub_message_trigger(
    arg_name="events", event_hub_name="orders", connection="TicksConnection", cardinality="many"
)
def flaky(events: list[func.EventHubEvent]) -> None:
    received["flaky"].append([e.sequence_number for e in events])
    if flaky_failures_left["count"] > 0:
        flaky_failures_left["count"] -= 1
        raise RuntimeError("transient")
