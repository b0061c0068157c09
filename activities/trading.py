"""Broker and books activities the trade and flatten orchestrations call.

Each parses its input into domain types, calls one service function and returns JSON-safe
values. Rejections come back as values; a raised exception means "worth retrying".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import azure.durable_functions as df

from activities import operations, service
from activities.blueprint import bp
from adapters.bootstrap import Services, services
from adapters.durable_client import start_once
from domain import audit
from domain.errors import ValidationError
from domain.execution import LegOutcome, LegRequest
from domain.orders import OrderLeg
from domain.serde import parse_ts, require, require_str

log = logging.getLogger("desk.reconcile")

FLATTEN_ORCHESTRATOR = "flatten"


def _ids(payload: Mapping[str, Any]) -> list[str]:
    ids = require(payload, "client_order_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValidationError("client_order_ids", "must be a list of strings")
    return ids


@bp.activity_trigger(input_name="payload")
def submit_order(payload: dict[str, Any]) -> dict[str, Any]:
    """One leg to the broker (a ``LegRequest``); the audit entries the orchestration decided
    on the way are written first, in one append."""
    svc = services()
    request = LegRequest.from_dict(payload)
    _record_entries(svc, list(request.audit), request.ts)
    outcome = service.submit_order(
        svc, request.intent_id, request.leg, ts=request.ts, ts_wall_created=request.ts_wall_created
    )
    return outcome.to_dict()


@bp.activity_trigger(input_name="payload")
def submit_exits(payload: dict[str, Any]) -> dict[str, Any]:
    """A bracket's take-profit and stop-loss: one OCO order where the broker has them,
    else two orders the orchestration links (``native`` says which)."""
    svc = services()
    intent_id = require_str(payload, "intent_id")
    ts = parse_ts(require(payload, "ts"), "ts")
    take_profit = OrderLeg.from_dict(require(payload, "take_profit"))
    stop_loss = OrderLeg.from_dict(require(payload, "stop_loss"))
    native = svc.broker.supports_oco(take_profit, stop_loss)
    halt = service.halted(svc)
    if halt is not None:
        # The flatten that came with the halt closes the position: exits would only
        # reopen it when they trigger.
        reason = f"account halted: {halt.get('reason')}; the flatten closes the position"
        outcomes = [
            LegOutcome(leg.client_order_id(intent_id), "rejected", reject_reason=reason)
            for leg in (take_profit, stop_loss)
        ]
    elif native:
        outcomes = service.submit_oco(svc, intent_id, take_profit, stop_loss, ts=ts)
    else:
        outcomes = [
            service.submit_order(svc, intent_id, leg, ts=ts, closing=True)
            for leg in (take_profit, stop_loss)
        ]
    return {"native": native, "orders": [outcome.to_dict() for outcome in outcomes]}


@bp.activity_trigger(input_name="payload")
def sync_orders(payload: dict[str, Any]) -> list[dict[str, Any]]:
    ts = parse_ts(require(payload, "ts"), "ts")
    return [o.to_dict() for o in service.sync_orders(services(), _ids(payload), ts=ts)]


@bp.activity_trigger(input_name="payload")
def cancel_orders(payload: dict[str, Any]) -> list[dict[str, Any]]:
    ts = parse_ts(require(payload, "ts"), "ts")
    return [o.to_dict() for o in service.cancel_orders(services(), _ids(payload), ts=ts)]


@bp.activity_trigger(input_name="payload")
def record_audit(payload: dict[str, Any]) -> int:
    """Audit records decided by an orchestration: ``entries`` (``domain.audit.Entry``), all
    at ``ts``."""
    ts = parse_ts(require(payload, "ts"), "ts")
    entries = require(payload, "entries")
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ValidationError("entries", "must be a list of objects")
    return _record_entries(services(), entries, ts)


def _record_entries(svc: Services, entries: list[Mapping[str, Any]], ts: datetime) -> int:
    return audit.append_many(
        svc.store,
        partition=svc.settings.account,
        ts_recorded=ts,
        entries=[audit.Entry.from_dict(entry) for entry in entries],
    )


@bp.activity_trigger(input_name="payload")
def reconcile_books(payload: dict[str, Any]) -> dict[str, Any]:
    """The books against the broker: what it proves is booked; see ``operations.reconcile``."""
    ts = parse_ts(require(payload, "ts"), "ts")
    run_id = payload.get("run_id")
    result = operations.reconcile(services(), ts=ts, run_id=None if run_id is None else str(run_id))
    if result.alerts:
        log.warning("reconciliation: %d alerts: %s", len(result.alerts), result.alerts)
    return result.to_dict()


@bp.activity_trigger(input_name="payload")
def flatten_positions(payload: dict[str, Any]) -> list[dict[str, Any]]:
    svc = services()
    tag = require_str(payload, "tag", max_len=80)
    ts = parse_ts(require(payload, "ts"), "ts")
    if payload.get("halt", True):
        service.set_halt(svc, True, str(payload.get("reason") or "flatten"), ts=ts)
    return [o.to_dict() for o in service.flatten_positions(svc, tag, ts=ts)]


@bp.activity_trigger(input_name="payload")
@bp.durable_client_input(client_name="client")
async def start_flatten(payload: dict[str, Any], client: df.DurableOrchestrationClient) -> str:
    """Start the account's flatten orchestration under a fixed id, unless it exists."""
    instance_id = require_str(payload, "instance_id", max_len=100)
    await start_once(client, FLATTEN_ORCHESTRATOR, instance_id, dict(payload))
    return instance_id
