"""The service layer: what the activities do, as plain functions of the services.

Every function here is safe to run again with the same input (activities retry, hosts
redeliver): orders are found by client order id before anything is sent, fills are keyed by
execution id, audit records by event id. Broker rejections are returned as values;
only faults worth retrying are raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from activities import alerting
from adapters.bootstrap import Services
from adapters.observability import telemetry
from domain import audit
from domain.audit import AuditKind
from domain.errors import Conflict, RetryableFault, TerminalError
from domain.execution import (
    BrokerOrder,
    LegOutcome,
    close_leg,
    fill_from_snapshot,
    follow_status,
    slippage_bps,
)
from domain.fills import Fill
from domain.orders import Order, OrderLeg, OrderStatus
from domain.risk import recent_fills
from domain.serde import dec_str, ts_str

log = logging.getLogger("desk.service")

DEAD_LETTER_PARTITION = "ingest"


def record(
    svc: Services,
    kind: AuditKind,
    event_id: str,
    *,
    ts: datetime,
    partition: str | None = None,
    correlation: Mapping[str, str] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> None:
    audit.append(
        svc.store,
        partition=partition or svc.settings.account,
        ts_recorded=ts,
        kind=kind,
        event_id=event_id,
        correlation=correlation,
        payload=payload,
    )


def _correlation(intent_id: str, client_order_id: str) -> dict[str, str]:
    return {"intent_id": intent_id, "client_order_id": client_order_id}


def _book_order(
    svc: Services,
    intent_id: str,
    leg: OrderLeg,
    ts: datetime,
    reference_price: Decimal | None = None,
) -> tuple[Order, bool]:
    """The order in the books, and whether this call put it there. Every order is booked
    before the broker hears of it, so an order booked just now has never been sent: there
    is nothing to look up at the broker first."""
    cid = leg.client_order_id(intent_id)
    order = Order(
        client_order_id=cid,
        intent_id=intent_id,
        leg=leg.name,
        symbol=leg.symbol,
        side=leg.side,
        quantity=leg.quantity,
        account=svc.settings.account,
        ts_created=ts,
        reference_price=reference_price,
    )
    if svc.store.create_order(order):
        return order, True
    return svc.store.get_order(cid) or order, False


def apply_snapshot(svc: Services, snapshot: BrokerOrder, *, ts: datetime) -> list[Fill]:
    """Bring the books' order (and position) up to the broker's view; returns every fill
    the books hold for the order (callers pass them on, and everyone downstream applies
    an execution once). Safe to repeat, and against concurrent writers: the order first
    catches up with fills already recorded (a call that died between booking a fill and
    updating the order), and a new fill is booked only if the order's recorded fills
    still add up to what it was derived from."""
    for _ in range(20):
        order = svc.store.get_order(snapshot.client_order_id)
        if order is None:
            log.warning("the books do not hold order %s", snapshot.client_order_id)
            return []
        booked = svc.store.fills_for_order(order.client_order_id)
        current = order
        unaudited = []
        for recorded in booked:
            if recorded.execution_id not in current.executions:
                # A call that died after booking this fill: finish what it began (moving
                # the position is idempotent by execution id).
                svc.store.apply_fill_to_position(recorded)
                current = current.apply_fill(recorded)
                unaudited.append(recorded)
        fill = fill_from_snapshot(current, snapshot, account=svc.settings.account, ts=ts)
        if fill is not None:
            try:
                svc.store.apply_fill_to_position(fill, booked_before=current.filled_qty)
            except Conflict:
                continue
            current = current.apply_fill(fill)
            booked.append(fill)
            unaudited.append(fill)
        updated = follow_status(current, snapshot, ts=ts)
        if updated != order:
            try:
                svc.store.update_order(updated, expected_version=order.version)
            except Conflict:
                continue
        _audit_changes(svc, order, updated, unaudited, snapshot, ts)
        return booked
    raise RetryableFault(f"order {snapshot.client_order_id}: too many concurrent updates")


def _audit_changes(
    svc: Services,
    before: Order,
    after: Order,
    fills: Sequence[Fill],
    snapshot: BrokerOrder,
    ts: datetime,
) -> None:
    correlation = _correlation(before.intent_id, before.client_order_id)
    tel = telemetry()
    for fill in fills:
        tel.count("desk.fills", symbol=fill.symbol)
        if before.ts_created is not None:
            waited = (fill.ts_filled - before.ts_created).total_seconds() * 1000
            tel.record("desk.submit_to_fill", max(waited, 0.0))
        if before.reference_price is not None:
            slipped = float(slippage_bps(fill.side, fill.price, before.reference_price))
            if slipped >= 0:
                tel.record("desk.slippage", slipped, symbol=fill.symbol)
            else:
                tel.record("desk.price_improvement", -slipped, symbol=fill.symbol)
        record(
            svc,
            AuditKind.FILL,
            fill.execution_id,
            ts=ts,
            correlation=correlation,
            payload=fill.to_dict(),
        )
    if after.status is not before.status:
        tel.count("desk.orders", status=after.status.value)
        record(
            svc,
            AuditKind.ORDER_EVENT,
            f"{before.client_order_id}:{after.status.value}:{dec_str(after.filled_qty)}",
            ts=ts,
            correlation=correlation,
            payload={
                "status": after.status.value,
                "previous": before.status.value,
                "filled_qty": dec_str(after.filled_qty),
                "reject_reason": snapshot.reject_reason,
            },
        )


def _outcome(snapshot: BrokerOrder, fills: Sequence[Fill], ts: datetime) -> LegOutcome:
    """The order as the broker has it, with the fills its orchestration hands to the risk
    entity: those booked now and lately (see ``domain.risk.recent_fills``)."""
    return LegOutcome.of(snapshot, tuple(recent_fills(fills, ts)))


def halt_key(account: str) -> str:
    return f"halt:{account}"


def halted(svc: Services) -> dict[str, Any] | None:
    """The account's halt (reason and time) when the kill switch is on."""
    found = svc.store.load(halt_key(svc.settings.account))
    if found is None or not found.value.get("halted"):
        return None
    return dict(found.value)


