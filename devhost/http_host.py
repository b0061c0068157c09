"""HTTP triggers served the way the Functions host serves them: ``/<prefix>/<route>`` with
route parameters, methods and auth levels, the request handed over as
``azure.functions.HttpRequest`` and the function's ``HttpResponse`` sent back unchanged."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from aiohttp import web

from devhost.app_index import AppIndex, FunctionSpec, UnsupportedApp
from devhost.invoke import invoke
from devhost.routes import RouteTemplate, compile_route

log = logging.getLogger("devhost.http")

FUNCTION_KEY_HEADER = "x-functions-key"


@dataclass(frozen=True)
class HostKeys:
    """Function keys open ``function``-level routes; the master key opens every route,
    ``admin`` ones included."""

    function_keys: frozenset[str]
    master_key: str

    @classmethod
    def generate(cls) -> HostKeys:
        return cls(frozenset({secrets.token_urlsafe(24)}), secrets.token_urlsafe(32))

    def allows(self, auth_level: str, presented: str | None) -> bool:
        if auth_level == "anonymous":
            return True
        if not presented:
            return False
        if hmac.compare_digest(presented, self.master_key):
            return True
        if auth_level == "admin":
            return False
        return any(hmac.compare_digest(presented, key) for key in self.function_keys)


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    template: RouteTemplate
    methods: frozenset[str]
    auth_level: str


ClientPayload = Callable[[], str]


@dataclass
class HttpHost:
    index: AppIndex
    keys: HostKeys
    route_prefix: str = "api"
    client_payload: ClientPayload | None = None
    executor: Executor | None = None
    disabled: frozenset[str] = frozenset()  # answered for the master key only
    routes: list[HttpRoute] = field(init=False)

    def __post_init__(self) -> None:
        routes = []
        for spec in self.index.http:
            if spec.client_param is not None and self.client_payload is None:
                raise UnsupportedApp(f"{spec.name}: needs a durable client, and none is configured")
            trigger = spec.trigger
            methods = trigger.get("methods") or ["GET", "POST", "PUT", "DELETE", "PATCH"]
            routes.append(
                HttpRoute(
                    spec,
                    compile_route(str(trigger.get("route") or spec.name), self.route_prefix),
                    frozenset(str(m).upper() for m in methods),
                    str(trigger.get("authLevel") or "function").lower(),
                )
            )
        # Literal segments beat parameters, the way ASP.NET routing orders templates.
        routes.sort(key=lambda r: -r.template.literal_segments)
        self.routes = routes

    def find(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for route in self.routes:
            params = route.template.match(path)
            if params is not None and method.upper() in route.methods:
                return route, params
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        found = self.find(request.method, request.path)
        if found is None:
            return web.Response(status=404)
        route, route_params = found
        presented = request.headers.get(FUNCTION_KEY_HEADER) or request.query.get("code")
        if route.spec.name in self.disabled and not self.keys.allows("admin", presented):
            return web.Response(status=404)
        if not self.keys.allows(route.auth_level, presented):
            return web.Response(status=401)
        body = await request.read()
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=route_params,
            body=body,
        )
        kwargs: dict[str, Any] = {route.spec.trigger_param: http_request}
        if route.spec.client_param is not None and self.client_payload is not None:
            kwargs[route.spec.client_param] = self.client_payload()
        try:
            result = await invoke(route.spec, kwargs, self.executor)
        except Exception:
            log.exception(
                "function %s failed", route.spec.name, extra={"function": route.spec.name}
            )
            return web.Response(status=500)
        return to_aiohttp(result)

    def application(
        self, extra: Callable[[web.Application], None] | None = None
    ) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        if extra is not None:
            extra(app)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def to_aiohttp(result: Any) -> web.Response:
    if result is None:
        return web.Response(status=204)
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items() if k.lower() != "content-type"}
        response = web.Response(status=result.status_code, body=result.get_body(), headers=headers)
        content_type = result.headers.get("content-type")
        if content_type:
            response.headers["Content-Type"] = content_type
        elif result.mimetype:
            charset = f"; charset={result.charset}" if result.charset else ""
            response.headers["Content-Type"] = f"{result.mimetype}{charset}"
        return response
    if isinstance(result, str | bytes):
        return web.Response(status=200, body=result.encode() if isinstance(result, str) else result)
    log.error("function returned %s, not an HttpResponse", type(result).__name__)
    return web.Response(status=500)
