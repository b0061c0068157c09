"""Metrics, traces and correlated logs of a real run: ticks through the trigger, a trade
through the orchestration, orders at the simulated broker."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from adapters.observability import JsonLogFormatter, Telemetry, correlated, use_telemetry
from adapters.simulated_broker import SimulatorConfig
from domain.risk import RiskLimits
from tests.functions.desk import Desk, make_desk

SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}
RISING = [100.0, 100.0, 100.0, 101.0]  # the fast SMA crosses above at 101


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    use_telemetry(Telemetry(span_exporter=exporter))
    yield exporter
    use_telemetry(None)


def metrics(desk: Desk) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = desk.http("GET", "metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (
            sample.name,
            tuple(
                sorted(
                    (k, v)
                    for k, v in sample.labels.items()
                    if k.startswith(("status", "reason", "limit", "symbol", "activity", "account"))
                )
            ),
        ): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_the_run_is_counted_and_measured(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    limits = RiskLimits(max_gross_exposure=Decimal(10_000), max_open_orders=4)
    desk = make_desk(
        tmp_path,
        strategies=[SMA],
        risk_limits=limits,
        simulator=SimulatorConfig(slippage_bps=Decimal(5)),
    )
    try:
        desk.prices("AAPL", RISING)
        desk.settle(5)
        [trade] = desk.trades()
        assert trade.output["outcome"] == "completed"
        seen = metrics(desk)
    finally:
        desk.close()
    assert seen[("desk_ticks_total", ())] == 4
    assert seen[("desk_signals_total", ())] == 1
    assert seen[("desk_intents_total", ())] == 1
    assert seen[("desk_orders_total", (("status", "filled"),))] == 1
    assert seen[("desk_fills_total", (("symbol", "AAPL"),))] == 1
    assert seen[("desk_tick_to_submit_milliseconds_count", ())] == 1
    assert seen[("desk_submit_to_fill_milliseconds_count", ())] == 1
    # Bought 5 bp above the signal's price, rounded to the cent: 101.05 against 101.
    assert seen[("desk_slippage_bp_count", (("symbol", "AAPL"),))] == 1
    assert seen[("desk_slippage_bp_sum", (("symbol", "AAPL"),))] == pytest.approx(4.95, abs=0.01)
    assert ("desk_price_improvement_bp_count", (("symbol", "AAPL"),)) not in seen
    # 10 AAPL at 101.0505 of a 10,000 gross limit; nothing open any more; not halted.
    gross = (("account", "paper"), ("limit", "max_gross_exposure"))
    assert seen[("desk_risk_utilisation", gross)] == pytest.approx(0.1011, abs=1e-4)
    assert (
        seen[("desk_risk_utilisation", (("account", "paper"), ("limit", "max_open_orders")))] == 0
    )
    assert seen[("desk_halted", (("account", "paper"),))] == 0
    submits = (("activity", "submit_order"),)
    assert seen[("desk_activity_duration_milliseconds_count", submits)] == 1
    assert ("desk_activity_retries_total", submits) not in seen


def test_risk_denials_are_counted_by_reason(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    desk = make_desk(
        tmp_path, strategies=[SMA], risk_limits=RiskLimits(max_order_quantity=Decimal(5))
    )
    try:
        desk.prices("AAPL", RISING)
        desk.settle(5)
        [trade] = desk.trades()
        assert trade.output["outcome"] == "denied"
        seen = metrics(desk)
    finally:
        desk.close()
    assert seen[("desk_risk_denials_total", (("reason", "order_quantity"),))] == 1
    assert ("desk_orders_total", (("status", "filled"),)) not in seen


def _by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


def test_a_trace_follows_a_tick_through_the_orchestration_to_the_broker(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    desk = make_desk(tmp_path, strategies=[SMA])
    try:
        desk.prices("AAPL", RISING)
        desk.settle(5)
    finally:
        desk.close()
    finished = spans.get_finished_spans()
    [submit] = _by_name(finished, "activity submit_order")
    [broker] = _by_name(finished, "broker.submit")
    assert broker.parent is not None and submit.context is not None
    assert broker.parent.span_id == submit.context.span_id
    assert submit.parent is not None  # carried in the trade request, across the orchestration
    [batch] = [
        s
        for s in _by_name(finished, "ticks")
        if s.context and s.context.span_id == submit.parent.span_id
    ]
    assert batch.context is not None and submit.context.trace_id == batch.context.trace_id
    assert broker.attributes is not None and broker.attributes["symbol"] == "AAPL"


def test_log_lines_carry_the_ids_of_the_work_in_hand(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("desk.test")
    with caplog.at_level(logging.INFO, logger="desk.test"):
        with (
            correlated(intent_id="int-1", account="paper"),
            correlated(client_order_id="int-1:entry"),
        ):
            logger.info("sent")
        logger.info("outside")
    inside, outside = caplog.records
    line = json.loads(JsonLogFormatter().format(inside))
    assert (line["intent_id"], line["client_order_id"], line["account"]) == (
        "int-1",
        "int-1:entry",
        "paper",
    )
    assert line["message"] == "sent" and line["logger"] == "desk.test"
    assert "intent_id" not in json.loads(JsonLogFormatter().format(outside))


def test_the_ticks_trigger_logs_under_its_invocation_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    desk = make_desk(tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="desk"):
            desk.publish([("AAPL", b"{not json")])
            desk.settle()
    finally:
        desk.close()
    [warning] = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    invocation = json.loads(JsonLogFormatter().format(warning)).get("invocation_id", "")
    assert len(invocation) == 36 and invocation.count("-") == 4  # a fresh id per invocation


def test_an_explicit_extra_of_the_same_id_is_not_refused_and_wins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("desk.test")
    with caplog.at_level(logging.INFO, logger="desk.test"), correlated(instance_id="outer"):
        logger.info("replayed", extra={"instance_id": "inner"})
    line = json.loads(JsonLogFormatter().format(caplog.records[-1]))
    assert line["instance_id"] == "inner"
