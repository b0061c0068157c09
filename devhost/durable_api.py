"""The Durable HTTP API, served by devhost for the real ``DurableOrchestrationClient``.

Two mounts of the same handlers:

* ``/runtime/webhooks/durabletask/...`` — the public management API, whose URLs
  ``create_check_status_response`` hands out; every call needs the system key in ``code``.
* ``/_devhost/rpc/durabletask/...`` — what the client binding's ``rpcBaseUrl`` points at.
  The client sends no key on these calls (the Functions host serves them on a loopback-only
  port); devhost itself only listens on loopback.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from aiohttp import web

from devhost.durable import (
    DurableEngine,
    ExistingInstance,
    FunctionNotFound,
    InstanceAlreadyExists,
    InstanceNotFound,
    InstanceNotRunning,
    InstanceStillRunning,
    OrchestrationStatus,
    RuntimeStatus,
)
from devhost.durable.status import EntityRef

PUBLIC_PREFIX = "/runtime/webhooks/durabletask"
RPC_PREFIX = "/_devhost/rpc/durabletask"
INSTANCE_PLACEHOLDER = "INSTANCEID"
CONNECTION = "Storage"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@functools.lru_cache(maxsize=32)
def client_payload(base_url: str, hub: str, key: str) -> str:
    """The durable client binding's JSON, with every URL pointing at devhost (the same
    text for every invocation of a run: built once)."""
    public = f"{base_url}{PUBLIC_PREFIX}"
    return json.dumps(
        {
            "taskHubName": hub,
            "creationUrls": {
                "createNewInstancePostUri": f"{public}/orchestrators/{{functionName}}"
                f"[/{{instanceId}}]?code={quote(key)}",
                "createAndWaitOnNewInstancePostUri": f"{public}/orchestrators/{{functionName}}"
                f"[/{{instanceId}}]?timeout={{timeoutInSeconds}}&"
                f"pollingInterval={{intervalInSeconds}}&code={quote(key)}",
            },
            "managementUrls": management_urls(base_url, hub, key, INSTANCE_PLACEHOLDER),
            "baseUrl": public,
            "requiredQueryStringParameters": f"code={quote(key)}",
            "rpcBaseUrl": f"{base_url}{RPC_PREFIX}/",
        }
    )


def management_urls(base_url: str, hub: str, key: str, instance_id: str) -> dict[str, str]:
    public = f"{base_url}{PUBLIC_PREFIX}"
    query = f"taskHub={quote(hub)}&connection={CONNECTION}&code={quote(key)}"
    instance = f"{public}/instances/{instance_id}"
    return {
        "id": instance_id,
        "purgeHistoryDeleteUri": f"{instance}?{query}",
        "restartPostUri": f"{instance}/restart?{query}",
        "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
        "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
        "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
        "statusQueryGetUri": f"{instance}?{query}",
        "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
        "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
    }


def payload_json(body: str) -> str | None:
    """The JSON text of a start/raise/signal body.

    The durable clients serialise the payload to JSON and then send that text as a JSON
    string (``"{\\"a\\": 1}"``); curl users send the JSON itself. A body that is a JSON
    string whose content is JSON again is the first kind and is unwrapped once. (So a bare
    JSON string whose text happens to be JSON, such as ``"123"``, arrives as ``123``.)
    Raises ``json.JSONDecodeError`` for a body that is not JSON.
    """
    text = body.strip()
    if not text:
        return None
    value = json.loads(text)
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return text
        return value
    return text


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() == "true"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"Message": message, "ExceptionMessage": message}, status=status)


class DurableApi:
    def __init__(self, engine: DurableEngine, key: str, hub: str) -> None:
        self.engine = engine
        self.key = key
        self.hub = hub

    async def _blocking(self, call: Callable[[], Any], *, short: bool = False) -> Any:
        """Engine calls take its lock and touch SQLite: keep them off the event loop, except
        a ``short`` one (one instance or entity) while the engine is free: that one runs in
        place, which spares two thread hand-overs on the way from a durable client's start
        to the orchestration's first episode."""
        if short:
            done, result = self.engine.call_if_free(call)
            if done:
                return result
        return await asyncio.get_running_loop().run_in_executor(None, call)

    def _guard(self, handler: Handler, *, keyed: bool) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if keyed:
                presented = request.query.get("code") or request.headers.get("x-functions-key")
                if not presented or not hmac.compare_digest(presented, self.key):
                    return web.Response(status=401)
            return await handler(request)

        return guarded

    def add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("POST", "/orchestrators/{name}", self.start),
            ("POST", "/orchestrators/{name}/{instance_id}", self.start),
            ("GET", "/instances", self.query),
            ("GET", "/instances/", self.query),
            ("DELETE", "/instances", self.purge_by),
            ("DELETE", "/instances/", self.purge_by),
            ("GET", "/instances/{instance_id}", self.status),
            ("DELETE", "/instances/{instance_id}", self.purge),
            ("POST", "/instances/{instance_id}/raiseEvent/{event}", self.raise_event),
            ("POST", "/instances/{instance_id}/terminate", self.terminate),
            ("POST", "/entities/{name}/{key}", self.signal),
            ("GET", "/entities/{name}/{key}", self.read_entity),
        ]
        for prefix, keyed in ((PUBLIC_PREFIX, True), (RPC_PREFIX, False)):
            for method, path, handler in routes:
                app.router.add_route(method, prefix + path, self._guard(handler, keyed=keyed))

    def _urls(self, request: web.Request, instance_id: str) -> dict[str, str]:
        base = f"{request.scheme}://{request.host}"
        return management_urls(base, self.hub, self.key, quote(instance_id, safe=""))

    async def start(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        instance_id = request.match_info.get("instance_id")
        try:
            input_json = payload_json(await request.text())
        except json.JSONDecodeError as error:
            return _error(400, f"the request body is not JSON: {error}")
        try:
            started = await self._blocking(
                partial(
                    self.engine.start_new,
                    name,
                    instance_id or None,
                    input_json=input_json,
                    if_exists=ExistingInstance.REFUSE,
                ),
                short=True,
            )
        except FunctionNotFound as error:
            return _error(400, str(error))
        except InstanceAlreadyExists as error:
            return _error(409, str(error))
        urls = self._urls(request, started)
        return web.json_response(urls, status=202, headers={"Location": urls["statusQueryGetUri"]})

    async def status(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        show_history = _flag(request, "showHistory")
        status: OrchestrationStatus | None = await self._blocking(
            partial(self.engine.get_status, instance_id, show_history=show_history),
            short=not show_history,
        )
        if status is None:
            return web.json_response(None, status=404)
        body = status.to_dict()
        if not _flag(request, "showInput") and request.query.get("showInput") is not None:
            body["input"] = None
        if show_history and status.history is not None:
            body["historyEvents"] = status.history
        runtime = status.runtime_status
        if runtime in (
            RuntimeStatus.PENDING,
            RuntimeStatus.RUNNING,
            RuntimeStatus.CONTINUED_AS_NEW,
        ):
            location = self._urls(request, instance_id)["statusQueryGetUri"]
            return web.json_response(body, status=202, headers={"Location": location})
        if runtime is RuntimeStatus.FAILED and _flag(request, "returnInternalServerErrorOnFailure"):
            return web.json_response(body, status=500)
        return web.json_response(body, status=200)

    async def query(self, request: web.Request) -> web.Response:
        statuses = None
        if request.query.get("runtimeStatus"):
            try:
                statuses = [
                    RuntimeStatus(s.strip()) for s in request.query["runtimeStatus"].split(",")
                ]
            except ValueError as error:
                return _error(400, str(error))
        try:
            created_from = _date(request.query.get("createdTimeFrom"))
            created_to = _date(request.query.get("createdTimeTo"))
            top = int(request.query["top"]) if request.query.get("top") else None
        except ValueError as error:
            return _error(400, str(error))
        rows: list[OrchestrationStatus] = await self._blocking(
            partial(
                self.engine.query,
                runtime_status=statuses,
                created_from=created_from,
                created_to=created_to,
                instance_id_prefix=request.query.get("instanceIdPrefix") or None,
                top=top,
            )
        )
        return web.json_response([row.to_dict() for row in rows])

    async def purge(self, request: web.Request) -> web.Response:
        try:
            deleted = await self._blocking(
                partial(self.engine.purge, request.match_info["instance_id"])
            )
        except InstanceStillRunning as error:
            return _error(400, str(error))
        if not deleted:
            return web.json_response(None, status=404)
        return web.json_response({"instancesDeleted": 1})

    async def purge_by(self, request: web.Request) -> web.Response:
        try:
            statuses = (
                [RuntimeStatus(s.strip()) for s in request.query["runtimeStatus"].split(",")]
                if request.query.get("runtimeStatus")
                else None
            )
            count = await self._blocking(
                partial(
                    self.engine.purge_instances,
                    created_from=_date(request.query.get("createdTimeFrom")),
                    created_to=_date(request.query.get("createdTimeTo")),
                    runtime_status=statuses,
                )
            )
        except ValueError as error:
            return _error(400, str(error))
        if count == 0:
            return web.json_response(None, status=404)
        return web.json_response({"instancesDeleted": count})

    async def raise_event(self, request: web.Request) -> web.Response:
        try:
            data_json = payload_json(await request.text())
            await self._blocking(
                partial(
                    self.engine.raise_event,
                    request.match_info["instance_id"],
                    request.match_info["event"],
                    data_json=data_json,
                ),
                short=True,
            )
        except json.JSONDecodeError as error:
            return _error(400, f"the request body is not JSON: {error}")
        except InstanceNotFound:
            return web.json_response(None, status=404)
        except InstanceNotRunning:
            return web.json_response(None, status=410)
        return web.Response(status=202)

    async def terminate(self, request: web.Request) -> web.Response:
        try:
            await self._blocking(
                partial(
                    self.engine.terminate,
                    request.match_info["instance_id"],
                    request.query.get("reason"),
                ),
                short=True,
            )
        except InstanceNotFound:
            return web.json_response(None, status=404)
        except InstanceNotRunning:
            return web.json_response(None, status=410)
        return web.Response(status=202)

    async def signal(self, request: web.Request) -> web.Response:
        operation = request.query.get("op", "")
        try:
            input_json = payload_json(await request.text())
            entity = EntityRef(request.match_info["name"], request.match_info["key"])
            await self._blocking(
                partial(self.engine.signal_entity, entity, operation, input_json=input_json),
                short=True,
            )
        except json.JSONDecodeError as error:
            return _error(400, f"the request body is not JSON: {error}")
        except FunctionNotFound as error:
            return _error(404, str(error))
        return web.Response(status=202)

    async def read_entity(self, request: web.Request) -> web.Response:
        entity = EntityRef(request.match_info["name"], request.match_info["key"])
        status = await self._blocking(partial(self.engine.read_entity, entity), short=True)
        if not status.exists:
            return web.json_response(None, status=404)
        return web.Response(
            status=200, text=status.state_json or "null", content_type="application/json"
        )


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
