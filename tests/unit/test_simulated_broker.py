"""The simulated broker: each order type against trade prints, latency, slippage,
partial fills, rejections, OCO, brackets and OTO, idempotent submits and market hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from adapters.simulated_broker import SimulatedBroker, SimulatorConfig
from domain.model import OrderType, Side, TimeInForce
from domain.orders import OrderLeg

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
D = Decimal


def leg(side: Side = Side.BUY, quantity: int = 10, **kwargs: object) -> OrderLeg:
    return OrderLeg("entry", "AAPL", side, D(quantity), **kwargs)  # type: ignore[arg-type]


def prints(broker: SimulatedBroker, *prices: str) -> list[str]:
    """Prints one second apart, each a second after the broker's market time."""
    statuses = []
    for price in prices:
        ts = broker.clock().ts_now + timedelta(seconds=1)
        for order in broker.on_trade("AAPL", D(price), ts):
            statuses.append(f"{order.client_order_id}:{order.status}")
    return statuses


def test_a_market_order_fills_at_the_last_print_with_slippage_against_it() -> None:
    broker = SimulatedBroker(SimulatorConfig(slippage_bps=D(10)))
    broker.on_trade("AAPL", D("100"), T0)
    buy = broker.submit(leg(), "i:buy")
    sell = broker.submit(leg(Side.SELL, 4), "i:sell")
    assert (buy.status, buy.avg_fill_price) == ("filled", D("100.10"))
    assert (sell.status, sell.avg_fill_price) == ("filled", D("99.90"))
    assert broker.positions() == {"AAPL": D(6)}


def test_latency_makes_a_market_order_wait_for_a_later_print() -> None:
    broker = SimulatedBroker(SimulatorConfig(latency=timedelta(milliseconds=1500)))
    broker.on_trade("AAPL", D("100"), T0)
    assert broker.submit(leg(), "i:entry").status == "new"
    assert prints(broker, "101") == []  # one second after the order: too early
    assert prints(broker, "102") == ["i:entry:filled"]
    filled = broker.get_by_client_order_id("i:entry")
    assert filled is not None and filled.avg_fill_price == D("102")


def test_a_limit_fills_only_when_a_print_reaches_it() -> None:
    broker = SimulatedBroker()
    broker.on_trade("AAPL", D("100"), T0)
    broker.submit(leg(order_type=OrderType.LIMIT, limit_price=D("99")), "i:entry")
    assert prints(broker, "99.5") == []
    assert prints(broker, "98.9") == ["i:entry:filled"]


def test_stops_and_stop_limits_trigger_on_their_price() -> None:
    broker = SimulatedBroker()
    broker.on_trade("AAPL", D("100"), T0)
    broker.submit(leg(Side.SELL, order_type=OrderType.STOP, stop_price=D("95")), "s:stop")
    broker.submit(
        leg(order_type=OrderType.STOP_LIMIT, stop_price=D("105"), limit_price=D("105.5")),
        "s:stoplimit",
    )
    assert prints(broker, "96", "104") == []
    assert prints(broker, "106") == []  # triggered, but above its limit
    assert prints(broker, "105.2") == ["s:stoplimit:filled"]
    assert prints(broker, "94.5") == ["s:stop:filled"]


def test_a_trailing_stop_follows_the_high_and_fires_on_the_pullback() -> None:
    broker = SimulatedBroker()
    broker.on_trade("AAPL", D("100"), T0)
    broker.submit(
        leg(Side.SELL, order_type=OrderType.TRAILING_STOP, trail_percent=D("2")), "t:trail"
    )
    assert prints(broker, "101", "110", "108") == []  # the stop is 107.80 after 110
    assert prints(broker, "107.7") == ["t:trail:filled"]


def test_partial_fills_split_an_order_over_several_prints() -> None:
    broker = SimulatedBroker(SimulatorConfig(partial_fill_fraction=D("0.4")))
    broker.on_trade("AAPL", D("100"), T0)
    first = broker.submit(leg(), "p:entry")
    assert (first.status, first.filled_qty) == ("partially_filled", D(4))
    assert prints(broker, "100.5", "101") == ["p:entry:partially_filled", "p:entry:filled"]
    done = broker.get_by_client_order_id("p:entry")
    assert done is not None
    assert done.avg_fill_price == D("100.4")  # (4*100 + 4*100.5 + 2*101) / 10


