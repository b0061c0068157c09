"""Housekeeping the timers run: warm-up, reconciliation with the broker, and the end of
the trading day. Plain functions of the services; the timer functions only call them."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from activities import service
from adapters.bootstrap import Services
from domain.audit import AuditKind
from domain.errors import Conflict, ValidationError
from domain.execution import Execution, catch_up_snapshots
from domain.fills import Fill
from domain.ids import canonical_json
from domain.ports import Versioned
from domain.risk import recent_fills
from domain.serde import dec_str, parse_ts, ts_str

END_OF_DAY = "end of day"


def resume_after_close(svc: Services, risk_state: Mapping[str, Any], *, ts: datetime) -> bool:
    """Lift the halt the end-of-day flatten put on; True when the risk entity should resume
    too. A halt for any other reason (kill switch, loss limit) is left to an operator."""
    halt = service.halted(svc)
    entity_reason = risk_state.get("halt_reason")
    ours = (halt is None or halt.get("reason") == END_OF_DAY) and entity_reason in (
        None,
        END_OF_DAY,
    )
    if not ours:
        return False
    if halt is not None:
        service.set_halt(svc, False, "next session", ts=ts)
    return bool(risk_state.get("halted"))


def warm_up(svc: Services) -> dict[str, Any]:
    """Open the books and ask the broker for its clock, so the first tick pays neither."""
    svc.store.head(svc.settings.account)
    clock = svc.broker.clock()
    return {
        "market_open": clock.is_open,
        "ts_next_open": ts_str(clock.ts_next_open),
        "ts_next_close": ts_str(clock.ts_next_close),
    }


@dataclass
class Reconciliation:
    fixed: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fixed": self.fixed,
            "alerts": self.alerts,
            "fills": [fill.to_dict() for fill in self.fills],
        }


WATERMARK_KEY = "reconcile:watermark"
FIRST_LOOKBACK = timedelta(days=1)
# Executions are read from a little before the last run: a broker may record one with a
# transaction time slightly earlier than the moment it becomes visible.
OVERLAP = timedelta(minutes=15)


def reconcile(svc: Services, *, ts: datetime, run_id: str | None = None) -> Reconciliation:
    """Compare the books with the broker. What the broker proves (executions by their ids,
    an order's status and fills) is applied to the books; what it cannot (an order or an
    execution only one side knows, a position that still differs) is raised as an alert
    once two runs in a row find it. Running it again changes nothing in the books.

    Everything is read from the broker before anything is written, so a fault on the way
    (a 429, a timeout) leaves the books as they were, and the retry starts the same run
    again. The fills returned are those the books took in since the last run, or at least
    within a day (``recent_fills``), for the orders the broker's executions and statuses
    concern, not only the ones booked now: a retry after a write went through still hands
    them on (the risk entity takes each execution once)."""
    result = Reconciliation()
    watermark = svc.store.load(WATERMARK_KEY)
    since = (
        ts - FIRST_LOOKBACK
        if watermark is None
        else parse_ts(watermark.value["ts"], "ts") - OVERLAP
    )
    executions = svc.broker.executions(since)
    books_open = svc.store.open_orders()
    snapshots = {
        o.client_order_id: svc.broker.get_by_client_order_id(o.client_order_id) for o in books_open
    }
    broker_open = svc.broker.open_orders()
    broker_positions = svc.broker.positions()

    concerned = _book_missed_executions(svc, executions, result, ts)
    for order in books_open:
        snapshot = snapshots[order.client_order_id]
        if snapshot is None:
            result.alerts.append(
                {"client_order_id": order.client_order_id, "problem": "unknown to the broker"}
            )
            continue
        current = svc.store.get_order(order.client_order_id) or order
        if snapshot.status != current.status.value or snapshot.filled_qty != current.filled_qty:
            service.apply_snapshot(svc, snapshot, ts=ts)
            concerned.add(order.client_order_id)
            result.fixed.append(
                {
                    "client_order_id": order.client_order_id,
                    "status": f"{current.status.value} -> {snapshot.status}",
                    "filled_qty": (
                        f"{dec_str(current.filled_qty)} -> {dec_str(snapshot.filled_qty)}"
                    ),
                }
            )
    for open_order in broker_open:
        if svc.store.get_order(open_order.client_order_id) is None:
            result.alerts.append(
                {"client_order_id": open_order.client_order_id, "problem": "unknown to the books"}
            )
    books = {p.symbol: p.quantity for p in svc.store.positions(svc.settings.account) if p.quantity}
    for symbol in sorted(set(books) | set(broker_positions)):
        held, reported = books.get(symbol, Decimal(0)), broker_positions.get(symbol, Decimal(0))
        if held != reported:
            result.alerts.append(
                {
                    "symbol": symbol,
                    "problem": "position differs",
                    "books": dec_str(held),
                    "broker": dec_str(reported),
                }
            )
    # Fills booked since the last run that completed, and at least those of the last day:
    # after an outage, a fill booked by an activity whose answer never reached the risk
    # entity is still handed on.
    result.fills = recent_fills(
        (fill for cid in sorted(concerned) for fill in svc.store.fills_for_order(cid)),
        ts,
        since=since,
    )
    result.alerts = _persistent(svc, result.alerts, run_id)
    _advance(svc, watermark, ts)
    if result.fixed or result.alerts:
        service.record(
            svc,
            AuditKind.ALERT if result.alerts else AuditKind.RECONCILIATION,
            f"reconcile:{run_id or ts_str(ts)}",
            ts=ts,
            payload={"fixed": result.fixed, "alerts": result.alerts},
        )
    return result


def _book_missed_executions(
    svc: Services, executions: list[Execution], result: Reconciliation, ts: datetime
) -> set[str]:
    """Each execution the books have not booked, booked at its own price; returns the
    orders the executions belong to. An execution that cannot be booked (unknown to the
    books, or more than its order) is an alert, and the rest go on."""
    by_order: dict[str, list[Execution]] = {}
    for execution in executions:
        cid = execution.client_order_id
        if cid is None or svc.store.get_order(cid) is None:
            result.alerts.append(
                {
                    "execution_id": execution.execution_id,
                    "problem": "execution unknown to the books",
                }
            )
            continue
        by_order.setdefault(cid, []).append(execution)
    for cid, mine in by_order.items():
        order = svc.store.get_order(cid)
        if order is None:
            continue
        try:
            snapshots = catch_up_snapshots(order, mine)
        except ValidationError as error:
            result.alerts.append(
                {"client_order_id": cid, "problem": f"executions not understood: {error}"}
            )
            continue
        for snapshot in snapshots:
            current = svc.store.get_order(cid) or order
            service.apply_snapshot(svc, snapshot, ts=ts)
            change = f"{dec_str(current.filled_qty)} -> {dec_str(snapshot.filled_qty)}"
            result.fixed.append(
                {"client_order_id": cid, "problem": "missed execution", "filled_qty": change}
            )
    return set(by_order)


def _advance(svc: Services, watermark: Versioned | None, ts: datetime) -> None:
    """Remember how far executions are reconciled; a concurrent run that got further wins."""
    if watermark is not None and parse_ts(watermark.value["ts"], "ts") >= ts:
        return
    with contextlib.suppress(Conflict):
        svc.store.save(
            WATERMARK_KEY,
            {"ts": ts_str(ts)},
            expected_version=None if watermark is None else watermark.version,
        )


PENDING_KEY = "reconcile:pending"


def _persistent(
    svc: Services, found: list[dict[str, Any]], run_id: str | None
) -> list[dict[str, Any]]:
    """Only what two runs in a row both found: orders in flight and fills being booked
    make the books and the broker differ for a moment, and that is not worth an alert. A
    retry of a run compares with the run before it, not with itself."""
    stored = svc.store.load(PENDING_KEY)
    value = stored.value if stored is not None else {}
    if run_id is not None and value.get("run_id") == run_id:
        previous = value.get("previous", [])
    else:
        previous = value.get("alerts", [])
    before = {canonical_json(a) for a in previous}
    try:
        svc.store.save(
            PENDING_KEY,
            {"alerts": found, "previous": previous, "run_id": run_id},
            expected_version=None if stored is None else stored.version,
        )
    except Conflict:
        return []  # another instance reconciled at the same moment; it reports
    return [alert for alert in found if canonical_json(alert) in before]


@dataclass(frozen=True)
class DayPlan:
    """What the end-of-day timer should do now: ``flatten`` the session that is about to
    close, or ``close_day`` (snapshot and reset) for a session that has closed."""

    flatten_session: date | None = None
    close_day: date | None = None
    next_day: date | None = None


def plan_day(svc: Services, *, minutes_before_close: int) -> DayPlan:
    clock = svc.broker.clock()
    now = clock.ts_now
    if clock.is_open:
        if clock.ts_next_close - now <= timedelta(minutes=minutes_before_close):
            return DayPlan(flatten_session=clock.ts_next_close.date())
        return DayPlan()
    sessions = svc.broker.calendar(now.date() - timedelta(days=10), now.date())
    closed = [close for _, close in sessions if close <= now]
    if not closed:
        return DayPlan()
    day = closed[-1].date()
    event_id = f"eod:{svc.settings.account}:{day.isoformat()}"
    if svc.store.find_event(svc.settings.account, event_id) is not None:
        return DayPlan()
    return DayPlan(close_day=day, next_day=clock.ts_next_open.date())


def close_day(
    svc: Services, day: date, risk_state: Mapping[str, Any] | None, *, ts: datetime
) -> dict[str, Any]:
    """The day's closing snapshot (positions and realised P&L), written once."""
    positions = svc.store.positions(svc.settings.account)
    snapshot = {
        "day": day.isoformat(),
        "positions": [p.to_dict() for p in positions if p.quantity],
        "realized_pnl_total": dec_str(sum((p.realized_pnl for p in positions), Decimal(0))),
        "realized_today": (risk_state or {}).get("realized_today", "0"),
    }
    service.record(
        svc,
        AuditKind.RECONCILIATION,
        f"eod:{svc.settings.account}:{day.isoformat()}",
        ts=ts,
        payload=snapshot,
    )
    return snapshot
