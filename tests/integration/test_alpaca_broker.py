"""The Alpaca broker adapter through the real alpaca-py client, against a local server that
speaks Alpaca's REST protocol: order types, exactly one order whatever fails, error
mapping, the rate limiter, and account, clock and calendar."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alpaca.trading.client import TradingClient

from adapters.alpaca_broker import AlpacaBroker, RateLimiter
from devhost.server import BackgroundServer
from domain.errors import RetryableFault, TerminalError, ValidationError
from domain.model import OrderType, Side, TimeInForce
from domain.orders import OrderLeg
from tests.alpaca.server import FakeAlpaca
from tests.functions.desk import Desk, make_desk

D = Decimal


@pytest.fixture
def alpaca() -> Iterator[tuple[FakeAlpaca, AlpacaBroker]]:
    fake = FakeAlpaca()
    with BackgroundServer(fake.app()) as server:
        client = TradingClient("key", "secret", paper=True, url_override=server.url)
        client._retry_wait = 0  # alpaca-py's own resend of a 429/504 waits 3 s otherwise
        yield fake, AlpacaBroker(client)


def leg(order_type: OrderType = OrderType.MARKET, **prices: Decimal) -> OrderLeg:
    return OrderLeg("entry", "AAPL", Side.BUY, D(10), order_type, TimeInForce.DAY, **prices)


@pytest.mark.parametrize(
    ("order", "wire"),
    [
        (leg(), {"type": "market"}),
        (leg(OrderType.LIMIT, limit_price=D("99.5")), {"type": "limit", "limit_price": "99.5"}),
        (leg(OrderType.STOP, stop_price=D(95)), {"type": "stop", "stop_price": "95.0"}),
        (
            leg(OrderType.STOP_LIMIT, stop_price=D(95), limit_price=D("94.5")),
            {"type": "stop_limit", "stop_price": "95.0", "limit_price": "94.5"},
        ),
        (
            leg(OrderType.TRAILING_STOP, trail_percent=D(2)),
            {"type": "trailing_stop", "trail_percent": "2.0"},
        ),
    ],
    ids=["market", "limit", "stop", "stop_limit", "trailing_stop"],
)
def test_each_order_type_reaches_alpaca_as_it_should(
    alpaca: tuple[FakeAlpaca, AlpacaBroker], order: OrderLeg, wire: dict[str, str]
) -> None:
    fake, broker = alpaca
    placed = broker.submit(order, "int-1:entry")
    [sent] = fake.orders.values()
    assert {k: str(sent[k]) for k in wire} == wire
    assert (sent["client_order_id"], sent["qty"], sent["side"]) == ("int-1:entry", "10.0", "buy")
    assert placed.client_order_id == "int-1:entry"
    if order.order_type is OrderType.MARKET:
        assert (placed.status, placed.filled_qty, placed.avg_fill_price) == (
            "filled",
            D(10),
            D(100),
        )
    else:
        assert (placed.status, placed.filled_qty) == ("new", D(0))
    assert broker.get_by_client_order_id("int-1:entry") == placed


@pytest.mark.parametrize(
    "faults",
    [["504-after"], ["429", "429"], ["500-after"], ["500", None]],
    ids=["gateway-timeout-after-taking", "throttled-twice", "5xx-after-taking", "5xx-before"],
)
def test_whatever_fails_there_is_exactly_one_order(
    alpaca: tuple[FakeAlpaca, AlpacaBroker], faults: list[str | None]
) -> None:
    fake, broker = alpaca
    fake.faults = deque(faults)
    try:
        placed = broker.submit(leg(), "int-2:entry")
    except RetryableFault:
        # Refused before Alpaca took it: the activity's retry sends it again.
        placed = broker.submit(leg(), "int-2:entry")
    assert len(fake.orders) == 1
    assert placed.client_order_id == "int-2:entry" and placed.status == "filled"


def test_a_rejection_is_final_with_alpacas_reason(alpaca: tuple[FakeAlpaca, AlpacaBroker]) -> None:
    fake, broker = alpaca
    fake.reject = "insufficient buying power"
    with pytest.raises(TerminalError, match="insufficient buying power"):
        broker.submit(leg(), "int-3:entry")
    assert broker.get_by_client_order_id("int-3:entry") is None


def test_crypto_orders_alpaca_cannot_take_are_refused_up_front(
    alpaca: tuple[FakeAlpaca, AlpacaBroker],
) -> None:
    fake, broker = alpaca
    trailing = OrderLeg(
        "entry", "BTC/USD", Side.SELL, D(1), OrderType.TRAILING_STOP, trail_percent=D(2)
    )
    with pytest.raises(ValidationError, match="crypto"):
        broker.submit(trailing, "int-4:entry")
    assert fake.posts == 0
    take_profit, stop_loss = exits("BTC/USD")
    assert broker.supports_oco(take_profit, stop_loss) is False
    with pytest.raises(ValidationError, match="equities only"):
        broker.submit_oco(take_profit, stop_loss, ("int-4:tp", "int-4:sl"))
    assert fake.posts == 0


def test_cancel_open_orders_positions_and_account(alpaca: tuple[FakeAlpaca, AlpacaBroker]) -> None:
    _, broker = alpaca
    broker.submit(leg(OrderType.LIMIT, limit_price=D(90)), "int-5:entry")
    broker.submit(leg(), "int-6:entry")
    assert [o.client_order_id for o in broker.open_orders()] == ["int-5:entry"]
    cancelled = broker.cancel("int-5:entry")
    assert cancelled is not None and cancelled.status == "canceled"
    assert broker.cancel("int-6:entry") is not None  # filled: nothing to cancel, no error
    assert broker.cancel("int-unknown:entry") is None
    assert broker.open_orders() == []
    assert broker.positions() == {"AAPL": D(10)}
    assert broker.buying_power() == D("250000.50")


def test_clock_and_calendar_are_utc(alpaca: tuple[FakeAlpaca, AlpacaBroker]) -> None:
    _, broker = alpaca
    clock = broker.clock()
    assert clock.is_open and clock.ts_next_close == datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    assert broker.calendar(date(2026, 3, 2), date(2026, 3, 3)) == [
        (datetime(2026, 3, 2, 14, 30, tzinfo=UTC), datetime(2026, 3, 2, 21, 0, tzinfo=UTC)),
        (datetime(2026, 3, 3, 14, 30, tzinfo=UTC), datetime(2026, 3, 3, 18, 0, tzinfo=UTC)),
    ]


def test_the_rate_limiter_holds_concurrent_callers_to_the_limit() -> None:
    limiter = RateLimiter(limit=5, window=0.5)
    stamps: list[float] = []
    lock = threading.Lock()

    def call() -> None:
        limiter.acquire()
        with lock:
            stamps.append(time.monotonic())

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 0.5 - 0.01  # never six calls in one window


def test_the_desk_trades_through_alpaca_and_a_lost_answer_makes_no_second_order(
    tmp_path: Path, alpaca: tuple[FakeAlpaca, AlpacaBroker]
) -> None:
    fake, broker = alpaca
    fake.faults = deque(["504-after"])  # Alpaca takes the order; the answer is lost
    desk = make_desk(tmp_path, broker=broker)
    try:
        body = {"symbol": "AAPL", "side": "buy", "quantity": "10", "reference_price": "100"}
        placed = desk.http("POST", "orders", json=body)
        assert placed.status_code == 202, placed.text
        desk.settle(2)
        shown = desk.http("GET", f"orders/{placed.json()['intent_id']}").json()
        assert shown["output"]["outcome"] == "completed"
        assert len(fake.orders) == 1
        [position] = desk.store.positions("paper")
        assert position.quantity == D(10) and position.avg_price == D(100)
    finally:
        desk.close()


def test_a_new_order_goes_straight_out_and_only_a_retry_asks_first(
    tmp_path: Path, alpaca: tuple[FakeAlpaca, AlpacaBroker]
) -> None:
    fake, broker = alpaca
    desk = make_desk(tmp_path, broker=broker)
    lookup, submit = "GET /v2/orders:by_client_order_id", "POST /v2/orders"
    try:
        body = {"symbol": "AAPL", "side": "buy", "quantity": "10", "reference_price": "100"}
        placed = desk.http("POST", "orders", json=body)
        assert placed.status_code == 202, placed.text
        desk.settle(2)
        # Booked just now, so never sent before: nothing to ask Alpaca before sending.
        sent = fake.calls.index(submit)
        assert lookup not in fake.calls[:sent]
        assert fake.calls.count(submit) == 1

        assert len(fake.orders) == 1
    finally:
        desk.close()


def test_open_orders_are_all_read_page_by_page() -> None:
    fake = FakeAlpaca()
    with BackgroundServer(fake.app()) as server:
        client = TradingClient("key", "secret", paper=True, url_override=server.url)
        broker = AlpacaBroker(client, page_size=3)
        for n in range(8):
            broker.submit(leg(OrderType.LIMIT, limit_price=D(90)), f"int-p{n}:entry")
        found = sorted(o.client_order_id for o in broker.open_orders())
        assert found == sorted(f"int-p{n}:entry" for n in range(8))


def test_crypto_positions_keep_the_desks_symbols() -> None:
    from adapters.alpaca_broker import desk_symbol

    assert desk_symbol("BTCUSD", "crypto") == "BTC/USD"
    assert desk_symbol("ETHUSDT", "crypto") == "ETH/USDT"
    assert desk_symbol("BTC/USD", "crypto") == "BTC/USD"
    assert desk_symbol("AAPL", "us_equity") == "AAPL"


def exits(
    symbol: str = "AAPL",
    kind: OrderType = OrderType.STOP,
    stop_price: Decimal = Decimal(95),
    limit_price: Decimal | None = None,
) -> tuple[OrderLeg, OrderLeg]:
    take_profit = OrderLeg("tp", symbol, Side.SELL, D(10), OrderType.LIMIT, limit_price=D(110))
    stop_loss = OrderLeg(
        "sl", symbol, Side.SELL, D(10), kind, stop_price=stop_price, limit_price=limit_price
    )
    return take_profit, stop_loss


def test_exits_go_as_one_oco_and_each_leg_answers_to_the_desks_id(
    alpaca: tuple[FakeAlpaca, AlpacaBroker],
) -> None:
    fake, broker = alpaca
    take_profit, stop_loss = exits()
    assert broker.supports_oco(take_profit, stop_loss)
    tp, sl = broker.submit_oco(take_profit, stop_loss, ("int-7:tp", "int-7:sl"))
    [parent] = [o for o in fake.orders.values() if o["client_order_id"] == "int-7:tp"]
    assert parent["order_class"] == "oco" and parent["limit_price"] == "110.0"
    [leg] = parent["legs"]
    assert (leg["type"], leg["stop_price"]) == ("stop", "95.0")
    assert leg["client_order_id"] != "int-7:sl"  # Alpaca's own id for the leg
    assert (tp.client_order_id, tp.broker_order_id) == ("int-7:tp", parent["id"])
    assert (sl.client_order_id, sl.broker_order_id) == ("int-7:sl", leg["id"])

    assert sorted(o.client_order_id for o in broker.open_orders()) == ["int-7:sl", "int-7:tp"]
    fake.fill_order(leg["id"], D("94.9"))  # the stop triggers; Alpaca cancels the other
    stopped = broker.get_by_client_order_id("int-7:sl")
    assert stopped is not None and stopped.status == "filled"
    assert stopped.filled_qty == D(10) and stopped.avg_fill_price == D("94.9")
    taken = broker.get_by_client_order_id("int-7:tp")
    assert taken is not None and taken.status == "canceled"
    assert broker.open_orders() == []


def test_a_stop_limit_stop_loss_is_linked_too_but_a_trailing_one_is_not(
    alpaca: tuple[FakeAlpaca, AlpacaBroker],
) -> None:
    fake, broker = alpaca
    take_profit, stop_loss = exits(
        kind=OrderType.STOP_LIMIT, stop_price=D(95), limit_price=D("94.5")
    )
    broker.submit_oco(take_profit, stop_loss, ("int-8:tp", "int-8:sl"))
    assert fake.posts == 1
    sl = broker.get_by_client_order_id("int-8:sl")
    assert sl is not None and sl.status == "new"
    cancelled = broker.cancel("int-8:sl")
    assert cancelled is not None and cancelled.status == "canceled"
    tp = broker.get_by_client_order_id("int-8:tp")
    assert tp is not None and tp.status == "canceled"
    trailing = OrderLeg("sl", "AAPL", Side.SELL, D(10), OrderType.TRAILING_STOP, trail_percent=D(2))
    assert broker.supports_oco(take_profit, trailing) is False


def test_a_lost_oco_answer_makes_no_second_oco(alpaca: tuple[FakeAlpaca, AlpacaBroker]) -> None:
    fake, broker = alpaca
    fake.faults = deque(["504-after", None])  # taken; the answer (and alpaca-py's resend) lost
    tp, sl = broker.submit_oco(*exits(), ("int-9:tp", "int-9:sl"))
    assert sum(1 for o in fake.orders.values() if o["order_class"] == "oco") == 2  # parent+leg
    assert len([o for o in fake.orders.values() if o["client_order_id"] == "int-9:tp"]) == 1
    assert (tp.status, sl.status) == ("new", "new")


def test_an_order_is_replaced_once_whatever_is_resent(
    alpaca: tuple[FakeAlpaca, AlpacaBroker],
) -> None:
    fake, broker = alpaca
    first = broker.submit(leg(OrderType.LIMIT, limit_price=D(90)), "int-10:entry")
    amended = broker.replace("int-10:entry", "int-10:entry.r1", limit_price=D("90.5"))
    assert amended.client_order_id == "int-10:entry.r1" and amended.status == "new"
    assert fake.orders[amended.broker_order_id]["limit_price"] == "90.5"
    old = broker.get_by_id(first.broker_order_id)
    assert old is not None and old.status == "replaced"
    again = broker.replace("int-10:entry", "int-10:entry.r1", limit_price=D("90.5"))
    assert again.broker_order_id == amended.broker_order_id
    assert fake.patches == 1
    with pytest.raises(ValidationError):
        broker.replace("int-10:entry.r1", "int-10:entry.r2")
    assert broker.get_by_id("00000000-0000-4000-8000-000000000000") is None


BRACKET = {
    "symbol": "AAPL",
    "side": "buy",
    "quantity": "10",
    "reference_price": "100",
    "take_profit": {"limit_price": "110"},
    "stop_loss": {"stop_price": "95"},
}


def legs_shown(desk: Desk, intent_id: str) -> dict[str, str]:
    shown = desk.http("GET", f"orders/{intent_id}").json()
    return {o["leg"]: o["status"] for o in shown["orders"]}


def outcome(desk: Desk, intent_id: str) -> str | None:
    output = desk.http("GET", f"orders/{intent_id}").json()["output"]
    return None if output is None else str(output["outcome"])


@pytest.fixture
def on_alpaca(tmp_path: Path, alpaca: tuple[FakeAlpaca, AlpacaBroker]) -> Iterator[OnAlpaca]:
    fake, broker = alpaca
    desk = make_desk(tmp_path, broker=broker)
    try:
        yield OnAlpaca(fake, desk, broker)
    finally:
        desk.close()


@dataclasses.dataclass
class OnAlpaca:
    """The desk trading through the adapter against the local Alpaca."""

    fake: FakeAlpaca
    desk: Desk
    broker: AlpacaBroker

    def place(self, body: Mapping[str, object]) -> str:
        placed = self.desk.http("POST", "orders", json=body)
        assert placed.status_code == 202, placed.text
        self.desk.settle(2)
        return str(placed.json()["intent_id"])

    def at_alpaca(self, client_order_id: str) -> dict[str, Any]:
        [order] = [o for o in self.fake.orders.values() if o["client_order_id"] == client_order_id]
        return order

    def finished(self, intent_id: str, legs: dict[str, str]) -> None:
        """The trade completed with its legs so, and left the position flat."""
        self.desk.settle(5)
        assert outcome(self.desk, intent_id) == "completed"
        assert legs_shown(self.desk, intent_id) == legs
        assert self.desk.store.positions("paper")[0].quantity == 0
        assert self.desk.chain_ok()


def test_a_bracket_goes_to_alpaca_as_one_order_whose_exits_protect_the_fill(
    on_alpaca: OnAlpaca,
) -> None:
    fake, desk = on_alpaca.fake, on_alpaca.desk
    intent_id = on_alpaca.place(BRACKET)
    assert fake.posts == 1  # entry and both exits in one request
    parent = on_alpaca.at_alpaca(f"{intent_id}:entry")
    assert parent["order_class"] == "bracket"
    take, stop = parent["legs"]
    # The entry filled at once: the exits are live, as Alpaca shows them.
    assert (take["status"], stop["status"]) == ("new", "held")
    assert legs_shown(desk, intent_id) == {"entry": "filled", "tp": "new", "sl": "held"}
    fake.fill_order(stop["id"], D("94.9"))  # the stop triggers; Alpaca cancels the other
    on_alpaca.finished(intent_id, {"entry": "filled", "tp": "canceled", "sl": "filled"})
    assert fake.posts == 1


def test_the_kill_switch_cancels_a_filled_brackets_exits_alpaca_does_not_list(
    on_alpaca: OnAlpaca,
) -> None:
    desk = on_alpaca.desk
    intent_id = on_alpaca.place(BRACKET)  # filled at once: its exits are live
    parent = on_alpaca.at_alpaca(f"{intent_id}:entry")
    assert parent["status"] == "filled"
    # Alpaca lists neither the done parent nor, nested under it, its live legs.
    assert {o.client_order_id for o in on_alpaca.broker.open_orders()} == set()
    assert {leg["status"] for leg in parent["legs"]} == {"new", "held"}
    halt = desk.http("POST", "killswitch", admin=True, json={"action": "halt", "reason": "drill"})
    assert halt.status_code == 202
    desk.settle(5)
    assert {leg["status"] for leg in parent["legs"]} == {"canceled"}
    assert legs_shown(desk, intent_id) == {"entry": "filled", "tp": "canceled", "sl": "canceled"}
    assert desk.store.positions("paper")[0].quantity == 0


def test_a_refused_bracket_leaves_no_exit_in_the_books(on_alpaca: OnAlpaca) -> None:
    fake, desk = on_alpaca.fake, on_alpaca.desk
    fake.refuse_bracket = "take_profit.limit_price must be >= base_price + 0.01"
    intent_id = on_alpaca.place({**BRACKET, "order_type": "limit", "limit_price": "99"})
    assert legs_shown(desk, intent_id) == {"entry": "new"}  # the exits wait for a fill
    desk.fire("reconciliation")
    desk.settle()
    [run] = [s for s in desk.engine.query() if s.name == "reconcile"]
    assert run.output is not None and run.output["alerts"] == []


def test_a_legs_parent_is_asked_for_directly_once_known(on_alpaca: OnAlpaca) -> None:
    fake, broker = on_alpaca.fake, on_alpaca.broker
    entry, exit_legs = bracket_legs()
    broker.submit_bracket(entry, exit_legs, ("int-23:entry", "int-23:tp", "int-23:sl"))
    before = fake.requests
    for cid in ("int-23:tp", "int-23:sl"):
        found = broker.get_by_client_order_id(cid)
        assert found is not None and found.client_order_id == cid
    assert fake.requests - before == 2  # one each: the entry, with its legs
    fresh = AlpacaBroker(broker._client)  # another instance: it probes first
    before = fake.requests
    assert fresh.get_by_client_order_id("int-23:sl") is not None
    assert fake.requests - before == 2


def test_a_part_filled_bracket_entry_gets_exits_for_what_filled(on_alpaca: OnAlpaca) -> None:
    fake, desk = on_alpaca.fake, on_alpaca.desk
    fake.fill = False  # the entry waits for the market
    intent_id = on_alpaca.place(BRACKET)
    parent = on_alpaca.at_alpaca(f"{intent_id}:entry")
    fake.fill_order(parent["id"], D(100), D(4))  # 4 of 10, then nothing until the deadline
    desk.settle(61)
    desk.settle(5)
    assert parent["status"] == "canceled"
    assert {leg["status"] for leg in parent["legs"]} == {"canceled"}  # went with the entry
    oco = on_alpaca.at_alpaca(f"{intent_id}:tp-part")
    assert (oco["order_class"], oco["qty"]) == ("oco", "4.0")
    assert legs_shown(desk, intent_id) == {
        "entry": "canceled", "tp": "canceled", "sl": "canceled",
        "tp-part": "new", "sl-part": "new"}  # fmt: skip
    fake.fill_order(oco["id"], D(110))
    on_alpaca.finished(
        intent_id,
        {
            "entry": "canceled",
            "tp": "canceled",
            "sl": "canceled",
            "tp-part": "filled",
            "sl-part": "canceled",
        },
    )


@pytest.mark.parametrize(
    ("exit_field", "exit_body", "leg"),
    [("stop_loss", {"stop_price": "95"}, "sl"), ("take_profit", {"limit_price": "110"}, "tp")],
)
def test_an_entry_with_one_exit_goes_as_one_oto_order(
    on_alpaca: OnAlpaca, exit_field: str, exit_body: dict[str, str], leg: str
) -> None:
    fake, desk = on_alpaca.fake, on_alpaca.desk
    body = {k: v for k, v in BRACKET.items() if k not in ("take_profit", "stop_loss")}
    intent_id = on_alpaca.place({**body, exit_field: exit_body})
    parent = on_alpaca.at_alpaca(f"{intent_id}:entry")
    assert parent["order_class"] == "oto" and fake.posts == 1
    [exit_leg] = parent["legs"]
    assert legs_shown(desk, intent_id) == {"entry": "filled", leg: exit_leg["status"]}
    fake.fill_order(exit_leg["id"], D("94.9") if leg == "sl" else D(110))
    on_alpaca.finished(intent_id, {"entry": "filled", leg: "filled"})


def test_a_bracket_alpaca_refuses_goes_as_an_entry_then_one_oco(on_alpaca: OnAlpaca) -> None:
    fake, desk = on_alpaca.fake, on_alpaca.desk
    fake.refuse_bracket = "bracket orders are not allowed for this account"
    intent_id = on_alpaca.place(BRACKET)
    assert on_alpaca.at_alpaca(f"{intent_id}:entry")["order_class"] == "simple"
    parent = on_alpaca.at_alpaca(f"{intent_id}:tp")
    assert parent["order_class"] == "oco"
    fake.fill_order(parent["id"], D(110))
    on_alpaca.finished(intent_id, {"entry": "filled", "tp": "filled", "sl": "canceled"})
    decided = desk.store.load(f"bracket:{intent_id}")
    assert decided is not None and decided.value["native"] is False


def bracket_legs(kind: OrderType = OrderType.MARKET) -> tuple[OrderLeg, tuple[OrderLeg, ...]]:
    entry = leg(OrderType.LIMIT, limit_price=D(100)) if kind is OrderType.LIMIT else leg()
    return entry, exits()


def test_a_brackets_legs_answer_to_the_desks_ids_whatever_is_resent(
    alpaca: tuple[FakeAlpaca, AlpacaBroker],
) -> None:
    fake, broker = alpaca
    fake.fill = False
    fake.faults = deque(["504-after", None])  # taken; the answer (and alpaca-py's resend) lost
    entry, (take_profit, stop_loss) = bracket_legs(OrderType.LIMIT)
    ids = ("int-20:entry", "int-20:tp", "int-20:sl")
    assert broker.supports_bracket(entry, (take_profit, stop_loss))
    placed = broker.submit_bracket(entry, (take_profit, stop_loss), ids)
    assert [o.client_order_id for o in placed] == list(ids)
    assert [o.status for o in placed] == ["new", "held", "held"]
    [parent] = [o for o in fake.orders.values() if o["client_order_id"] == "int-20:entry"]
    assert parent["order_class"] == "bracket" and parent["limit_price"] == "100.0"
    assert len(fake.orders) == 3  # one bracket, whatever was resent
    take, stop = parent["legs"]
    assert (take["type"], take["limit_price"], stop["type"], stop["stop_price"]) == (
        "limit", "110.0", "stop", "95.0")  # fmt: skip
    assert {o.client_order_id for o in broker.open_orders()} == set(ids)

    fake.fill_order(parent["id"], D(100))  # in full: the exits go live
    tp = broker.get_by_client_order_id("int-20:tp")
    assert tp is not None and (tp.status, tp.broker_order_id) == ("new", take["id"])
    fake.fill_order(take["id"], D(110))
    sl = broker.get_by_client_order_id("int-20:sl")
    assert sl is not None and (sl.status, sl.broker_order_id) == ("canceled", stop["id"])
    executions = broker.executions(datetime(2026, 3, 1, tzinfo=UTC))
    assert [e.client_order_id for e in executions] == ["int-20:entry", "int-20:tp"]


def test_cancelling_a_brackets_entry_takes_its_held_exits(
    alpaca: tuple[FakeAlpaca, AlpacaBroker],
) -> None:
    fake, broker = alpaca
    fake.fill = False
    entry, exit_legs = bracket_legs(OrderType.LIMIT)
    broker.submit_bracket(entry, exit_legs, ("int-21:entry", "int-21:tp", "int-21:sl"))
    cancelled = broker.cancel("int-21:entry")
    assert cancelled is not None and cancelled.status == "canceled"
    statuses = [broker.get_by_client_order_id(cid) for cid in ("int-21:tp", "int-21:sl")]
    assert [None if o is None else o.status for o in statuses] == ["canceled", "canceled"]
    assert broker.open_orders() == []


def test_only_what_alpaca_takes_goes_as_a_bracket(
    alpaca: tuple[FakeAlpaca, AlpacaBroker],
) -> None:
    fake, broker = alpaca
    entry, (take_profit, stop_loss) = bracket_legs()
    assert broker.supports_bracket(entry, (take_profit, stop_loss))
    assert broker.supports_bracket(entry, (stop_loss,))  # OTO
    trailing = OrderLeg("sl", "AAPL", Side.SELL, D(10), OrderType.TRAILING_STOP, trail_percent=D(2))
    refused = [
        (dataclasses.replace(entry, order_type=OrderType.STOP, stop_price=D(101)), (take_profit,)),
        (entry, (take_profit, trailing)),
        (entry, (take_profit, take_profit)),
        (entry, ()),
        (dataclasses.replace(entry, time_in_force=TimeInForce.IOC), (take_profit,)),
        (dataclasses.replace(entry, quantity=D("10.5")), (take_profit,)),
        (entry, (dataclasses.replace(take_profit, quantity=D(5)),)),
        (dataclasses.replace(entry, symbol="BTC/USD"), (take_profit,)),
    ]
    for bad_entry, bad_exits in refused:
        assert not broker.supports_bracket(bad_entry, bad_exits), (bad_entry, bad_exits)
    with pytest.raises(ValidationError):
        broker.submit_bracket(entry, (take_profit, trailing), ("int-22:entry", "int-22:tp", "x"))
    with pytest.raises(ValidationError, match="exits of"):
        broker.submit_bracket(entry, (take_profit,), ("int-22:entry", "int-22:sl"))
    assert fake.posts == 0


def books_state(desk: Desk) -> tuple[object, ...]:
    orders = sorted(
        (o.client_order_id, o.status.value, o.filled_qty, o.version)
        for o in desk.store.order_history(
            "paper", datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC), limit=100
        ).orders
    )
    fills = sorted(
        (f.execution_id, f.quantity, f.price)
        for cid, *_ in orders
        for f in desk.store.fills_for_order(cid)
    )
    positions = [(p.symbol, p.quantity, p.avg_price) for p in desk.store.positions("paper")]
    return tuple(orders), tuple(fills), tuple(positions), len(desk.store.records("paper"))


def test_reconciliation_books_missed_executions_and_cancels_once(
    tmp_path: Path, alpaca: tuple[FakeAlpaca, AlpacaBroker]
) -> None:
    fake, broker = alpaca
    # Polls ten minutes apart: only the reconciliation can explain what the books learn.
    desk = make_desk(tmp_path, broker=broker, poll_interval_s=600, entry_timeout_s=1200)
    try:
        ids = []
        for quantity, price in (("10", "99"), ("3", "95")):
            body = {"symbol": "AAPL", "side": "buy", "quantity": quantity,
                    "order_type": "limit", "limit_price": price}  # fmt: skip
            placed = desk.http("POST", "orders", json=body)
            assert placed.status_code == 202, placed.text
            ids.append(placed.json()["intent_id"])
        desk.settle(1)
        filling, cancelled = (f"{intent}:entry" for intent in ids)
        by_cid = {o["client_order_id"]: o["id"] for o in fake.orders.values()}
        fake.fill_order(by_cid[filling], D("98.9"), D(4))  # two executions nobody reports
        fake.fill_order(by_cid[filling], D("98.8"))
        fake.cancel_at_broker(by_cid[cancelled])  # and a cancel nobody reports

        desk.fire("reconciliation")
        desk.settle()

        order = desk.store.get_order(filling)
        assert order is not None and (order.status.value, order.filled_qty) == ("filled", D(10))
        booked = {
            f.execution_id: (f.quantity, f.price) for f in desk.store.fills_for_order(filling)
        }
        assert booked == {f"{filling}@4": (D(4), D("98.9")), f"{filling}@10": (D(6), D("98.8"))}
        other = desk.store.get_order(cancelled)
        assert other is not None and other.status.value == "canceled"
        [position] = desk.store.positions("paper")
        assert position.quantity == D(10) and position.avg_price == D("98.84")
        risk = desk.engine.read_entity(("RiskEntity", "paper")).state
        assert isinstance(risk, dict) and len(risk["executions"]) == 2
        [run] = [s for s in desk.engine.query() if s.name == "reconcile"]
        assert run.output is not None and len(run.output["fixed"]) == 3

        before = books_state(desk)
        desk.fire("reconciliation")  # a second run: nothing left to fix
        desk.settle()
        assert books_state(desk) == before
        second = [s for s in desk.engine.query() if s.name == "reconcile" and s != run]
        assert [s.output["fixed"] for s in second if s.output is not None] == [[]]
    finally:
        desk.close()


def test_reconciliation_follows_a_brackets_legs_by_the_desks_ids(
    tmp_path: Path, alpaca: tuple[FakeAlpaca, AlpacaBroker]
) -> None:
    fake, broker = alpaca
    fake.fill = False
    # Polls ten minutes apart: only the reconciliation can explain what the books learn.
    desk = make_desk(tmp_path, broker=broker, poll_interval_s=600, entry_timeout_s=1200)
    try:
        placed = desk.http("POST", "orders", json=BRACKET)
        intent_id = placed.json()["intent_id"]
        desk.settle(1)
        desk.fire("reconciliation")  # the exits held at Alpaca are what the books hold
        desk.settle()
        [quiet] = [s for s in desk.engine.query() if s.name == "reconcile"]
        assert quiet.output is not None and quiet.output["fixed"] == []
        assert quiet.output["alerts"] == []
        by_cid = {o["client_order_id"]: o for o in fake.orders.values()}
        parent = by_cid[f"{intent_id}:entry"]
        take, _stop = parent["legs"]
        fake.fill_order(parent["id"], D(100))  # nobody reports the entry's fill
        fake.fill_order(take["id"], D(110))  # nor the take-profit's, nor the stop's cancel

        desk.fire("reconciliation")
        desk.settle()
        legs = {
            o.leg: (o.status.value, o.filled_qty) for o in desk.store.orders_for_intent(intent_id)
        }
        assert legs == {
            "entry": ("filled", D(10)),
            "tp": ("filled", D(10)),
            "sl": ("canceled", D(0)),
        }
        fills = {f.execution_id for f in desk.store.fills_for_order(f"{intent_id}:tp")}
        assert fills == {f"{intent_id}:tp@10"}
        assert desk.store.positions("paper")[0].quantity == 0
        before = books_state(desk)
        desk.fire("reconciliation")
        desk.settle()
        assert books_state(desk) == before
    finally:
        desk.close()


def test_exits_alpaca_will_not_link_are_linked_by_the_orchestration(
    on_alpaca: OnAlpaca,
) -> None:
    fake = on_alpaca.fake
    fake.refuse_oco = fake.refuse_bracket = "account is not permitted to submit advanced orders"
    intent_id = on_alpaca.place(BRACKET)
    tp, sl = on_alpaca.at_alpaca(f"{intent_id}:tp"), on_alpaca.at_alpaca(f"{intent_id}:sl")
    assert {tp["order_class"], sl["order_class"]} == {"simple"}
    fake.fill_order(tp["id"], D(110))
    on_alpaca.finished(intent_id, {"entry": "filled", "tp": "filled", "sl": "canceled"})
    assert sl["status"] == "canceled"  # the desk cancelled it


def test_only_whole_share_day_or_gtc_exits_go_as_an_oco(
    alpaca: tuple[FakeAlpaca, AlpacaBroker],
) -> None:
    _fake, broker = alpaca
    take_profit, stop_loss = exits()
    assert broker.supports_oco(take_profit, stop_loss)
    half = dataclasses.replace(take_profit, quantity=D("10.5"))
    assert not broker.supports_oco(half, dataclasses.replace(stop_loss, quantity=D("10.5")))
    ioc = dataclasses.replace(take_profit, time_in_force=TimeInForce.IOC)
    assert not broker.supports_oco(
        ioc, dataclasses.replace(stop_loss, time_in_force=TimeInForce.IOC)
    )


def test_executions_name_their_orders_and_skip_what_they_cannot_read(
    alpaca: tuple[FakeAlpaca, AlpacaBroker],
) -> None:
    fake, broker = alpaca
    broker.submit(leg(), "int-11:entry")  # filled at once: one FILL activity
    fake.activities.append(
        {"id": "zz-broken", "activity_type": "FILL", "transaction_time": "2026-03-02T15:00:05Z"}
    )
    since = datetime(2026, 3, 1, tzinfo=UTC)
    [execution] = broker.executions(since)
    assert (execution.client_order_id, execution.quantity, execution.cum_qty) == (
        "int-11:entry", D(10), D(10))  # fmt: skip
    assert execution.price == D(100) and execution.symbol == "AAPL"
    # An order older than the listing window is still named, through a lookup by its id.
    for order in fake.orders.values():
        order["submitted_at"] = "2026-01-02T15:00:00+00:00"
    [older] = broker.executions(since)
    assert older.client_order_id == "int-11:entry"
