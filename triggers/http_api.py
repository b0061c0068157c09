"""The desk's HTTP API: manual orders, their status and cancellation, approvals, positions,
risk, the kill switch and health. ``openapi.json`` describes every route.

Errors are JSON ``{"error": {"field", "reason"}}``; a bad request is a 400, never a 500.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import wraps
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from activities import service
from adapters.bootstrap import services
from adapters.durable_client import instance_exists, start_once
from adapters.observability import telemetry
from domain.alerts import kill_switch_alert
from domain.audit import AuditKind
from domain.errors import ValidationError
from domain.execution import TradeRequest
from domain.risk import RiskLimits, RiskState
from domain.serde import dec_str, parse_ts, require_str, ts_str
from triggers.blueprint import bp
from triggers.ticks import TRADE_ORCHESTRATOR, processor

log = logging.getLogger("desk.http")

RISK_ENTITY = "RiskEntity"
FLATTEN_ORCHESTRATOR = "flatten"
TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}
SHOWN_PLACES = Decimal("0.000001")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
Handler = Callable[..., Awaitable[func.HttpResponse]]


class HttpError(Exception):
    def __init__(self, status: int, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.status = status
        self.field = field
        self.reason = reason


def reply(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        mimetype="application/json",
        headers=dict(headers or {}),
    )


def error(status: int, field: str, reason: str) -> func.HttpResponse:
    return reply({"error": {"field": field, "reason": reason}}, status)


def json_errors(handler: Handler) -> Handler:
    """Validation failures become 400s (or the status an HttpError names)."""

    @wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> func.HttpResponse:
        try:
            return await handler(*args, **kwargs)
        except HttpError as failure:
            return error(failure.status, failure.field, failure.reason)
        except ValidationError as failure:
            return error(400, failure.field, failure.reason)

    return wrapper


def desk_route(
    route: str, methods: list[str], auth_level: func.AuthLevel | None = None
) -> Callable[[Handler], Any]:
    """A route whose handler takes ``(req, client)`` (the durable client) and whose
    validation failures become JSON 400s: the three decorators every desk route wears."""

    def decorate(handler: Handler) -> Any:
        level = {} if auth_level is None else {"auth_level": auth_level}
        with_client = bp.durable_client_input(client_name="client")(json_errors(handler))
        return bp.route(route=route, methods=methods, **level)(with_client)

    return decorate


MAX_BODY_BYTES = 64 * 1024  # a manual order is a few hundred bytes


def body_of(req: func.HttpRequest) -> Any:
    raw = req.get_body()
    if not raw:
        raise HttpError(400, "body", "a JSON body is required")
    if len(raw) > MAX_BODY_BYTES:
        raise HttpError(413, "body", f"larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, "body", "is not valid JSON") from None


def _now() -> datetime:
    return datetime.now(UTC)


def _account(value: object, *, present: bool = False) -> str:
    """The desk's account; ``present`` when the caller named one (it must be a string)."""
    account = services().settings.account
    if present and not isinstance(value, str):
        raise HttpError(400, "account", "must be a string")
    if value not in (None, account):
        raise HttpError(404, "account", f"this desk trades the account {account!r}")
    return account


# -- orders -----------------------------------------------------------------------------------


