"""Broker and books activities the trade and flatten orchestrations call.

Each parses its input into domain types, calls one service function and returns JSON-safe
values. Rejections come back as values; a raised exception means "worth retrying".
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import wraps
from typing import Any

import azure.durable_functions as df

from activities import alerting, service
from activities.blueprint import bp
from adapters.bootstrap import Services, services
from adapters.durable_client import start_once
from adapters.observability import correlated, telemetry
from domain import audit
from domain.alerts import reconciliation_alert, risk_breach_alert
from domain.errors import Conflict, TerminalError, ValidationError
from domain.execution import LegOutcome, LegRequest
from domain.orders import OrderLeg
from domain.risk import DenialCode
from domain.serde import parse_ts, require, require_str

log = logging.getLogger("desk.reconcile")

FLATTEN_ORCHESTRATOR = "flatten"


Activity = Callable[[dict[str, Any]], Any]


def observed(activity: Activity) -> Activity:
    """An activity measured and traced: its run time, a retry counted for each failure (the
    orchestration's retry policy runs it again), a span joining the trace its input
    carries, and the intent's ids on every log line it writes."""
    name = activity.__name__

    @wraps(activity)
    def run(payload: dict[str, Any]) -> Any:
        tel = telemetry()
        started = time.perf_counter()
        carrier = payload.get("trace") if isinstance(payload.get("trace"), Mapping) else None
        leg = payload.get("leg")
        intent_id = payload.get("intent_id")
        cid = (
            f"{intent_id}:{leg['name']}"
            if isinstance(leg, Mapping) and isinstance(leg.get("name"), str) and intent_id
            else None
        )
        with (
            correlated(
                intent_id=intent_id, client_order_id=cid, account=services().settings.account
            ),
            tel.span(f"activity {name}", carrier=carrier, activity=name),
        ):
            try:
                return activity(payload)
            except Exception:
                tel.count("desk.activity.retries", activity=name)
                raise
            finally:
                tel.record(
                    "desk.activity.duration", (time.perf_counter() - started) * 1000, activity=name
                )

    return run


def _ids(payload: Mapping[str, Any]) -> list[str]:
    ids = require(payload, "client_order_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValidationError("client_order_ids", "must be a list of strings")
    return ids


@bp.activity_trigger(input_name="payload")
@observed
def submit_order(payload: dict[str, Any]) -> dict[str, Any]:
    """One leg to the broker (a ``LegRequest``); the audit entries the orchestration decided
    on the way are written first, in one append."""
    svc = services()
    request = LegRequest.from_dict(payload)
    _record_entries(svc, list(request.audit), request.ts)
    outcome = service.submit_order(
        svc,
        request.intent_id,
        request.leg,
        ts=request.ts,
        ts_wall_created=request.ts_wall_created,
        reference_price=request.reference_price,
    )
    return outcome.to_dict()


@bp.activity_trigger(input_name="payload")
@observed
def submit_bracket(payload: dict[str, Any]) -> dict[str, Any]:
    """A bracket's entry (``entry``, a ``LegRequest``) with its ``exits``: as one order
    where the broker takes it (``native``), the exits held there until the entry fills in
    full; otherwise the entry alone, its exits placed once it has filled. Decided once per
    intent, like the exits' OCO."""
    svc = services()
    request = LegRequest.from_dict(_object(payload, "entry"))
    exits = [OrderLeg.from_dict(leg) for leg in _objects(payload, "exits")]
    _record_entries(svc, list(request.audit), request.ts)
    intent_id, entry = request.intent_id, request.leg
    # Decided once per intent, before anything is sent, and kept: a retry (after a lost
    # answer, across a halt) sends what the first attempt sent, or reads it back.
    key = f"bracket:{intent_id}"
    decided = svc.store.load(key)
    if decided is None:
        choice = service.halted(svc) is None and svc.broker.supports_bracket(entry, exits)
        with contextlib.suppress(Conflict):
            svc.store.save(key, {"native": choice}, expected_version=None)
        decided = svc.store.load(key)
    native = decided is not None and bool(decided.value.get("native"))
    timing: dict[str, Any] = {
        "ts": request.ts,
        "ts_wall_created": request.ts_wall_created,
        "reference_price": request.reference_price,
    }
    if native:
        try:
            outcomes = service.submit_bracket(svc, intent_id, entry, exits, **timing)
        except service.OrderClassRefused as refused:
            log.warning(
                "bracket for %s refused (%s): exits placed once the entry fills", intent_id, refused
            )
            with contextlib.suppress(Conflict):  # a concurrent attempt decided the same
                svc.store.save(
                    key,
                    {"native": False, "reason": str(refused)[:500]},
                    expected_version=None if decided is None else decided.version,
                )
            native = False
    if not native:
        outcomes = [service.submit_order(svc, intent_id, entry, **timing)]
    return {"native": native, "orders": [outcome.to_dict() for outcome in outcomes]}


@bp.activity_trigger(input_name="payload")
@observed
def submit_exits(payload: dict[str, Any]) -> dict[str, Any]:
    """A bracket's exits (``exits``: take-profit and stop-loss, or one of them): a pair as
    one OCO order where the broker has them, else separate orders the orchestration links
    (``native`` says which)."""
    svc = services()
    intent_id = require_str(payload, "intent_id")
    ts = parse_ts(require(payload, "ts"), "ts")
    if "exits" not in payload and "take_profit" in payload:
        # The shape trades scheduled before one-exit plans used: still taken.
        payload = {**payload, "exits": [payload["take_profit"], payload.get("stop_loss")]}
    exits = [OrderLeg.from_dict(leg) for leg in _objects(payload, "exits")]
    # Decided once per intent: a retry after a rejected OCO must not take the exits that
    # replaced it for an OCO (they would not cancel each other).
    decided = svc.store.load(f"exits:{intent_id}")
    native = len(exits) == 2 and (
        bool(decided.value.get("native"))
        if decided is not None
        else svc.broker.supports_oco(exits[0], exits[1])
    )
    halt = service.halted(svc)
    if halt is not None:
        # The flatten that came with the halt closes the position: exits would only
        # reopen it when they trigger.
        reason = f"account halted: {halt.get('reason')}; the flatten closes the position"
        outcomes = [
            LegOutcome(leg.client_order_id(intent_id), "rejected", reject_reason=reason)
            for leg in exits
        ]
    elif native:
        try:
            outcomes = service.submit_oco(svc, intent_id, exits[0], exits[1], ts=ts)
        except TerminalError as refused:
            # The broker will not link these exits: the position still needs them, as two
            # orders the orchestration links.
            log.warning(
                "OCO for %s refused (%s): exits linked by the orchestration", intent_id, refused
            )
            _decide(svc, f"exits:{intent_id}", refused)
            native = False
    if not native and halt is None:
        outcomes = [service.submit_order(svc, intent_id, leg, ts=ts, closing=True) for leg in exits]
    return {"native": native, "orders": [outcome.to_dict() for outcome in outcomes]}


def _decide(svc: Services, key: str, refused: TerminalError) -> None:
    """Remember that the broker refused an order class for this intent, so a retry sends
    the same separate orders instead of trying the class again."""
    with contextlib.suppress(Conflict):
        svc.store.save(key, {"native": False, "reason": str(refused)[:500]}, expected_version=None)


def _object(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = require(payload, name)
    if not isinstance(value, Mapping):
        raise ValidationError(name, "must be an object")
    return value


def _objects(payload: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    value = require(payload, name)
    if not isinstance(value, list) or not value or not all(isinstance(v, Mapping) for v in value):
        raise ValidationError(name, "must be a non-empty list of objects")
    return value


@bp.activity_trigger(input_name="payload")
@observed
def sync_orders(payload: dict[str, Any]) -> list[dict[str, Any]]:
    ts = parse_ts(require(payload, "ts"), "ts")
    return [o.to_dict() for o in service.sync_orders(services(), _ids(payload), ts=ts)]


@bp.activity_trigger(input_name="payload")
@observed
def cancel_orders(payload: dict[str, Any]) -> list[dict[str, Any]]:
    ts = parse_ts(require(payload, "ts"), "ts")
    return [o.to_dict() for o in service.cancel_orders(services(), _ids(payload), ts=ts)]


@bp.activity_trigger(input_name="payload")
@observed
def record_audit(payload: dict[str, Any]) -> int:
    """Audit records decided by an orchestration: ``entries`` (``domain.audit.Entry``), all
    at ``ts``."""
    ts = parse_ts(require(payload, "ts"), "ts")
    entries = require(payload, "entries")
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ValidationError("entries", "must be a list of objects")
    return _record_entries(services(), entries, ts)


def _record_entries(svc: Services, entries: list[Mapping[str, Any]], ts: datetime) -> int:
    parsed = [audit.Entry.from_dict(entry) for entry in entries]
    added = audit.append_many(
        svc.store, partition=svc.settings.account, ts_recorded=ts, entries=parsed
    )
    if added:
        _count_denials(parsed)
        alerting.from_audit(svc, parsed, ts=ts)
    return added


def _count_denials(entries: list[audit.Entry]) -> None:
    """Risk denials, by reason, from the decisions an orchestration audits."""
    tel = telemetry()
    for entry in entries:
        payload = entry.payload or {}
        if entry.kind is audit.AuditKind.RISK_DECISION and not payload.get("approved"):
            for reason in payload.get("reasons") or []:
                code = reason.get("code") if isinstance(reason, Mapping) else None
                tel.count("desk.risk_denials", reason=str(code or "unknown"))


@bp.activity_trigger(input_name="payload")
@observed
def reconcile_books(payload: dict[str, Any]) -> dict[str, Any]:
    """The books against the broker: what it proves is booked; see ``operations.reconcile``."""
    from activities import operations  # housekeeping: loaded by the first run, not at start-up

    ts = parse_ts(require(payload, "ts"), "ts")
    run_id = payload.get("run_id")
    result = operations.reconcile(services(), ts=ts, run_id=None if run_id is None else str(run_id))
    if result.alerts:
        log.warning("reconciliation: %d alerts: %s", len(result.alerts), result.alerts)
        svc = services()
        svc.alerts.notify(reconciliation_alert(svc.settings.account, result.alerts, ts=ts))
    return result.to_dict()


@bp.activity_trigger(input_name="payload")
@observed
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
    if await start_once(client, FLATTEN_ORCHESTRATOR, instance_id, dict(payload)):
        svc = services()
        reason = str(payload.get("reason") or "a risk limit")
        svc.alerts.notify(
            risk_breach_alert(
                svc.settings.account,
                code=DenialCode.DAILY_LOSS.value,
                message=f"{reason}: trading halted, positions being flattened ({instance_id})",
                ts=datetime.now(UTC),
                critical=True,
            )
        )
    return instance_id
