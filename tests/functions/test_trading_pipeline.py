"""Ticks in through the Event Hub trigger, orders out through the trade orchestration, on
the simulated broker: each plan type end to end, under devhost with a virtual clock."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.report import session_report
from adapters.simulated_broker import SimulatedBroker, SimulatorConfig
from adapters.sqlite_store import SqliteStore
from devhost.durable import RuntimeStatus
from domain.audit import AuditKind
from domain.errors import RetryableFault
from domain.execution import TradeRequest
from domain.market import ParseError, Tick, parse_market_event
from domain.model import OrderType, Side
from domain.orders import OrderIntent, OrderLeg, PlanKind
from domain.ports import Claim
from domain.risk import RiskLimits, RiskState
from tests.functions.desk import T0, Desk, make_desk, trade
from tests.functions.faults import FlakyBroker
from triggers import ticks as ticks_trigger

SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}
RISING = [100.0, 100.0, 100.0, 101.0]  # the fast SMA crosses above at 101


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    made = make_desk(tmp_path, strategies=[SMA])
    yield made
    made.close()


def test_a_crossover_signal_becomes_a_filled_market_order(desk: Desk) -> None:
    desk.prices("AAPL", RISING)
    desk.settle(5)
    trades = desk.trades()
    assert len(trades) == 1
    final = trades[0]
    assert final.runtime_status is RuntimeStatus.COMPLETED, final.output
    assert final.output["outcome"] == "completed"
    [order] = desk.store.orders_for_intent(final.instance_id)
    assert order.status.value == "filled"
    assert order.filled_qty == Decimal(10)
    [position] = desk.store.positions("paper")
    assert position.quantity == Decimal(10)
    assert desk.chain_ok()


def bracket_desk(
    tmp_path: Path, *, oco: bool, bracket: bool = False, partial: Decimal | None = None
) -> Desk:
    config = {**SMA, "plan": "bracket", "take_profit_pct": 1, "stop_loss_pct": 1}
    simulator = SimulatorConfig(
        supports_oco=oco, supports_bracket=bracket, partial_fill_fraction=partial
    )
    return make_desk(tmp_path, strategies=[config], simulator=simulator)


@pytest.mark.parametrize(
    ("oco", "bracket"),
    [(True, True), (True, False), (False, False)],
    ids=["native-bracket", "native-oco", "orchestrated-oco"],
)
def test_a_bracket_takes_profit_and_the_stop_is_cancelled(
    tmp_path: Path, oco: bool, bracket: bool
) -> None:
    desk = bracket_desk(tmp_path, oco=oco, bracket=bracket)
    try:
        desk.prices("AAPL", RISING)  # entry at 101: take-profit 102.01, stop 99.99
        desk.settle(3)
        [trade] = desk.trades()
        assert trade.custom_status["stage"] == "exits"
        decided = desk.store.load(f"bracket:{trade.instance_id}")
        assert decided is not None and decided.value["native"] is bracket
        desk.prices("AAPL", [101.5, 102.5])
        desk.settle(3)
        final = desk.status(trade.instance_id)
        assert final.runtime_status is RuntimeStatus.COMPLETED
        orders = {o.leg: o for o in desk.store.orders_for_intent(trade.instance_id)}
        assert orders["entry"].status.value == "filled"
        assert orders["tp"].status.value == "filled"
        assert orders["sl"].status.value == "canceled"
        assert orders["tp"].avg_fill_price == Decimal("102.5")
        [position] = desk.store.positions("paper")
        assert position.quantity == 0
        assert position.realized_pnl == Decimal("15.0")  # 10 * (102.5 - 101)
        assert desk.chain_ok()
    finally:
        desk.close()


def test_a_bracket_stop_loss_fires_on_the_way_down(tmp_path: Path) -> None:
    desk = bracket_desk(tmp_path, oco=False)
    try:
        desk.prices("AAPL", RISING)
        desk.settle(3)
        desk.prices("AAPL", [100.5, 99.9])
        desk.settle(3)
        [trade] = desk.trades()
        orders = {o.leg: o.status.value for o in desk.store.orders_for_intent(trade.instance_id)}
        assert orders == {"entry": "filled", "tp": "canceled", "sl": "filled"}
        assert desk.store.positions("paper")[0].quantity == 0
    finally:
        desk.close()


def test_a_bracket_sent_before_a_halt_is_read_back_after_it_not_sent_again(
    tmp_path: Path,
) -> None:
    import function_app
    from activities import service
    from devhost.app_index import index_app

    flaky = FlakyBroker(SimulatedBroker(), deque(["lost"]))  # taken; the answer lost
    desk = make_desk(tmp_path, broker=flaky)
    try:
        flaky.inner.on_trade("AAPL", Decimal(100), T0)
        activity = index_app(function_app.app).functions["submit_bracket"]
        entry = OrderLeg("entry", "AAPL", Side.BUY, Decimal(10), OrderType.LIMIT,
                         limit_price=Decimal(99))  # fmt: skip
        tp = OrderLeg("tp", "AAPL", Side.SELL, Decimal(10), OrderType.LIMIT,
                      limit_price=Decimal(103))  # fmt: skip
        sl = OrderLeg("sl", "AAPL", Side.SELL, Decimal(10), OrderType.STOP,
                      stop_price=Decimal(97))  # fmt: skip
        payload = {
            "entry": {"intent_id": "int-lost", "leg": entry.to_dict(), "ts": T0.isoformat()},
            "exits": [tp.to_dict(), sl.to_dict()],
        }
        with pytest.raises(RetryableFault):
            activity.call(payload=payload)
        service.set_halt(desk.services, True, "drill", ts=T0)  # between the two attempts
        again = activity.call(payload=payload)
        assert again["native"] is True
        assert [o["status"] for o in again["orders"]] == ["new", "held", "held"]
        assert flaky.inner.submissions == 3  # one bracket: entry and two exits, once
        held = {o.leg: o.status.value for o in desk.store.orders_for_intent("int-lost")}
        assert held == {"entry": "new", "tp": "held", "sl": "held"}
    finally:
        desk.close()


def test_a_trade_requested_before_native_brackets_runs_entry_first(desk: Desk) -> None:
    legs = (
        OrderLeg("entry", "AAPL", Side.BUY, Decimal(5)),
        OrderLeg("tp", "AAPL", Side.SELL, Decimal(5), OrderType.LIMIT, limit_price=Decimal(110)),
        OrderLeg("sl", "AAPL", Side.SELL, Decimal(5), OrderType.STOP, stop_price=Decimal(90)),
    )
    intent = OrderIntent(
        "int-old", "paper", "test", PlanKind.BRACKET, legs, T0, {"AAPL": Decimal(100)}
    )
    older = {k: v for k, v in TradeRequest(intent).to_dict().items() if k != "native_brackets"}
    desk.prices("AAPL", [100.0])
    desk.engine.start_new("trade", "int-old", older)
    desk.settle(2)
    assert desk.store.load("bracket:int-old") is None  # no bracket was sent
    orders = {o.leg: o.status.value for o in desk.store.orders_for_intent("int-old")}
    assert orders == {"entry": "filled", "tp": "new", "sl": "new"}  # exits after the fill


def test_a_native_bracket_whose_entry_part_fills_is_protected_for_what_filled(
    tmp_path: Path,
) -> None:
    desk = bracket_desk(tmp_path, oco=True, bracket=True, partial=Decimal("0.4"))
    try:
        desk.prices("AAPL", RISING)  # the signal at 101: a market entry for 10 fills 4
        desk.settle(1)  # and the market goes quiet
        [trade] = desk.trades()
        held = {o.leg: o.status.value for o in desk.store.orders_for_intent(trade.instance_id)}
        assert held == {"entry": "partially_filled", "tp": "held", "sl": "held"}
        desk.settle(65)  # past the entry's deadline: cancelled with 4 filled
        orders = {o.leg: o for o in desk.store.orders_for_intent(trade.instance_id)}
        assert {leg: o.status.value for leg, o in orders.items()} == {
            "entry": "canceled", "tp": "canceled", "sl": "canceled",
            "tp-part": "new", "sl-part": "new"}  # fmt: skip
        assert orders["tp-part"].quantity == orders["sl-part"].quantity == Decimal(4)
        desk.prices("AAPL", [102.5] * 4)  # the take-profit fills, one share a print
        desk.settle(3)
        final = desk.status(trade.instance_id)
        assert final.output["outcome"] == "completed", final.output
        orders = {o.leg: o for o in desk.store.orders_for_intent(trade.instance_id)}
        assert (orders["tp-part"].status.value, orders["sl-part"].status.value) == (
            "filled", "canceled")  # fmt: skip
        assert desk.store.positions("paper")[0].quantity == 0
        assert desk.chain_ok()
    finally:
        desk.close()


def pair_request(intent_id: str, *, b_symbol: str = "QQQ") -> dict[str, object]:
    intent = OrderIntent(
        intent_id=intent_id,
        account="paper",
        source="test",
        kind=PlanKind.PAIR,
        legs=(
            OrderLeg("a", "SPY", Side.BUY, Decimal(5)),
            OrderLeg("b", b_symbol, Side.SELL, Decimal(5)),
        ),
        ts_created=T0,
        reference_prices={"SPY": Decimal(500), b_symbol: Decimal(400)},
        unwind_after_s=20,
    )
    return TradeRequest(intent, poll_interval_s=1).to_dict()


def test_a_pair_fills_both_legs_together(desk: Desk) -> None:
    desk.prices("SPY", [500.0])
    desk.prices("QQQ", [400.0])
    desk.settle()
    desk.engine.start_new("trade", "int-pair1", pair_request("int-pair1"))
    desk.settle(2)
    final = desk.status("int-pair1")
    assert final.output["outcome"] == "completed"
    quantities = {p.symbol: p.quantity for p in desk.store.positions("paper")}
    assert quantities == {"SPY": Decimal(5), "QQQ": Decimal(-5)}


def test_a_pair_whose_second_leg_is_rejected_unwinds_the_first(tmp_path: Path) -> None:
    desk = make_desk(tmp_path, simulator=SimulatorConfig(reject_symbols=frozenset({"IWM"})))
    try:
        desk.prices("SPY", [500.0])
        desk.prices("IWM", [200.0])
        desk.settle()
        desk.engine.start_new("trade", "int-pair2", pair_request("int-pair2", b_symbol="IWM"))
        desk.settle(2)
        final = desk.status("int-pair2")
        assert final.output["outcome"] == "unwound"
        legs = {o.leg: o.status.value for o in desk.store.orders_for_intent("int-pair2")}
        assert legs == {"a": "filled", "b": "rejected", "unwind-a": "filled"}
        assert all(p.quantity == 0 for p in desk.store.positions("paper"))
        assert desk.chain_ok()
    finally:
        desk.close()


def test_a_pair_leg_not_filled_in_time_is_cancelled_and_the_other_unwound(
    tmp_path: Path,
) -> None:
    desk = make_desk(tmp_path)
    try:
        desk.prices("SPY", [500.0])
        desk.settle()  # QQQ has never printed: its market order waits for a print
        desk.engine.start_new("trade", "int-pair3", pair_request("int-pair3"))
        desk.settle(60)
        final = desk.status("int-pair3")
        assert final.output["outcome"] == "unwound"
        legs = {o.leg: o.status.value for o in desk.store.orders_for_intent("int-pair3")}
        assert legs == {"a": "filled", "b": "canceled", "unwind-a": "filled"}
    finally:
        desk.close()


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        ({"max_order_quantity": "5"}, "order_quantity"),
        ({"max_order_notional": "500"}, "order_notional"),
        ({"max_position_notional": "900"}, "position_notional"),
        ({"max_gross_exposure": "900"}, "gross_exposure"),
        ({"blocked_symbols": ["AAPL"]}, "symbol_blocked"),
        ({"allowed_symbols": ["MSFT"]}, "symbol_not_allowed"),
        ({"max_open_orders": 0}, "open_orders"),
        ({"max_orders_per_minute": 0}, "order_rate"),
    ],
)
def test_each_risk_denial_stops_the_trade_before_the_broker(
    desk: Desk, limits: dict[str, object], code: str
) -> None:
    desk.engine.signal_entity(("RiskEntity", "paper"), "set_limits", limits)
    desk.prices("AAPL", RISING)
    desk.settle(5)
    [trade] = desk.trades()
    assert trade.output["outcome"] == "denied"
    assert code in {reason["code"] for reason in trade.output["reasons"]}
    assert desk.store.orders_for_intent(trade.instance_id) == []
    decisions = [r for r in desk.store.records("paper") if r.kind.value == "risk_decision"]
    assert decisions[-1].payload["approved"] is False
    assert desk.chain_ok()


def test_a_halted_account_is_denied(desk: Desk) -> None:
    desk.engine.signal_entity(("RiskEntity", "paper"), "halt", {"reason": "test"})
    desk.prices("AAPL", RISING)
    desk.settle(5)
    [trade] = desk.trades()
    assert {r["code"] for r in trade.output["reasons"]} == {"halted"}


def test_the_same_batch_delivered_twice_starts_nothing_twice(desk: Desk) -> None:
    desk.prices("AAPL", RISING)
    desk.settle(5)
    # Redelivery: the checkpoints go back to the start, as after a host crash.
    for partition in range(2):
        desk.host.event_log.checkpoint("ticks", "$Default", partition, -1)
    desk.settle(5)
    # A publisher retry: the same ticks again, as new events.
    desk.market_ts = T0
    desk.prices("AAPL", RISING)
    desk.settle(5)
    assert len(desk.trades()) == 1
    assert desk.services.simulator is not None
    assert desk.services.simulator.submissions == 1
    assert desk.store.positions("paper")[0].quantity == Decimal(10)


def test_a_restarted_processor_continues_from_the_snapshot(desk: Desk) -> None:
    desk.prices("AAPL", RISING[:3])
    desk.settle()
    ticks_trigger.processor().abandon_all()
    desk.prices("AAPL", RISING[3:])
    desk.settle(5)
    assert len(desk.trades()) == 1


@pytest.mark.parametrize(
    "faults",
    [["lost"], ["429", "429"], ["503", "lost", "429"]],
    ids=["response-lost", "throttled", "mixed"],
)
def test_broker_faults_give_exactly_one_order_per_leg(tmp_path: Path, faults: list[str]) -> None:
    flaky = FlakyBroker(SimulatedBroker(), deque(faults))
    desk = make_desk(tmp_path, strategies=[SMA], broker=flaky)
    try:
        desk.prices("AAPL", RISING)
        desk.run_out()
        [trade] = desk.trades()
        assert trade.output["outcome"] == "completed"
        assert flaky.inner.submissions == 1
        assert all(o.is_terminal for o in desk.store.orders_for_intent(trade.instance_id))
        assert desk.store.positions("paper")[0].quantity == Decimal(10)
    finally:
        desk.close()


def test_partial_fills_reach_the_books_once_each(tmp_path: Path) -> None:
    desk = make_desk(
        tmp_path, strategies=[SMA], simulator=SimulatorConfig(partial_fill_fraction=Decimal("0.3"))
    )
    try:
        desk.prices("AAPL", RISING)
        desk.settle(2)
        for price in (101.1, 101.2, 101.3):  # one print at a time: each wakes the orchestration
            desk.prices("AAPL", [price])
            desk.settle()
        [trade] = desk.trades()
        [order] = desk.store.orders_for_intent(trade.instance_id)
        assert order.status.value == "filled"
        fills = desk.store.fills("paper")
        assert sorted(f.quantity for f in fills) == [Decimal(1), Decimal(3), Decimal(3), Decimal(3)]
        assert desk.store.positions("paper")[0].quantity == Decimal(10)
        risk = desk.engine.read_entity(("RiskEntity", "paper")).state
        assert len(risk["executions"]) == 4
    finally:
        desk.close()


def test_an_entry_not_filled_by_the_deadline_is_cancelled(tmp_path: Path) -> None:
    desk = make_desk(
        tmp_path, strategies=[SMA], simulator=SimulatorConfig(latency=timedelta(minutes=5))
    )
    try:
        desk.prices("AAPL", RISING)
        desk.settle(120)
        [trade] = desk.trades()
        assert trade.output["outcome"] == "expired"
        [order] = desk.store.orders_for_intent(trade.instance_id)
        assert order.status.value == "canceled"
        risk = desk.engine.read_entity(("RiskEntity", "paper")).state
        assert risk["reservations"] == []
    finally:
        desk.close()


JUNK = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    st.dictionaries(
        st.sampled_from(["type", "symbol", "price", "size", "ts", "id"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
    ).map(lambda d: json.dumps(d).encode()),
    st.sampled_from(
        [
            b'{"type":"trade","symbol":"AAPL","price":-1,"size":1,"ts":"2026-03-02T14:31:00Z"}',
            b'{"type":"trade","symbol":"aapl","price":1,"size":1,"ts":"2026-03-02T14:31:00Z"}',
            b'{"type":"trade","symbol":"AAPL","price":"NaN","size":1,"ts":"2026-03-02T14:31:00Z"}',
            b'{"type":"trade","symbol":"AAPL","price":1,"size":1,"ts":"2999-01-01T00:00:00Z"}',
            b'{"type":"trade","symbol":"AAPL","price":1,"size":1,"ts":"2026-03-02T14:31:00"}',
            b"[]",
            b"null",
        ]
    ),
)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk=st.lists(JUNK, min_size=40, max_size=80))
def test_malformed_events_are_dead_lettered_and_the_good_ones_still_trade(
    tmp_path_factory: pytest.TempPathFactory, junk: list[bytes]
) -> None:
    desk = make_desk(tmp_path_factory.mktemp("junk"), strategies=[SMA])
    try:
        good = []
        for price in RISING:
            desk.market_ts += timedelta(seconds=1)
            good.append(("AAPL", trade("AAPL", price, desk.market_ts)))
        mixed: list[tuple[str | None, bytes]] = [("AAPL", body) for body in junk]
        for index, event in enumerate(good):
            mixed.insert(index * 15, event)
        desk.publish(mixed)
        desk.settle(5)
        assert desk.host.event_log.failed_batches() == []
        counters = ticks_trigger.processor().counters
        dead = [r for r in desk.store.records("ingest") if r.kind.value == "dead_letter"]
        assert counters.ticks + counters.dead_letters == len(mixed) - ignored(junk)
        assert len(dead) == counters.dead_letters
        assert all({"field", "reason", "raw"} <= set(r.payload) for r in dead)
        [trade_status] = desk.trades()
        assert trade_status.output["outcome"] == "completed"
        assert desk.chain_ok()
    finally:
        desk.close()


def ignored(junk: list[bytes]) -> int:
    """Valid market events the strategies do not use (quotes and bars) are not ticks."""
    count = 0
    for body in junk:
        try:
            data = json.loads(body)
        except ValueError:
            continue
        parsed = parse_market_event(data, now=datetime.now(UTC))
        if not isinstance(parsed, ParseError | Tick):
            count += 1
    return count


PAIRS = {
    "kind": "pairs",
    "symbol_a": "SPY",
    "symbol_b": "QQQ",
    "hedge_ratio": 1.0,
    "window": 4,
    "entry_z": 1.0,
    "exit_z": 0.2,
    "quantity": 5,
    "unwind_after_s": 20,
}


def test_a_pairs_signal_from_the_event_hub_trades_both_legs(tmp_path: Path) -> None:
    desk = make_desk(tmp_path, strategies=[PAIRS])
    try:
        for _ in range(4):  # a flat spread warms the z-score up
            desk.prices("SPY", [100.0])
            desk.prices("QQQ", [100.0])
            desk.settle()
        desk.prices("SPY", [103.0])  # the spread jumps: short it (sell SPY, buy QQQ)
        desk.settle(3)
        [pair] = desk.trades()
        assert pair.output["outcome"] == "completed"
        intent = pair.input["intent"]
        assert intent["kind"] == "pair"
        assert {(leg["symbol"], leg["side"]) for leg in intent["legs"]} == {
            ("SPY", "sell"),
            ("QQQ", "buy"),
        }
        positions = {p.symbol: p.quantity for p in desk.store.positions("paper")}
        assert positions == {"SPY": Decimal(-5), "QQQ": Decimal(5)}
    finally:
        desk.close()


class ClaimsDownOnce(SqliteStore):
    """Books whose first idempotency claim fails as an unreachable store would."""

    failures = 1

    def claim(self, key: str, value: Mapping[str, Any], *, ts: datetime) -> Claim:
        if self.failures:
            self.failures -= 1
            raise RetryableFault("books unreachable")
        return super().claim(key, value, ts=ts)


def test_a_batch_that_fails_is_retried_and_its_signal_still_trades(desk: Desk) -> None:
    flaky = ClaimsDownOnce(desk.tmp / "books.sqlite")
    desk.services.store = flaky
    desk.prices("AAPL", RISING)
    desk.settle(5)
    assert flaky.failures == 0
    assert desk.host.event_log.failed_batches() == []
    [trade_status] = desk.trades()
    assert trade_status.output["outcome"] == "completed"
    flaky.close()


def test_a_trade_that_cannot_reach_the_broker_fails_and_releases_its_reservation(
    tmp_path: Path,
) -> None:
    flaky = FlakyBroker(SimulatedBroker(), deque(["503"] * 20))
    desk = make_desk(tmp_path, strategies=[SMA], broker=flaky)
    try:
        desk.prices("AAPL", RISING)
        desk.run_out()
        [trade_status] = desk.trades()
        assert trade_status.runtime_status is RuntimeStatus.FAILED
        risk = desk.engine.read_entity(("RiskEntity", "paper")).state
        assert risk["reservations"] == []
        failed = [r for r in desk.store.records("paper") if r.event_id.endswith(":failed")]
        assert "HTTP 503" in failed[0].payload["error"]
        assert flaky.inner.submissions == 0
    finally:
        desk.close()


class LookupsGoDown(FlakyBroker):
    """A broker whose order lookups fail once ``down`` is set; cancels still work."""

    down = False

    def get_by_client_order_id(self, client_order_id: str) -> Any:
        if self.down:
            raise RetryableFault("HTTP 503")
        return super().get_by_client_order_id(client_order_id)


def test_a_trade_that_fails_hands_what_its_cancel_found_filled_to_the_risk_entity(
    tmp_path: Path,
) -> None:
    # The entry waits at the broker (latency), fills there while lookups are down, and the
    # orchestration fails once its polls run out of retries. Its clean-up cancel finds the
    # order filled: the books and the risk entity both have the position.
    broker = LookupsGoDown(SimulatedBroker(SimulatorConfig(latency=timedelta(seconds=5))))
    desk = make_desk(tmp_path, strategies=[SMA], broker=broker)
    try:
        desk.prices("AAPL", RISING)
        desk.settle()
        [trade_status] = desk.trades()
        assert trade_status.runtime_status is RuntimeStatus.RUNNING
        assert broker.inner.positions() == {}
        broker.down = True
        desk.prices("AAPL", [101.0] * 6)  # past the latency: the entry fills
        desk.deliver()
        assert broker.inner.positions() == {"AAPL": Decimal(10)}
        desk.run_out()
        [trade_status] = desk.trades()
        assert trade_status.runtime_status is RuntimeStatus.FAILED
        books = {p.symbol: p.quantity for p in desk.store.positions("paper")}
        assert books == {"AAPL": Decimal(10)}
        risk = RiskState.from_dict(desk.engine.read_entity(("RiskEntity", "paper")).state)
        assert {s: p.quantity for s, p in risk.positions.items()} == {"AAPL": Decimal(10)}
        assert risk.reservations == {}
    finally:
        desk.close()


def test_the_configured_limits_apply_from_the_first_order_without_a_warm_up(
    tmp_path: Path,
) -> None:
    desk = make_desk(
        tmp_path, strategies=[SMA], risk_limits=RiskLimits(max_order_quantity=Decimal(5))
    )
    try:
        desk.prices("AAPL", RISING)  # no warm-up timer has run: the entity has no limits yet
        desk.settle(5)
        [first] = desk.trades()
        assert {r["code"] for r in first.output["reasons"]} == {"order_quantity"}
        desk.engine.signal_entity(("RiskEntity", "paper"), "set_limits", {})
        desk.settle()
        desk.prices("AAPL", [99.0, 98.0, 101.0, 102.0])  # flat, then long again
        desk.settle(5)
        # Limits an operator set (here: none) are not replaced by the configured ones: the
        # entry of ten goes through. (The exit before it had nothing to sell: the first
        # entry was denied, and the strategy does not sell short.)
        later = [t.output for t in desk.trades() if t.instance_id != first.instance_id]
        outcomes = sorted(
            (o["outcome"], tuple(r["code"] for r in o.get("reasons") or [])) for o in later
        )
        assert outcomes == [("completed", ()), ("denied", ("short_sale",))]
        assert {p.symbol: p.quantity for p in desk.store.positions("paper")} == {
            "AAPL": Decimal(10)
        }
    finally:
        desk.close()


def test_signals_older_than_the_limit_are_audited_and_not_traded_and_sizing_stays_in_step(
    tmp_path: Path,
) -> None:
    desk = make_desk(tmp_path, strategies=[SMA], max_signal_age_s=30)
    try:
        now = datetime.now(UTC)
        desk.market_ts = now - timedelta(minutes=2)
        desk.prices("AAPL", RISING)  # a backlog: the crossover is two minutes old
        desk.settle(5)
        assert desk.trades() == []
        [stale] = [r for r in desk.store.records("paper") if r.kind is AuditKind.SIGNAL]
        assert stale.payload["targets"] == [1]
        assert stale.payload["stale"]["max_signal_age_s"] == 30
        assert stale.payload["stale"]["age_s"] > 100

        # Then prompt ticks: the strategy's exit would have sold what was never bought.
        desk.market_ts = datetime.now(UTC) - timedelta(seconds=10)
        desk.prices("AAPL", [100.0, 99.0])
        desk.settle(5)
        assert desk.trades() == []
        assert desk.store.positions("paper") == []

        # And a prompt entry trades the strategy's size, once.
        desk.prices("AAPL", RISING)
        desk.settle(5)
        [entry] = desk.trades()
        assert entry.output["outcome"] == "completed"
        assert {p.symbol: p.quantity for p in desk.store.positions("paper")} == {
            "AAPL": Decimal(10)
        }
        assert desk.chain_ok()
        report = session_report(desk.services)
        assert "signals              3 (1 stale, not traded)" in report
    finally:
        desk.close()


def test_after_a_denied_entry_a_long_only_strategys_exit_is_refused_not_sold_short(
    tmp_path: Path,
) -> None:
    # Halted, the entry is denied, but the strategy's targets moved to long. Resumed, its
    # exit would sell the ten shares never bought; the risk check refuses that short sale,
    # which also brings the targets back to flat, so the next entry buys the size once.
    desk = make_desk(tmp_path, strategies=[SMA])
    try:
        desk.engine.signal_entity(("RiskEntity", "paper"), "halt", {"reason": "drill"})
        desk.settle()
        desk.prices("AAPL", RISING)
        desk.settle(5)
        desk.engine.signal_entity(("RiskEntity", "paper"), "resume", {})
        desk.settle()
        desk.prices("AAPL", [100.0, 99.0])
        desk.settle(5)
        entry, exit_ = sorted(desk.trades(), key=lambda t: t.input["intent"]["ts_created"])
        assert [r["code"] for r in entry.output["reasons"]] == ["halted"]
        assert [r["code"] for r in exit_.output["reasons"]] == ["short_sale"]
        assert desk.store.positions("paper") == []
        desk.prices("AAPL", RISING)
        desk.settle(5)
        assert {p.symbol: p.quantity for p in desk.store.positions("paper")} == {
            "AAPL": Decimal(10)
        }
        assert desk.chain_ok()
    finally:
        desk.close()
