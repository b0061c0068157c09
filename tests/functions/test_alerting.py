"""The operators' channel hears of the kill switch, a breach of the daily loss limit, a
reconciliation mismatch, and latency or error-rate spikes, from where each happens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from activities import alerting, service
from domain.alerts import AlertKind, Severity
from domain.model import OrderType, Side
from domain.orders import OrderLeg
from domain.risk import RiskLimits
from tests.functions.desk import Desk, RecordingSink, make_desk

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def desk_with_sink(tmp_path: Path, **settings: object) -> tuple[Desk, RecordingSink]:
    desk = make_desk(tmp_path, **settings)  # type: ignore[arg-type]
    sink = RecordingSink()
    desk.services.alerts = sink
    desk.prices("AAPL", [100.0])
    desk.settle()
    return desk, sink


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[Desk, RecordingSink]]:
    made, sink = desk_with_sink(tmp_path)
    yield made, sink
    made.close()


def test_the_kill_switch_is_announced_on_and_off(desk: tuple[Desk, RecordingSink]) -> None:
    made, sink = desk
    halt = made.http("POST", "killswitch", admin=True, json={"action": "halt", "reason": "drill"})
    assert halt.status_code == 202
    made.settle(5)
    resume = made.http("POST", "killswitch", admin=True, json={"action": "resume", "reason": "ok"})
    assert resume.status_code == 200
    assert sink.kinds() == [
        (AlertKind.KILL_SWITCH, Severity.CRITICAL),
        (AlertKind.KILL_SWITCH, Severity.INFO),
    ]
    assert "drill" in sink.alerts[0].title + str(sink.alerts[0].details)


def test_a_breach_of_the_daily_loss_limit_is_critical(tmp_path: Path) -> None:
    made, sink = desk_with_sink(tmp_path, risk_limits=RiskLimits(daily_loss_limit=Decimal(5)))
    try:
        bought = made.http(
            "POST", "orders", json={"symbol": "AAPL", "side": "buy", "quantity": "10"}
        )
        assert bought.status_code == 202
        made.settle(3)
        made.prices("AAPL", [99.0])
        made.settle()
        sold = made.http(
            "POST", "orders", json={"symbol": "AAPL", "side": "sell", "quantity": "10"}
        )
        assert sold.status_code == 202
        made.settle(5)
        assert [s for s in made.engine.query() if s.name == "flatten"], "no flatten started"
    finally:
        made.close()
    breaches = [a for a in sink.alerts if a.kind is AlertKind.RISK_BREACH]
    assert [a.severity for a in breaches] == [Severity.CRITICAL]


def test_a_reconciliation_mismatch_found_twice_is_announced(
    desk: tuple[Desk, RecordingSink],
) -> None:
    made, sink = desk
    simulator = made.services.simulator
    assert simulator is not None
    stray = OrderLeg(
        "entry", "AAPL", Side.BUY, Decimal(2), OrderType.LIMIT, limit_price=Decimal(90)
    )
    simulator.submit(stray, "placed-elsewhere:entry")
    made.fire("reconciliation")
    made.settle()
    assert sink.alerts == []  # once could be an order in flight
    made.fire("reconciliation")
    made.settle()
    [alert] = sink.alerts
    assert (alert.kind, alert.severity) == (AlertKind.RECONCILIATION_MISMATCH, Severity.CRITICAL)
    assert "placed-elsewhere:entry" in str(alert.details)


def test_a_latency_spike_alerts_once_when_it_starts_and_once_when_it_ends(
    desk: tuple[Desk, RecordingSink],
) -> None:
    made, sink = desk
    series = [40.0] * 30 + [5_000.0] * 10 + [40.0] * 10
    for latency in series:
        alerting.observe(made.services, alerting.LATENCY_METRIC, latency, ts=T0)
    assert sink.kinds() == [
        (AlertKind.LATENCY_SPIKE, Severity.WARNING),
        (AlertKind.LATENCY_SPIKE, Severity.INFO),
    ]


def test_a_burst_of_malformed_ticks_raises_the_error_rate_alert(
    desk: tuple[Desk, RecordingSink],
) -> None:
    made, sink = desk
    for _ in range(25):  # a quiet baseline: every event good
        made.prices("AAPL", [100.0, 100.5])
        made.settle()
    for _ in range(3):  # then most of each batch refused
        made.publish([("AAPL", b"{not json"), ("AAPL", b"[]"), ("AAPL", b'{"symbol": 1}')])
        made.prices("AAPL", [100.2])
        made.settle()
    assert (AlertKind.ERROR_RATE, Severity.WARNING) in sink.kinds()


def test_the_submit_path_feeds_the_latency_detector(desk: tuple[Desk, RecordingSink]) -> None:
    made, _sink = desk
    leg = OrderLeg("entry", "AAPL", Side.BUY, Decimal(1))
    service.submit_order(made.services, "int-lat", leg, ts=T0, ts_wall_created=0.0)
    watch = made.services.spikes[alerting.LATENCY_METRIC]
    assert len(watch.detector.samples) == 1


def test_a_limit_denying_orders_is_a_warning_once_per_window(tmp_path: Path) -> None:
    made, sink = desk_with_sink(tmp_path, risk_limits=RiskLimits(max_order_quantity=Decimal(5)))
    try:
        for _ in range(2):
            denied = made.http(
                "POST", "orders", json={"symbol": "AAPL", "side": "buy", "quantity": "9"}
            )
            assert denied.status_code == 202
            made.settle(2)
    finally:
        made.close()
    breaches = [a for a in sink.alerts if a.kind is AlertKind.RISK_BREACH]
    assert [a.severity for a in breaches] == [Severity.WARNING, Severity.WARNING]
    assert breaches[0].dedupe_key == breaches[1].dedupe_key  # the notifier sends it once


def test_a_failed_trade_is_announced(desk: tuple[Desk, RecordingSink]) -> None:
    from activities.trading import record_audit

    _made, sink = desk
    entry = {"kind": "intent", "event_id": "int-x:failed", "payload": {"error": "broker down"}}
    record_audit({"ts": T0.isoformat(), "entries": [entry]})
    record_audit({"ts": T0.isoformat(), "entries": [entry]})  # a retry records nothing new
    [alert] = sink.alerts
    assert (alert.kind, alert.details["error"]) == (AlertKind.TRADE_FAILED, "broker down")
