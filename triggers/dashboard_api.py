"""The dashboard: ``GET /api/dashboard`` (one HTML page) and ``GET /api/dashboard/data`` (what
it shows, as JSON; the page refreshes from it).

The page is self-contained: its styles and script are inline, allowed by a per-response
nonce in a Content-Security-Policy that allows nothing else (no other origin, no
``eval``, no inline script without the nonce). Its first data is embedded in the page,
so it draws without waiting for a request; the refreshes send the function key the page
was opened with (``?code=``) as the ``x-functions-key`` header.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from adapters.bootstrap import services
from triggers.http_api import RISK_ENTITY, HttpError, desk_route, reply

PAGE = Path(__file__).with_name("static") / "dashboard.html"
NONCE_SLOT = "{{nonce}}"
DATA_SLOT = "{{data}}"
ALLOWED_PARAMS = frozenset({"code"})  # ``code`` carries the function key
# What the page's JSON may not hold as is inside a <script> element: "</script>" or "<!--"
# in a halt reason would end the element early.
SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@cache
def page_template() -> str:
    template = PAGE.read_text(encoding="utf-8")
    if DATA_SLOT not in template or NONCE_SLOT not in template:
        raise RuntimeError(f"{PAGE} has lost its {DATA_SLOT} or {NONCE_SLOT} slot")
    return template


def content_security_policy(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            f"style-src 'nonce-{nonce}'",
            "connect-src 'self'",
            "img-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def render_page(data: Mapping[str, Any], nonce: str) -> str:
    """The page with its nonce and its first data. The nonce goes in first: data inserted
    after it is never searched for slots, whatever text it holds."""
    embedded = json.dumps(data, separators=(",", ":")).translate(SCRIPT_ESCAPES)
    return page_template().replace(NONCE_SLOT, nonce).replace(DATA_SLOT, embedded, 1)


def _check_params(req: func.HttpRequest) -> None:
    for name in req.params:
        if name not in ALLOWED_PARAMS:
            raise HttpError(400, name, "is not a parameter of this route")


async def _data(client: df.DurableOrchestrationClient) -> dict[str, Any]:
    # Imported here: the dashboard's views and figures are a cost only its routes pay,
    # not every cold start of the app.
    from activities.dashboard import dashboard_data

    svc = services()
    found = await client.read_entity_state(df.EntityId(RISK_ENTITY, svc.settings.account))
    state = found.entity_state if found.entity_exists else None
    if isinstance(state, str):  # some hosts hand the state over still serialised
        state = json.loads(state)
    return dashboard_data(svc, state, now=svc.clock.now())


@desk_route("dashboard", ["GET"], func.AuthLevel.FUNCTION)
async def dashboard_page(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    _check_params(req)
    nonce = secrets.token_urlsafe(18)
    return func.HttpResponse(
        render_page(await _data(client), nonce),
        status_code=200,
        mimetype="text/html",
        charset="utf-8",
        headers={
            **NO_STORE,
            "Content-Security-Policy": content_security_policy(nonce),
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        },
    )


@desk_route("dashboard/data", ["GET"], func.AuthLevel.FUNCTION)
async def dashboard_data_route(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    _check_params(req)
    return reply(await _data(client), headers=NO_STORE)