def set_halt(svc: Services, on: bool, reason: str, *, ts: datetime) -> None:
    """The kill switch as the books see it: while on, no new order reaches the broker
    (orders that close positions excepted)."""
    key = halt_key(svc.settings.account)
    value = {"halted": on, "reason": reason, "ts": ts_str(ts)}
    for _ in range(20):
        found = svc.store.load(key)
        if found is not None and bool(found.value.get("halted")) == on:
            return
        try:
            svc.store.save(key, value, expected_version=None if found is None else found.version)
        except Conflict:
            continue
        record(
            svc,
            AuditKind.MANUAL_ACTION,
            f"{key}:{ts_str(ts)}:{on}",
            ts=ts,
            payload={"action": "halt" if on else "resume", "reason": reason},
        )
        return
    raise RetryableFault("kill switch: too many concurrent updates")


def submit_order(
    svc: Services,
    intent_id: str,
    leg: OrderLeg,
    *,
    ts: datetime,
    ts_wall_created: float | None = None,
    closing: bool = False,
    reference_price: Decimal | None = None,
) -> LegOutcome:
    """Send one leg, once: the books hold the order before the broker hears of it, and a
    retry that finds the order at the broker does not send it again. While the account is
    halted only ``closing`` orders are sent; the rest are rejected here."""
    order, fresh = _book_order(svc, intent_id, leg, ts, reference_price)
    cid = order.client_order_id
    snapshot = None if fresh else svc.broker.get_by_client_order_id(cid)
    resent = snapshot is not None
    halt = None if closing or resent else halted(svc)
    if halt is not None:
        snapshot = BrokerOrder(
            broker_order_id="",
            client_order_id=cid,
            status=OrderStatus.REJECTED.value,
            filled_qty=Decimal(0),
            avg_fill_price=None,
            reject_reason=f"account halted: {halt.get('reason')}",
        )
    elif snapshot is None:
        try:
            with telemetry().span("broker.submit", client_order_id=cid, symbol=leg.symbol):
                snapshot = svc.broker.submit(leg, cid)
        except RetryableFault:
            raise
        except TerminalError as error:
            snapshot = BrokerOrder(
                broker_order_id="",
                client_order_id=cid,
                status=OrderStatus.REJECTED.value,
                filled_qty=Decimal(0),
                avg_fill_price=None,
                reject_reason=str(error),
            )
    latency_ms = None if resent else _observe_submit(svc, ts_wall_created, ts)
    record(
        svc,
        AuditKind.ORDER_EVENT,
        f"{cid}:submitted",
        ts=ts,
        correlation={"intent_id": intent_id, "client_order_id": cid},
        payload={
            "leg": leg.to_dict(),
            "broker_order_id": snapshot.broker_order_id,
            "found_at_broker": resent,
            "submit_latency_ms": latency_ms,
        },
    )
    fills = apply_snapshot(svc, snapshot, ts=ts)
    return _outcome(snapshot, fills, ts)


