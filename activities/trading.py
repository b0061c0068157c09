"""Broker and books activities the trade and flatten orchestrations call.

Each parses its input into domain types, calls one service function and returns JSON-safe
values. Rejections come back as values; a raised exception means "worth retrying".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import azure.durable_functions as df

from activities import service
from activities.blueprint import bp
from adapters.bootstrap import Services, services
from adapters.durable_client import start_once
from domain.audit import AuditKind
from domain.errors import ValidationError
from domain.orders import OrderLeg
from domain.serde import parse_ts, require, require_str

FLATTEN_ORCHESTRATOR = "flatten"


def _ids(payload: Mapping[str, Any]) -> list[str]:
    ids = require(payload, "client_order_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValidationError("client_order_ids", "must be a list of strings")
    return ids


@bp.activity_trigger(input_name="payload")
def submit_order(payload: dict[str, Any]) -> dict[str, Any]:
    """One leg to the broker; ``audit`` entries the orchestration decided on the way are
    written first."""
    wall = payload.get("ts_wall_created")
    ts = parse_ts(require(payload, "ts"), "ts")
    _record_entries(services(), payload.get("audit") or [], ts)
    return service.submit_order(
        services(),
        require_str(payload, "intent_id"),
        OrderLeg.from_dict(require(payload, "leg")),
        ts=parse_ts(require(payload, "ts"), "ts"),
        ts_wall_created=None if wall is None else float(wall),
    )


@bp.activity_trigger(input_name="payload")
def submit_exits(payload: dict[str, Any]) -> dict[str, Any]:
    """A bracket's take-profit and stop-loss: one OCO order where the broker has them,
    else two orders the orchestration links (``native`` says which)."""
    svc = services()
    intent_id = require_str(payload, "intent_id")
    ts = parse_ts(require(payload, "ts"), "ts")
    take_profit = OrderLeg.from_dict(require(payload, "take_profit"))
    stop_loss = OrderLeg.from_dict(require(payload, "stop_loss"))
    if svc.broker.supports_oco:
        outcomes = service.submit_oco(svc, intent_id, take_profit, stop_loss, ts=ts)
        return {"native": True, "orders": outcomes}
    orders = [service.submit_order(svc, intent_id, leg, ts=ts) for leg in (take_profit, stop_loss)]
    return {"native": False, "orders": orders}


@bp.activity_trigger(input_name="payload")
def sync_orders(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return service.sync_orders(services(), _ids(payload), ts=parse_ts(require(payload, "ts"), "ts"))


@bp.activity_trigger(input_name="payload")
def cancel_orders(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return service.cancel_orders(
        services(), _ids(payload), ts=parse_ts(require(payload, "ts"), "ts")
    )


@bp.activity_trigger(input_name="payload")
def record_audit(payload: dict[str, Any]) -> int:
    """Audit records decided by an orchestration: ``entries`` of kind, event id,
    correlation and payload, all at ``ts``."""
    ts = parse_ts(require(payload, "ts"), "ts")
    return _record_entries(services(), require(payload, "entries"), ts)


def _record_entries(svc: Services, entries: object, ts: datetime) -> int:
    if not isinstance(entries, list):
        raise ValidationError("entries", "must be a list")
    for entry in entries:
        service.record(
            svc,
            AuditKind(require_str(entry, "kind")),
            require_str(entry, "event_id"),
            ts=ts,
            correlation=entry.get("correlation"),
            payload=entry.get("payload"),
        )
    return len(entries)


@bp.activity_trigger(input_name="payload")
def flatten_positions(payload: dict[str, Any]) -> list[dict[str, Any]]:
    svc = services()
    tag = require_str(payload, "tag", max_len=80)
    ts = parse_ts(require(payload, "ts"), "ts")
    if payload.get("halt", True):
        service.set_halt(svc, True, str(payload.get("reason") or "flatten"), ts=ts)
    return service.flatten_positions(svc, tag, ts=ts)


@bp.activity_trigger(input_name="payload")
@bp.durable_client_input(client_name="client")
async def start_flatten(payload: dict[str, Any], client: df.DurableOrchestrationClient) -> str:
    """Start the account's flatten orchestration under a fixed id, unless it exists."""
    instance_id = require_str(payload, "instance_id", max_len=100)
    await start_once(client, FLATTEN_ORCHESTRATOR, instance_id, dict(payload))
    return instance_id
