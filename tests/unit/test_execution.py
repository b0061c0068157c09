"""How the books follow the broker: fills derived from cumulative quantities, statuses
followed, and the orchestration's payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.errors import ValidationError
from domain.execution import (
    BrokerOrder,
    Execution,
    LegOutcome,
    LegRequest,
    TradeRequest,
    catch_up_snapshots,
    exit_legs,
    fill_from_snapshot,
    follow_status,
    oco_stop_loss_id,
    oco_take_profit_id,
    unwind_leg,
)
from domain.model import OrderType, Side
from domain.orders import Order, OrderIntent, OrderLeg, OrderStatus, PlanKind

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
D = Decimal


def order() -> Order:
    return Order("int-1:entry", "int-1", "entry", "AAPL", Side.BUY, D(10))


def snapshot(filled: str, average: str | None, status: str = "partially_filled") -> BrokerOrder:
    return BrokerOrder(
        "b-1", "int-1:entry", status, D(filled), None if average is None else D(average)
    )


def test_each_increase_of_the_cumulative_quantity_is_one_fill_at_the_implied_price() -> None:
    book = order()
    first = fill_from_snapshot(book, snapshot("4", "100"), account="paper", ts=T0)
    assert first is not None
    assert (first.execution_id, first.quantity, first.price) == ("int-1:entry@4", D(4), D(100))
    book = book.apply_fill(first)
    second = fill_from_snapshot(book, snapshot("10", "100.6", "filled"), account="paper", ts=T0)
    assert second is not None
    assert (second.execution_id, second.quantity, second.price) == ("int-1:entry@10", D(6), D(101))
    book = book.apply_fill(second)
    assert book.avg_fill_price == D("100.6")
    assert (
        fill_from_snapshot(book, snapshot("10", "100.6", "filled"), account="paper", ts=T0) is None
    )
    assert fill_from_snapshot(book, snapshot("4", "100"), account="paper", ts=T0) is None


def test_a_snapshot_that_cannot_be_right_is_refused() -> None:
    with pytest.raises(ValidationError, match="filled_qty"):
        fill_from_snapshot(order(), snapshot("11", "100"), account="paper", ts=T0)
    with pytest.raises(ValidationError, match="avg_fill_price"):
        fill_from_snapshot(order(), snapshot("1", None), account="paper", ts=T0)
    other = BrokerOrder("b-2", "int-2:entry", "new", D(0), None)
    with pytest.raises(ValidationError, match="client_order_id"):
        fill_from_snapshot(order(), other, account="paper", ts=T0)


def test_the_books_follow_the_broker_status_but_a_stale_read_never_revives_an_order() -> None:
    accepted = follow_status(order(), BrokerOrder("b-1", "int-1:entry", "new", D(0), None), ts=T0)
    assert (accepted.status, accepted.broker_order_id) == (OrderStatus.NEW, "b-1")
    done = accepted.transition(OrderStatus.CANCELED, ts=T0)
    stale = follow_status(done, BrokerOrder("b-1", "int-1:entry", "new", D(0), None), ts=T0)
    assert stale == done
    held = accepted.transition(OrderStatus.PENDING_CANCEL, ts=T0)
    odd = follow_status(held, BrokerOrder("b-1", "int-1:entry", "expired", D(0), None), ts=T0)
    assert odd.status is OrderStatus.EXPIRED and odd.version == held.version + 1


def test_payloads_round_trip_and_validate() -> None:
    leg = OrderLeg("entry", "AAPL", Side.BUY, D(5), OrderType.LIMIT, limit_price=D("99.5"))
    request = LegRequest("int-1", leg, T0, 12.5, ({"kind": "intent", "event_id": "e"},))
    assert LegRequest.from_dict(request.to_dict()) == request
    outcome = LegOutcome.of(snapshot("4", "100"), ())
    assert LegOutcome.from_dict(outcome.to_dict()) == outcome
    assert LegOutcome.missing("x:entry").is_open and outcome.is_open
    with pytest.raises(ValidationError, match="status"):
        LegOutcome.from_dict({"client_order_id": "x", "status": "lost"})
    intent = OrderIntent("int-1", "paper", "test", PlanKind.SINGLE, (leg,), T0, {"AAPL": D(100)})
    trade = TradeRequest(intent, requires_approval=True, entry_timeout_s=5)
    assert TradeRequest.from_dict(trade.to_dict()) == trade
    assert trade.native_brackets is True
    # A request from before native brackets (no field) replays as it ran: entry first.
    older = {k: v for k, v in trade.to_dict().items() if k != "native_brackets"}
    assert TradeRequest.from_dict(older).native_brackets is False
    # A long-only strategy's request asks the risk check to refuse a short sale; one from
    # before the flag existed asks nothing.
    long_only = TradeRequest(intent, long_only=True)
    assert TradeRequest.from_dict(long_only.to_dict()) == long_only
    assert long_only.reserve_payload()["no_short"] is True
    assert TradeRequest.from_dict(older).long_only is False
    assert "no_short" not in trade.reserve_payload()
    with pytest.raises(ValidationError, match="poll_interval_s"):
        TradeRequest(intent, poll_interval_s=0)


def test_exits_are_sized_to_the_filled_entry_and_unwinds_close_a_leg() -> None:
    entry = OrderLeg("entry", "AAPL", Side.BUY, D(10))
    tp = OrderLeg("tp", "AAPL", Side.SELL, D(10), OrderType.LIMIT, limit_price=D(110))
    sl = OrderLeg("sl", "AAPL", Side.SELL, D(10), OrderType.STOP, stop_price=D(90))
    intent = OrderIntent(
        "int-2", "paper", "test", PlanKind.BRACKET, (entry, tp, sl), T0, {"AAPL": D(100)}
    )
    take, stop = exit_legs(intent, D(4))
    assert (take.quantity, stop.quantity) == (D(4), D(4))
    unwind = unwind_leg(entry, D(3))
    assert (unwind.name, unwind.side, unwind.quantity) == ("unwind-entry", Side.SELL, D(3))


def execution(cum: str, quantity: str, price: str, cid: str = "int-1:entry") -> Execution:
    return Execution(f"x-{cid}-{cum}", "b-1", cid, "AAPL", "buy", D(quantity), D(price), D(cum), T0)


def book_through(book: Order, snapshots: list[BrokerOrder]) -> list[tuple[str, Decimal, Decimal]]:
    booked = []
    for view in snapshots:
        fill = fill_from_snapshot(book, view, account="paper", ts=T0)
        assert fill is not None
        booked.append((fill.execution_id, fill.quantity, fill.price))
        book = book.apply_fill(fill)
    return booked


def test_missed_executions_are_booked_each_at_its_own_price() -> None:
    executions = [execution("4", "4", "98.9"), execution("10", "6", "98.8")]
    snapshots = catch_up_snapshots(order(), executions)
    assert [(s.filled_qty, s.status) for s in snapshots] == [
        (D(4), "partially_filled"),
        (D(10), "filled"),
    ]
    assert book_through(order(), snapshots) == [
        ("int-1:entry@4", D(4), D("98.9")),
        ("int-1:entry@10", D(6), D("98.8")),
    ]


def test_executions_the_books_cover_produce_nothing_however_they_were_learnt() -> None:
    # The books learnt of both executions from one poll: a single fill up to 10.
    polled = fill_from_snapshot(order(), snapshot("10", "98.84", "filled"), account="paper", ts=T0)
    assert polled is not None
    book = order().apply_fill(polled)
    covered = [execution("4", "4", "98.9"), execution("10", "6", "98.8")]
    assert catch_up_snapshots(book, covered) == []


def test_an_execution_straddling_what_the_books_hold_books_only_the_rest() -> None:
    polled = fill_from_snapshot(order(), snapshot("5", "99"), account="paper", ts=T0)
    assert polled is not None
    book = order().apply_fill(polled)
    later = [
        execution("4", "4", "98.9"),
        execution("10", "6", "98.8"),
        execution("2", "2", "1", "int-2:entry"),
    ]
    assert book_through(book, catch_up_snapshots(book, later)) == [
        ("int-1:entry@10", D(5), D("98.8"))
    ]
    with pytest.raises(ValidationError):
        catch_up_snapshots(order(), [execution("11", "11", "98")])


def test_oco_leg_ids_pair_up() -> None:
    assert oco_stop_loss_id("int-1:tp") == "int-1:sl"
    assert oco_take_profit_id("int-1:sl") == "int-1:tp"
    assert oco_stop_loss_id("int-1:entry") is None and oco_take_profit_id("sl") is None


def test_slippage_is_positive_when_a_fill_is_worse_than_its_reference() -> None:
    from domain.execution import slippage_bps

    assert slippage_bps(Side.BUY, D("100.10"), D(100)) == D(10)
    assert slippage_bps(Side.SELL, D("100.10"), D(100)) == D(-10)
    assert slippage_bps(Side.SELL, D("99.5"), D(100)) == D(50)
    with pytest.raises(ValidationError):
        slippage_bps(Side.BUY, D(1), D(0))


def test_a_missed_execution_of_a_cancelled_order_leaves_it_cancelled() -> None:
    cancelled = order().transition(OrderStatus.NEW, ts=T0).transition(OrderStatus.CANCELED, ts=T0)
    [view] = catch_up_snapshots(cancelled, [execution("4", "4", "98.9")])
    assert (view.status, view.filled_qty) == ("canceled", D(4))
    book = cancelled.apply_fill(fill_from_snapshot(cancelled, view, account="paper", ts=T0))  # type: ignore[arg-type]
    assert follow_status(book, view, ts=T0).status is OrderStatus.CANCELED
