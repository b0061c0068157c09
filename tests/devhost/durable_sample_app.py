"""An app whose HTTP functions drive orchestrations through the real durable client."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(
        req.route_params["name"], None, json.loads(body) if body else None
    )
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response


@app.route(route="run/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"], None, json.loads(req.get_body()))
    response: func.HttpResponse = await client.wait_for_completion_or_create_check_status_response(
        req, instance_id, timeout_in_milliseconds=10_000, retry_interval_in_milliseconds=50
    )
    return response


@app.route(route="tally/{key}/{op}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def signal(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    entity = df.EntityId("tally", req.route_params["key"])
    await client.signal_entity(entity, req.route_params["op"], json.loads(req.get_body()))
    return func.HttpResponse(status_code=202)


@app.route(route="tally/{key}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def read(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    state = await client.read_entity_state(df.EntityId("tally", req.route_params["key"]))
    return func.HttpResponse(
        json.dumps({"exists": state.entity_exists, "state": state.entity_state}),
        mimetype="application/json",
    )


@app.route(route="status/{id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    found = await client.get_status(req.route_params["id"])
    runtime = found.runtime_status.value if found.runtime_status else None
    return func.HttpResponse(json.dumps({"runtimeStatus": runtime}), mimetype="application/json")


@app.activity_trigger(input_name="text")
def shout(text: str) -> str:
    return text.upper()


@app.activity_trigger(input_name="text")
def exclaim(text: str) -> str:
    return text + "!"


@app.orchestration_trigger(context_name="context")
def greeting(context: df.DurableOrchestrationContext) -> Generator[Any, Any, str]:
    loud = yield context.call_activity("shout", context.get_input())
    result: str = yield context.call_activity("exclaim", loud)
    return result


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    decision = yield context.wait_for_external_event("decision")
    return {"decision": decision}


@app.entity_trigger(context_name="context")
def tally(context: df.DurableEntityContext) -> None:
    total = context.get_state(lambda: 0)
    if context.operation_name == "add":
        total += int(context.get_input())
    context.set_state(total)