def test_rejections_by_symbol_rate_and_buying_power() -> None:
    broker = SimulatedBroker(
        SimulatorConfig(reject_symbols=frozenset({"AAPL"}), starting_cash=D(1000))
    )
    assert broker.submit(leg(), "r:1").reject_reason == "AAPL is not tradable"
    poor = SimulatedBroker(SimulatorConfig(starting_cash=D(500)))
    poor.on_trade("AAPL", D("100"), T0)
    assert poor.submit(leg(), "r:2").reject_reason == "insufficient buying power"
    always = SimulatedBroker(SimulatorConfig(reject_rate=1.0))
    assert always.submit(leg(), "r:3").status == "rejected"


def test_submitting_the_same_client_order_id_again_returns_the_first_order() -> None:
    broker = SimulatedBroker()
    broker.on_trade("AAPL", D("100"), T0)
    first = broker.submit(leg(), "i:entry")
    again = broker.submit(leg(quantity=99), "i:entry")
    assert again == first
    assert broker.submissions == 1
    assert broker.positions() == {"AAPL": D(10)}


def test_an_oco_pair_cancels_the_other_leg_when_one_fills() -> None:
    broker = SimulatedBroker()
    broker.on_trade("AAPL", D("100"), T0)
    tp = OrderLeg("tp", "AAPL", Side.SELL, D(10), OrderType.LIMIT, limit_price=D("103"))
    sl = OrderLeg("sl", "AAPL", Side.SELL, D(10), OrderType.STOP, stop_price=D("98"))
    broker.submit_oco(tp, sl, ("b:tp", "b:sl"))
    assert sorted(prints(broker, "101", "103.5")) == ["b:sl:canceled", "b:tp:filled"]
    assert broker.open_orders() == []


def exits(quantity: int = 10) -> tuple[OrderLeg, OrderLeg]:
    return (
        OrderLeg("tp", "AAPL", Side.SELL, D(quantity), OrderType.LIMIT, limit_price=D("103")),
        OrderLeg("sl", "AAPL", Side.SELL, D(quantity), OrderType.STOP, stop_price=D("98")),
    )


BRACKET_IDS = ("k:entry", "k:tp", "k:sl")


def test_a_brackets_exits_wait_for_the_whole_entry_then_cancel_each_other() -> None:
    broker = SimulatedBroker(SimulatorConfig(partial_fill_fraction=D("0.5")))
    broker.on_trade("AAPL", D("100"), T0)
    entry = leg(order_type=OrderType.LIMIT, limit_price=D("99"))
    placed = broker.submit_bracket(entry, exits(), BRACKET_IDS)
    assert [o.status for o in placed] == ["new", "held", "held"]
    assert sorted(o.client_order_id for o in broker.open_orders()) == sorted(BRACKET_IDS)
    # Held exits do not trade, even at their prices: nothing is held to sell yet.
    assert prints(broker, "97") == ["k:entry:partially_filled"]
    assert broker.get_by_client_order_id("k:sl").status == "held"  # type: ignore[union-attr]
    assert sorted(prints(broker, "99")) == ["k:entry:filled", "k:sl:new", "k:tp:new"]
    assert prints(broker, "103") == ["k:tp:partially_filled"]
    assert sorted(prints(broker, "103")) == ["k:sl:canceled", "k:tp:filled"]
    assert broker.positions() == {}
    again = broker.submit_bracket(entry, exits(), BRACKET_IDS)
    assert [o.status for o in again] == ["filled", "filled", "canceled"]
    assert broker.submissions == 3


def test_an_entry_that_ends_unfilled_takes_its_held_exits() -> None:
    broker = SimulatedBroker(SimulatorConfig(partial_fill_fraction=D("0.4")))
    broker.on_trade("AAPL", D("100"), T0)
    broker.submit_bracket(
        leg(order_type=OrderType.LIMIT, limit_price=D("99")), exits(), BRACKET_IDS
    )
    prints(broker, "99")  # 4 of 10
    cancelled = broker.cancel("k:entry")
    assert cancelled is not None and (cancelled.status, cancelled.filled_qty) == ("canceled", D(4))
    for cid in BRACKET_IDS[1:]:
        held = broker.get_by_client_order_id(cid)
        assert held is not None and held.status == "canceled"
    assert broker.open_orders() == []
    # Rejected, it takes them too; expired at the close, likewise.
    poor = SimulatedBroker(SimulatorConfig(starting_cash=D(10)))
    poor.on_trade("AAPL", D("100"), T0)
    placed = poor.submit_bracket(leg(), exits(), BRACKET_IDS)
    assert [o.status for o in placed] == ["rejected"] * 3
    late = SimulatedBroker()
    late.on_trade("AAPL", D("100"), T0)
    late.submit_bracket(leg(order_type=OrderType.LIMIT, limit_price=D("90")), exits(), BRACKET_IDS)
    closed = late.on_trade("AAPL", D("100"), T0.replace(hour=21, minute=1))
    assert sorted(f"{o.client_order_id}:{o.status}" for o in closed) == [
        "k:entry:expired", "k:sl:canceled", "k:tp:canceled"]  # fmt: skip