class OrderClassRefused(TerminalError):
    """The broker refused an advanced order class (and holds no order under its id): the
    same legs can go as separate orders."""


def submit_bracket(
    svc: Services,
    intent_id: str,
    entry: OrderLeg,
    exits: Sequence[OrderLeg],
    *,
    ts: datetime,
    ts_wall_created: float | None = None,
    reference_price: Decimal | None = None,
) -> list[LegOutcome]:
    """An entry with its exits as one order at the broker (a bracket, or OTO with one
    exit), once: a retry that finds the entry at the broker reads the legs instead of
    sending again. The books hold the entry before the broker hears of it, and the exits
    once the broker has taken them (a refused order class leaves no exit behind in the
    books; a crash in between books them on the retry, which finds the entry). A refusal
    raises ``OrderClassRefused``; the caller checks for a halt."""
    ids = [leg.client_order_id(intent_id) for leg in (entry, *exits)]
    _, fresh = _book_order(svc, intent_id, entry, ts, reference_price)
    found = None if fresh else svc.broker.get_by_client_order_id(ids[0])
    snapshots: list[BrokerOrder | None]
    if found is None:
        try:
            with telemetry().span("broker.submit", client_order_id=ids[0], symbol=entry.symbol):
                snapshots = list(svc.broker.submit_bracket(entry, exits, ids))
        except TerminalError as refused:
            # Refused outright, or taken and a later read failed: only the broker knows.
            found = svc.broker.get_by_client_order_id(ids[0])
            if found is None:
                raise OrderClassRefused(str(refused)) from refused
        else:
            _observe_submit(svc, ts_wall_created, ts)
    if found is not None:
        snapshots = [found, *(svc.broker.get_by_client_order_id(cid) for cid in ids[1:])]
    for leg in exits:
        _book_order(svc, intent_id, leg, ts)
    order_class = "bracket" if len(exits) == 2 else "oto"
    outcomes = []
    for leg, cid, snapshot in zip((entry, *exits), ids, snapshots, strict=True):
        if snapshot is None:
            log.warning("%s leg %s is missing at the broker", order_class, cid)
            outcomes.append(LegOutcome.missing(cid))
            continue
        record(
            svc,
            AuditKind.ORDER_EVENT,
            f"{cid}:submitted",
            ts=ts,
            correlation=_correlation(intent_id, cid),
            payload={
                "leg": leg.to_dict(),
                "order_class": order_class,
                "broker_order_id": snapshot.broker_order_id,
                "found_at_broker": found is not None,
            },
        )
        outcomes.append(_outcome(snapshot, apply_snapshot(svc, snapshot, ts=ts), ts))
    return outcomes


