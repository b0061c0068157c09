"""The timers: warm-up gives the risk entity its limits, reconciliation fixes the books
from the broker and alerts on the rest, and the end of day flattens, snapshots and resets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from activities import service
from activities.operations import WATERMARK_KEY
from adapters.simulated_broker import SimulatedBroker, SimulatorConfig
from domain.alerts import AlertKind, Severity
from domain.errors import RetryableFault
from domain.execution import BrokerOrder, LegOutcome
from domain.fills import Fill
from domain.model import OrderType, Side, TimeInForce
from domain.orders import OrderLeg
from domain.risk import EXECUTION_DAYS_KEPT, STALE_FILL_SUFFIX, RiskLimits
from domain.serde import ts_str
from tests.functions.desk import Desk, RecordingSink, make_desk, trade
from tests.functions.faults import FlakyBroker


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    made = make_desk(tmp_path, risk_limits=RiskLimits(max_order_quantity=Decimal(50)))
    made.prices("AAPL", [100.0])
    made.settle()
    yield made
    made.close()


def risk(desk: Desk) -> dict[str, object]:
    state = desk.engine.read_entity(("RiskEntity", "paper")).state
    assert isinstance(state, dict)
    return state


def applied(desk: Desk) -> list[str]:
    """The execution ids the risk entity remembers applying, oldest first."""
    ids = risk(desk)["executions"]
    assert isinstance(ids, list)
    return ids


def test_warm_up_gives_the_risk_entity_the_configured_limits(desk: Desk) -> None:
    desk.fire("warm_up")
    desk.settle()
    limits = risk(desk)["limits"]
    assert isinstance(limits, dict) and limits["max_order_quantity"] == "50"


def test_warm_up_leaves_limits_an_operator_set_alone(desk: Desk) -> None:
    response = desk.http("PUT", "risk/paper/limits", admin=True, json={"max_order_quantity": "7"})
    assert response.status_code == 202
    desk.settle()
    desk.fire("warm_up")
    desk.settle()
    limits = risk(desk)["limits"]
    assert isinstance(limits, dict) and limits["max_order_quantity"] == "7"


def test_reconciliation_applies_what_the_broker_proves_and_alerts_on_the_rest(desk: Desk) -> None:
    now = datetime.now(UTC)
    resting = OrderLeg(
        "entry", "AAPL", Side.BUY, Decimal(5), OrderType.LIMIT, limit_price=Decimal(99)
    )
    service.submit_order(desk.services, "int-recon", resting, ts=now)
    simulator = desk.services.simulator
    assert simulator is not None
    stray = OrderLeg(
        "entry", "AAPL", Side.BUY, Decimal(2), OrderType.LIMIT, limit_price=Decimal(90)
    )
    simulator.submit(stray, "placed-elsewhere:entry")
    # The broker fills the resting order; nothing tells the books.
    simulator.on_trade("AAPL", Decimal("98.5"), datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    assert desk.store.get_order("int-recon:entry").status.value == "new"  # type: ignore[union-attr]
    desk.fire("reconciliation")
    desk.settle()
    order = desk.store.get_order("int-recon:entry")
    assert order is not None and order.status.value == "filled"
    assert [p.quantity for p in desk.store.positions("paper")] == [Decimal(5)]
    assert len(applied(desk)) == 1
    # A discrepancy is only an alert when the next run still finds it (orders in flight
    # make the two sides differ for a moment).
    assert [r for r in desk.store.records("paper") if r.kind.value == "alert"] == []
    desk.fire("reconciliation")
    desk.settle()
    [alert] = [r for r in desk.store.records("paper") if r.kind.value == "alert"]
    problems = {
        a.get("client_order_id") or a.get("symbol"): a["problem"] for a in alert.payload["alerts"]
    }
    assert problems == {"placed-elsewhere:entry": "unknown to the books"}
    simulator.cancel("placed-elsewhere:entry")
    desk.fire("reconciliation")  # resolved at the broker: no further alert
    desk.settle()
    assert len([r for r in desk.store.records("paper") if r.kind.value == "alert"]) == 1


def test_the_end_of_day_flattens_and_halts_then_closes_the_day_and_resumes(desk: Desk) -> None:
    desk.publish([("AAPL", trade("AAPL", 100.0, datetime(2026, 3, 2, 20, 50, tzinfo=UTC)))])
    desk.settle()
    response = desk.http("POST", "orders", json={"symbol": "AAPL", "side": "buy", "quantity": 7})
    assert response.status_code == 202
    desk.settle(2)
    desk.fire("end_of_day")  # 20:50: ten minutes to go, nothing yet
    assert [s for s in desk.engine.query() if s.name == "flatten"] == []
    desk.publish([("AAPL", trade("AAPL", 101.0, datetime(2026, 3, 2, 20, 56, tzinfo=UTC)))])
    desk.settle()
    desk.fire("end_of_day")
    desk.settle(5)
    [flatten] = [s for s in desk.engine.query() if s.name == "flatten"]
    assert flatten.instance_id == "flatten-paper-20260302-eod"
    assert all(p.quantity == 0 for p in desk.store.positions("paper"))
    assert risk(desk)["halt_reason"] == "end of day"  # no new entries before the close
    late = desk.http("POST", "orders", json={"symbol": "AAPL", "side": "buy", "quantity": 1})
    desk.settle(2)
    assert desk.status(late.json()["intent_id"]).output["outcome"] == "denied"
    desk.publish([("AAPL", trade("AAPL", 101.0, datetime(2026, 3, 2, 21, 1, tzinfo=UTC)))])
    desk.settle()
    desk.fire("end_of_day")
    desk.settle()
    desk.fire("end_of_day")
    desk.settle()
    [closing] = [r for r in desk.store.records("paper") if r.event_id.startswith("eod:")]
    assert closing.payload["day"] == "2026-03-02"
    assert closing.payload["realized_pnl_total"] == "7"
    assert risk(desk)["day"] == "2026-03-03"
    assert risk(desk)["halted"] is False  # the next session trades again
    assert desk.chain_ok()


def test_closing_the_day_does_not_lift_a_kill_switch(desk: Desk) -> None:
    halted = desk.http("POST", "killswitch", admin=True, json={"action": "halt", "reason": "ops"})
    assert halted.status_code == 202
    desk.settle(5)
    desk.publish([("AAPL", trade("AAPL", 101.0, datetime(2026, 3, 2, 21, 1, tzinfo=UTC)))])
    desk.settle()
    desk.fire("end_of_day")
    desk.settle()
    state = risk(desk)
    assert state["day"] == "2026-03-03"
    assert state["halted"] is True
    assert state["halt_reason"] == "ops"


def test_a_reconciliation_retried_after_a_broker_fault_books_and_reports_everything(
    tmp_path: Path,
) -> None:
    class FailsOnce(FlakyBroker):
        failed = False

        def open_orders(self) -> list[BrokerOrder]:
            if not self.failed:
                self.failed = True
                raise RetryableFault("Alpaca 429: slow down")
            return super().open_orders()

    broker = FailsOnce(SimulatedBroker())
    desk = make_desk(tmp_path, broker=broker)
    try:
        desk.prices("AAPL", [100.0])
        desk.settle()
        resting = OrderLeg(
            "entry", "AAPL", Side.BUY, Decimal(5), OrderType.LIMIT, limit_price=Decimal(99)
        )
        service.submit_order(desk.services, "int-r", resting, ts=datetime.now(UTC))
        broker.inner.on_trade("AAPL", Decimal("98.5"), datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
        desk.fire("reconciliation")
        desk.settle(30)  # the activity's first try fails; its retry runs the whole comparison
        [run] = [s for s in desk.engine.query() if s.name == "reconcile"]
        assert run.output is not None and run.output["fills"] == 1
        assert [f["client_order_id"] for f in run.output["fixed"]] == ["int-r:entry"]
        assert broker.failed
        order = desk.store.get_order("int-r:entry")
        assert order is not None and order.status.value == "filled"
        assert applied(desk) == ["int-r:entry@5"]
    finally:
        desk.close()


def filled_earlier(desk: Desk, intent_id: str, at: datetime) -> tuple[str, LegOutcome]:
    """A good-till-cancelled buy of 10 AAPL at 99, sent at ``at`` and filled (in full, or
    in part with a partial-fill simulator) by a print a second later, then booked by an
    activity a minute later whose outcome never reached the risk entity."""
    simulator = desk.services.simulator
    assert simulator is not None
    resting = OrderLeg(
        "entry",
        "AAPL",
        Side.BUY,
        Decimal(10),
        OrderType.LIMIT,
        TimeInForce.GTC,
        limit_price=Decimal(99),
    )
    cid = f"{intent_id}:entry"
    service.submit_order(desk.services, intent_id, resting, ts=at)
    simulator.on_trade("AAPL", Decimal("98.5"), at + timedelta(seconds=1))
    [outcome] = service.sync_orders(desk.services, [cid], ts=at + timedelta(minutes=1))
    return cid, outcome


def test_an_old_fill_is_not_handed_to_the_risk_entity_again(tmp_path: Path) -> None:
    """A good-till-cancelled order filled in part days ago and again now: reconciliation and
    a cancel hand on the new fill only. The old one reached the risk entity when it was
    booked, and the entity keeps execution ids for a few risk days only."""
    desk = make_desk(tmp_path, simulator=SimulatorConfig(partial_fill_fraction=Decimal("0.5")))
    try:
        now = desk.clock.now()
        cid, then = filled_earlier(desk, "int-gtc", now - timedelta(days=3))
        assert [f.execution_id for f in then.fills] == [f"{cid}@5"]
        simulator = desk.services.simulator
        assert simulator is not None
        simulator.on_trade("AAPL", Decimal("98.5"), now - timedelta(seconds=1))
        desk.fire("reconciliation")  # the broker's new execution reaches the books here
        desk.settle()
        [run] = [s for s in desk.engine.query() if s.name == "reconcile"]
        assert run.output is not None and run.output["fills"] == 1
        second = [f.execution_id for f in desk.store.fills_for_order(cid)]
        assert len(second) == 2 and second[0] == f"{cid}@5"
        assert applied(desk) == [second[1]]
        [cancelled] = service.cancel_orders(desk.services, [cid], ts=now)
        assert [f.execution_id for f in cancelled.fills] == [second[1]]
        [later] = service.cancel_orders(desk.services, [cid], ts=now + timedelta(days=2))
        assert later.fills == ()
    finally:
        desk.close()


def test_after_an_outage_reconciliation_hands_on_what_the_books_took_in_meanwhile(
    tmp_path: Path,
) -> None:
    """An activity booked a fill two days ago and its answer never reached the risk entity
    (its orchestration failed); no reconciliation completed since. The next run hands
    the fill on although it is older than a day."""
    desk = make_desk(tmp_path)
    try:
        before = desk.clock.now() - timedelta(days=2)
        cid, _ = filled_earlier(desk, "int-out", before)
        desk.store.save(WATERMARK_KEY, {"ts": ts_str(before)}, expected_version=None)
        desk.fire("reconciliation")
        desk.settle()
        [run] = [s for s in desk.engine.query() if s.name == "reconcile"]
        assert run.output is not None and run.output["fills"] == 1
        assert applied(desk) == [f"{cid}@10"]
        positions = risk(desk)["positions"]
        assert isinstance(positions, list) and positions[0]["quantity"] == "10"
    finally:
        desk.close()


ENTITY = ("RiskEntity", "paper")


def a_week_of_fills(desk: Desk) -> Fill:
    """A fill booked and applied a week ago, then a fill on each of the risk days the
    entity keeps: more days with fills than it keeps. Returns the week-old fill."""
    now = desk.clock.now()
    week_ago = now - timedelta(days=7)
    desk.engine.signal_entity(ENTITY, "reset_day", {"day": week_ago.date().isoformat()})
    _, outcome = filled_earlier(desk, "int-old", week_ago)
    [fill] = outcome.fills
    desk.engine.signal_entity(ENTITY, "apply_fill", fill.to_dict())
    for days_ago in range(6, 6 - EXECUTION_DAYS_KEPT, -1):
        at = now - timedelta(days=days_ago)
        desk.engine.signal_entity(ENTITY, "reset_day", {"day": at.date().isoformat()})
        later = replace(fill, execution_id=f"later-{days_ago}", ts_filled=at)
        desk.engine.signal_entity(ENTITY, "apply_fill", later.to_dict())
    desk.settle()
    return fill


def reconcile_from(desk: Desk, since: datetime) -> dict[str, Any]:
    """A reconciliation whose last completed run was at ``since``."""
    current = desk.store.load(WATERMARK_KEY)
    desk.store.save(
        WATERMARK_KEY,
        {"ts": ts_str(since)},
        expected_version=None if current is None else current.version,
    )
    before = {s.instance_id for s in desk.engine.query() if s.name == "reconcile"}
    desk.fire("reconciliation")
    desk.settle()
    [run] = [
        s for s in desk.engine.query() if s.name == "reconcile" and s.instance_id not in before
    ]
    output: dict[str, Any] | None = run.output
    assert output is not None
    return output


def test_after_a_long_outage_a_fill_never_handed_on_still_reaches_the_risk_entity(
    tmp_path: Path,
) -> None:
    """Reconciliation was down for a week while trading went on: more risk days had fills
    than the entity keeps. A fill booked a week ago whose answer never reached the entity
    is handed on when reconciliation comes back, and applied: nothing was forgotten while
    no run vouched that everything booked had been handed on."""
    desk = make_desk(tmp_path)
    try:
        week_ago = desk.clock.now() - timedelta(days=7)
        lost_cid, _ = filled_earlier(desk, "int-lost", week_ago - timedelta(hours=1))
        old = a_week_of_fills(desk)
        assert old.execution_id in applied(desk)
        assert risk(desk)["executions_forgotten_through"] is None
        output = reconcile_from(desk, week_ago - timedelta(hours=2))
        assert output["fills"] == 2  # the lost fill and the one applied then
        assert f"{lost_cid}@10" in applied(desk)
        positions = risk(desk)["positions"]
        assert isinstance(positions, list)
        assert positions[0]["quantity"] == str(10 * (2 + EXECUTION_DAYS_KEPT))
        assert not [r for r in desk.store.records("paper") if STALE_FILL_SUFFIX in r.event_id]
        # The run completed: the entity may now forget the week-old day.
        assert old.execution_id not in applied(desk)
        assert risk(desk)["executions_forgotten_through"] is not None
    finally:
        desk.close()


def test_a_fill_handed_on_again_after_its_id_was_forgotten_is_refused_and_alerted(
    tmp_path: Path,
) -> None:
    """A fill applied a week ago whose id the entity has forgotten since, once
    reconciliation vouched for everything booked up to a day ago, comes back: the
    reconciliation watermark was set back (the books restored from a backup), and the next
    run hands the fill on again. The entity refuses it instead of counting it twice; the
    refusal is audited and alerted."""
    desk = make_desk(tmp_path)
    sink = RecordingSink()
    desk.services.alerts = sink
    try:
        now = desk.clock.now()
        fill = a_week_of_fills(desk)
        assert reconcile_from(desk, now - timedelta(hours=1))["fills"] == 0
        assert fill.execution_id not in applied(desk)
        assert risk(desk)["executions_forgotten_through"] == ts_str(fill.ts_filled)
        assert reconcile_from(desk, now - timedelta(days=8))["fills"] == 1  # handed on again
        positions = risk(desk)["positions"]
        assert isinstance(positions, list)
        assert positions[0]["quantity"] == str(10 * (1 + EXECUTION_DAYS_KEPT))
        [refusal] = [r for r in desk.store.records("paper") if STALE_FILL_SUFFIX in r.event_id]
        assert refusal.event_id == fill.execution_id + STALE_FILL_SUFFIX
        assert refusal.payload["forgotten_through"] == ts_str(fill.ts_filled)
        [alert] = [a for a in sink.alerts if a.kind is AlertKind.STALE_FILL]
        assert alert.severity is Severity.WARNING
        assert alert.details["execution_id"] == fill.execution_id
        assert alert.details["client_order_id"] == fill.client_order_id
    finally:
        desk.close()