def test_one_exit_with_its_entry_is_one_triggers_other() -> None:
    broker = SimulatedBroker()
    broker.on_trade("AAPL", D("100"), T0)
    _, stop = exits()
    placed = broker.submit_bracket(leg(), (stop,), ("o:entry", "o:sl"))
    assert [o.status for o in placed] == ["filled", "new"]  # a market entry fills at once
    assert prints(broker, "97.5") == ["o:sl:filled"]
    assert broker.positions() == {}
    assert not broker.supports_bracket(leg(), ())
    assert not broker.supports_bracket(leg(), exits(quantity=5))


def test_cancel_closes_an_open_order_and_leaves_a_filled_one() -> None:
    broker = SimulatedBroker()
    broker.on_trade("AAPL", D("100"), T0)
    broker.submit(leg(order_type=OrderType.LIMIT, limit_price=D("90")), "c:open")
    broker.submit(leg(), "c:done")
    assert broker.cancel("c:open") is not None
    assert broker.get_by_client_order_id("c:open").status == "canceled"  # type: ignore[union-attr]
    assert broker.cancel("c:done").status == "filled"  # type: ignore[union-attr]
    assert broker.cancel("c:unknown") is None


def test_the_clock_follows_market_time_and_weekday_sessions() -> None:
    broker = SimulatedBroker()
    broker.on_trade("AAPL", D("100"), T0)  # a Monday, 15:00 UTC
    clock = broker.clock()
    assert clock.is_open and clock.ts_next_close == datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    broker.on_trade("AAPL", D("100"), datetime(2026, 3, 7, 15, 0, tzinfo=UTC))  # Saturday
    weekend = broker.clock()
    assert not weekend.is_open
    assert weekend.ts_next_open == datetime(2026, 3, 9, 14, 30, tzinfo=UTC)
    assert len(broker.calendar(date(2026, 3, 2), date(2026, 3, 8))) == 5


def test_day_orders_expire_at_the_close_and_good_till_cancelled_ones_stay() -> None:
    broker = SimulatedBroker()
    broker.on_trade("AAPL", D("100"), T0)
    broker.submit(leg(order_type=OrderType.LIMIT, limit_price=D("90")), "d:day")
    broker.submit(
        leg(order_type=OrderType.LIMIT, limit_price=D("90"), time_in_force=TimeInForce.GTC),
        "d:gtc",
    )
    assert broker.on_trade("AAPL", D("99"), datetime(2026, 3, 2, 20, 59, tzinfo=UTC)) == []
    [expired] = broker.on_trade("AAPL", D("99"), datetime(2026, 3, 2, 21, 0, tzinfo=UTC))
    assert (expired.client_order_id, expired.status) == ("d:day", "expired")
    assert [o.client_order_id for o in broker.open_orders()] == ["d:gtc"]


def test_immediate_or_cancel_and_fill_or_kill() -> None:
    broker = SimulatedBroker(SimulatorConfig(partial_fill_fraction=D("0.5")))
    broker.on_trade("AAPL", D("100"), T0)
    ioc = broker.submit(leg(time_in_force=TimeInForce.IOC), "i:ioc")
    assert (ioc.status, ioc.filled_qty) == ("canceled", D(5))  # the rest is cancelled
    fok = broker.submit(leg(time_in_force=TimeInForce.FOK), "i:fok")
    assert (fok.status, fok.filled_qty) == ("canceled", D(0))  # not whole: nothing
    whole = SimulatedBroker()
    whole.on_trade("AAPL", D("100"), T0)
    assert whole.submit(leg(time_in_force=TimeInForce.FOK), "i:fok").status == "filled"


def test_a_print_seen_before_fills_nothing_again() -> None:
    broker = SimulatedBroker(SimulatorConfig(partial_fill_fraction=D("0.5")))
    broker.on_trade("AAPL", D("100"), T0)
    broker.submit(leg(order_type=OrderType.LIMIT, limit_price=D("99")), "r:entry")
    later = T0 + timedelta(seconds=1)
    assert len(broker.on_trade("AAPL", D("98"), later)) == 1
    assert broker.on_trade("AAPL", D("98"), later) == []  # the same print, redelivered
    order = broker.get_by_client_order_id("r:entry")
    assert order is not None and order.filled_qty == D(5)