def _observe_submit(svc: Services, ts_wall_created: float | None, ts: datetime) -> float | None:
    """Tick-to-submit time of an order just sent, if the request is timed."""
    latency_ms = None if ts_wall_created is None else (time.time() - ts_wall_created) * 1000
    if latency_ms is not None:
        telemetry().record("desk.tick_to_submit", latency_ms)
        alerting.observe(svc, alerting.LATENCY_METRIC, latency_ms, ts=ts)
    return latency_ms


def submit_oco(
    svc: Services, intent_id: str, take_profit: OrderLeg, stop_loss: OrderLeg, *, ts: datetime
) -> list[LegOutcome]:
    tp_order, fresh = _book_order(svc, intent_id, take_profit, ts)
    sl_order, _ = _book_order(svc, intent_id, stop_loss, ts)
    ids = (tp_order.client_order_id, sl_order.client_order_id)
    found = None if fresh else svc.broker.get_by_client_order_id(ids[0])
    pair: tuple[BrokerOrder | None, BrokerOrder | None]
    if found is not None:
        # Sent before: the broker holds both legs of an OCO, or reports what it lost.
        pair = (found, svc.broker.get_by_client_order_id(ids[1]))
    else:
        pair = svc.broker.submit_oco(take_profit, stop_loss, ids)
    outcomes = []
    for leg, cid, snapshot in zip((take_profit, stop_loss), ids, pair, strict=True):
        if snapshot is None:
            log.warning("OCO leg %s is missing at the broker", cid)
            outcomes.append(LegOutcome.missing(cid))
            continue
        record(
            svc,
            AuditKind.ORDER_EVENT,
            f"{snapshot.client_order_id}:submitted",
            ts=ts,
            correlation={"intent_id": intent_id, "client_order_id": snapshot.client_order_id},
            payload={"leg": leg.to_dict(), "order_class": "oco"},
        )
        outcomes.append(_outcome(snapshot, apply_snapshot(svc, snapshot, ts=ts), ts))
    return outcomes


def sync_orders(
    svc: Services, client_order_ids: Sequence[str], *, ts: datetime
) -> list[LegOutcome]:
    """The broker's current view of each order, applied to the books."""
    outcomes = []
    for cid in client_order_ids:
        snapshot = svc.broker.get_by_client_order_id(cid)
        outcomes.append(_settle(svc, cid, snapshot, ts))
    return outcomes


def _settle(svc: Services, cid: str, snapshot: BrokerOrder | None, ts: datetime) -> LegOutcome:
    if snapshot is None:
        return LegOutcome.missing(cid)
    return _outcome(snapshot, apply_snapshot(svc, snapshot, ts=ts), ts)


def cancel_orders(
    svc: Services, client_order_ids: Sequence[str], *, ts: datetime
) -> list[LegOutcome]:
    outcomes = []
    for cid in client_order_ids:
        outcomes.append(_settle(svc, cid, svc.broker.cancel(cid), ts))
    return outcomes


def flatten_positions(svc: Services, tag: str, *, ts: datetime) -> list[LegOutcome]:
    """Cancel every open order, then close every position at market. The closing orders'
    ids derive from ``tag``, so running this again sends nothing twice. Open orders are
    those the broker lists and those the books hold open: a broker may leave out the legs
    of an order that is itself done (Alpaca lists a filled bracket's live exits under
    neither), and each would open a position once it triggers."""
    listed = [o.client_order_id for o in svc.broker.open_orders()]
    booked = [o.client_order_id for o in svc.store.open_orders()]
    open_ids = [cid for cid in dict.fromkeys([*listed, *booked]) if not cid.startswith(f"{tag}.")]
    outcomes = cancel_orders(svc, open_ids, ts=ts)
    for symbol, quantity in sorted(svc.broker.positions().items()):
        if quantity == 0:
            continue
        leg = close_leg(symbol, quantity)
        intent_id = f"{tag}.{symbol.replace('/', '_')}"
        outcomes.append(submit_order(svc, intent_id, leg, ts=ts, closing=True))
    return outcomes