@desk_route("orders", ["POST"])
async def post_order(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    # Imported here: manual orders are an operator's path; the ticks' path never needs this.
    from domain.manual import ManualOrder, parse_idempotency_key

    svc = services()
    settings = svc.settings
    order = ManualOrder.from_body(body_of(req), default_account=settings.account)
    key = parse_idempotency_key(req.headers.get("Idempotency-Key"))
    now = _now()
    intent = order.intent(
        idempotency_key=key,
        unique=uuid.uuid4().hex,
        ts=now,
        last_price=svc.broker.last_price(order.symbol),
    )
    if key is not None:
        claim = svc.store.claim(
            f"idem:orders:{settings.account}:{key}",
            {"intent_id": intent.intent_id, "fingerprint": order.fingerprint},
            ts=now,
        )
        if claim.value.get("fingerprint") != order.fingerprint:
            raise HttpError(422, "Idempotency-Key", "already used for a different order")
    notional = sum(
        leg.quantity * (leg.worst_price or intent.reference_prices.get(leg.symbol, Decimal(0)))
        for leg in intent.entry_legs
    )
    threshold = settings.approval_notional
    request = TradeRequest(
        intent=intent,
        requires_approval=settings.manual_approval
        or (threshold is not None and notional > threshold),
        approval_timeout_s=settings.approval_timeout_s,
        entry_timeout_s=settings.entry_timeout_s,
        exit_timeout_s=settings.exit_timeout_s,
        poll_interval_s=settings.poll_interval_s,
        initial_limits=settings.risk_limits,
    )
    started = await start_once(client, TRADE_ORCHESTRATOR, intent.intent_id, request.to_dict())
    links = json.loads(client.create_check_status_response(req, intent.intent_id).get_body())
    body = {
        "intent_id": intent.intent_id,
        "created": started,
        "requires_approval": request.requires_approval,
        "links": links,
    }
    return reply(body, 202, {"Location": links["statusQueryGetUri"]})


ORDER_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def _order_id(req: func.HttpRequest) -> str:
    intent_id = str(req.route_params.get("id", ""))
    if not ORDER_ID.match(intent_id):
        # No intent id holds other characters, so no such order exists.
        raise HttpError(404, "id", "no order has an id like that")
    return intent_id


async def _status_of(client: df.DurableOrchestrationClient, intent_id: str) -> Any:
    status = await client.get_status(intent_id)
    if status is None or status.runtime_status is None:
        raise HttpError(404, "id", f"no order {intent_id!r}")
    return status


@desk_route("orders/{id}", ["GET"])
async def get_order(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    intent_id = _order_id(req)
    status = await _status_of(client, intent_id)
    books = services().store.orders_for_intent(intent_id)
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    return reply(
        {
            "intent_id": intent_id,
            "runtime_status": status.runtime_status.value,
            "stage": custom.get("stage"),
            "output": status.output,
            "orders": [o.to_dict() for o in books],
        }
    )


@desk_route("orders/{id}", ["DELETE"])
async def cancel_order(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    intent_id = _order_id(req)
    status = await _status_of(client, intent_id)
    if status.runtime_status.value in TERMINAL:
        raise HttpError(409, "id", f"order {intent_id!r} is already {status.runtime_status.value}")
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    if custom.get("stage") in ("exits", "unwinding"):
        raise HttpError(
            409,
            "id",
            f"order {intent_id!r} has filled; its exits stay until one fills "
            "(the kill switch flattens)",
        )
    await client.raise_event(intent_id, "cancel", {"ts": ts_str(_now())})
    service.record(
        services(),
        AuditKind.MANUAL_ACTION,
        f"{intent_id}:cancel-request",
        ts=_now(),
        correlation={"intent_id": intent_id},
        payload={"action": "cancel"},
    )
    return reply({"intent_id": intent_id, "cancel_requested": True}, 202)


@desk_route("orders/{id}/approval", ["POST"], func.AuthLevel.ADMIN)
async def approve_order(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    intent_id = _order_id(req)
    data = body_of(req)
    if not isinstance(data, dict):
        raise HttpError(400, "body", "must be a JSON object")
    approve = data.get("approve")
    if not isinstance(approve, bool):
        raise HttpError(400, "approve", "must be true or false")
    reason = data.get("reason", "")
    by = data.get("by", "admin")
    if not isinstance(reason, str) or len(reason) > 500:
        raise HttpError(400, "reason", "must be a string of at most 500 characters")
    if not isinstance(by, str) or not by or len(by) > 100:
        raise HttpError(400, "by", "must be a name of 1-100 characters")
    status = await _status_of(client, intent_id)
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    if custom.get("stage") != "awaiting_approval":
        raise HttpError(409, "id", f"order {intent_id!r} is not awaiting approval")
    await client.raise_event(
        intent_id, "approval", {"approve": approve, "reason": reason, "by": by}
    )
    return reply({"intent_id": intent_id, "approve": approve}, 202)


# -- books and risk -------------------------------------------------------------------------


HISTORY_PARAMS = frozenset({"from", "to", "limit", "continuation", "code"})
MAX_PAGE = 500


def _query_ts(req: func.HttpRequest, name: str, default: datetime) -> datetime:
    value = req.params.get(name)
    return default if value is None else parse_ts(value, name)


@bp.route(route="orders", methods=["GET"])
@json_errors
async def order_history(req: func.HttpRequest) -> func.HttpResponse:
    """The account's orders created in [from, to) (default: the last day), a page at a
    time; ``continuation`` from one page asks for the next."""
    for name in req.params:
        if name not in HISTORY_PARAMS:  # ``code`` carries the function key
            raise HttpError(400, name, "is not a parameter of this route")
    now = _now()
    ts_from = _query_ts(req, "from", now - timedelta(days=1))
    ts_to = _query_ts(req, "to", now + timedelta(minutes=1))
    limit_text = req.params.get("limit", "50")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
        raise HttpError(400, "limit", f"must be a whole number from 1 to {MAX_PAGE}")
    svc = services()
    page = svc.store.order_history(
        svc.settings.account,
        ts_from,
        ts_to,
        limit=int(limit_text),
        continuation=req.params.get("continuation"),
    )
    return reply(
        {
            "account": svc.settings.account,
            "orders": [order.to_dict() for order in page.orders],
            "continuation": page.continuation,
        }
    )


def _shown(amount: Decimal) -> str:
    """Averages carry long fractions in the books; six places are plenty to show."""
    return dec_str(amount.quantize(SHOWN_PLACES).normalize())


@bp.route(route="positions", methods=["GET"])
@json_errors
async def positions(req: func.HttpRequest) -> func.HttpResponse:
    for name in req.params:
        if name not in ("account", "code"):  # ``code`` carries the function key
            raise HttpError(400, name, "is not a parameter of this route")
    account = _account(req.params.get("account"))
    held = services().store.positions(account)
    return reply(
        {
            "account": account,
            "positions": [
                {
                    "symbol": p.symbol,
                    "quantity": dec_str(p.quantity),
                    "avg_price": _shown(p.avg_price),
                    "realized_pnl": _shown(p.realized_pnl),
                    "fees": _shown(p.fees),
                }
                for p in held
            ],
        }
    )


@desk_route("risk/{account}", ["GET"])
async def get_risk(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    account = _account(req.route_params["account"])
    state = await client.read_entity_state(df.EntityId(RISK_ENTITY, account))
    if not state.entity_exists:
        return reply({"account": account, "halted": False, "limits": RiskLimits().to_dict()})
    return reply(state.entity_state)


@desk_route("risk/{account}/limits", ["PUT"], func.AuthLevel.ADMIN)
async def put_limits(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    account = _account(req.route_params["account"])
    data = body_of(req)
    if not isinstance(data, dict):
        raise HttpError(400, "body", "must be a JSON object")
    limits = RiskLimits.from_dict(data)
    await client.signal_entity(df.EntityId(RISK_ENTITY, account), "set_limits", limits.to_dict())
    service.record(
        services(),
        AuditKind.MANUAL_ACTION,
        f"limits:{uuid.uuid4().hex}",
        ts=_now(),
        payload={"action": "set_limits", "limits": limits.to_dict()},
    )
    return reply({"account": account, "limits": limits.to_dict()}, 202)


@desk_route("killswitch", ["POST"], func.AuthLevel.ADMIN)
async def killswitch(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    data = body_of(req)
    if not isinstance(data, dict):
        raise HttpError(400, "body", "must be a JSON object")
    account = _account(data.get("account"), present="account" in data)
    action = data.get("action")
    if action not in ("halt", "resume"):
        raise HttpError(400, "action", "must be halt or resume")
    reason = require_str(data, "reason", max_len=500)
    svc = services()
    now = _now()
    entity = df.EntityId(RISK_ENTITY, account)
    if action == "resume":
        service.set_halt(svc, False, reason, ts=now)
        svc.alerts.notify(kill_switch_alert(account, halted=False, reason=reason, ts=now))
        await client.signal_entity(entity, "resume", {})
        return reply({"account": account, "halted": False})
    service.set_halt(svc, True, reason, ts=now)
    svc.alerts.notify(kill_switch_alert(account, halted=True, reason=reason, ts=now))
    await client.signal_entity(entity, "halt", {"reason": reason})
    instance_id = f"flatten-{account}-{now.strftime('%Y%m%dT%H%M%S%f')}-kill"
    await start_once(
        client, FLATTEN_ORCHESTRATOR, instance_id, {"account": account, "reason": reason}
    )
    return reply({"account": account, "halted": True, "flatten_instance_id": instance_id}, 202)


# -- health and the API description ----------------------------------------------------------


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def health(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    checks: dict[str, Any] = {}
    healthy = True
    try:
        svc = services()
        svc.store.head(svc.settings.account)
        checks["books"] = "ok"
        clock = svc.broker.clock()
        checks["broker"] = {"ok": True, "market_open": clock.is_open}
    except Exception as failure:  # health reports every failure instead of raising
        healthy = False
        checks["dependencies"] = f"unreachable: {type(failure).__name__}"
        log.warning("health: %s", failure)
    try:
        await instance_exists(client, "health-probe")
        checks["durable"] = "ok"
    except Exception as failure:
        healthy = False
        checks["durable"] = f"unreachable: {type(failure).__name__}"
    if healthy:
        checks["ingest"] = processor().counters.to_dict()
    return reply(
        {"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503
    )


@desk_route("metrics", ["GET"], func.AuthLevel.FUNCTION)
async def metrics(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """Prometheus text: what this instance counted, and the account's risk gauges read now
    from its entity (each instance of a scaled-out app counts its own; Application Insights
    has the sum)."""
    account = services().settings.account
    tel = telemetry()
    state = await client.read_entity_state(df.EntityId(RISK_ENTITY, account))
    if state.entity_exists and isinstance(state.entity_state, dict):
        risk = RiskState.from_dict(state.entity_state)
        for limit, used in risk.utilisation(_now()).items():
            tel.gauge("desk.risk.utilisation", float(used), account=account, limit=limit)
        tel.gauge("desk.halted", 1.0 if risk.halted else 0.0, account=account)
    return func.HttpResponse(
        tel.prometheus(),
        status_code=200,
        headers={"Content-Type": PROMETHEUS_TEXT, "Cache-Control": "no-store"},
    )


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    from triggers import openapi  # a large literal, built only when someone asks for it

    return reply(openapi.document())
