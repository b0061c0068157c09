from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import ValidationError
from domain.fills import Fill
from domain.model import Side
from domain.portfolio import Portfolio, Position

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
D = Decimal


def fill(n: int, side: Side, qty: str, price: str, *, fee: str = "0", symbol: str = "AAPL") -> Fill:
    return Fill(
        execution_id=f"x{n}",
        account="acct-1",
        symbol=symbol,
        side=side,
        quantity=D(qty),
        price=D(price),
        ts_filled=T0 + timedelta(seconds=n),
        client_order_id=f"int-{n}:entry",
        fee=D(fee),
    )


def test_adding_to_a_position_averages_the_price() -> None:
    book = Portfolio("acct-1", cash=D("10000"))
    book.apply_fill(fill(1, Side.BUY, "10", "100"))
    book.apply_fill(fill(2, Side.BUY, "30", "104"))
    position = book.position("AAPL")
    assert position.quantity == D("40")
    assert position.avg_price == D("103")
    assert book.cash == D("10000") - D("1000") - D("3120")


def test_a_partial_close_realises_pnl_and_keeps_the_average() -> None:
    position = Position("acct-1", "AAPL").apply(fill(1, Side.BUY, "10", "100"))
    position = position.apply(fill(2, Side.SELL, "4", "110"))
    assert (position.quantity, position.avg_price, position.realized_pnl) == (
        D("6"),
        D("100"),
        D("40"),
    )


def test_crossing_zero_closes_then_opens_the_rest_at_the_fill_price() -> None:
    position = Position("acct-1", "AAPL").apply(fill(1, Side.BUY, "10", "100"))
    position = position.apply(fill(2, Side.SELL, "15", "90"))
    assert position.quantity == D("-5")
    assert position.avg_price == D("90")
    assert position.realized_pnl == D("-100")
    position = position.apply(fill(3, Side.BUY, "5", "80"))
    assert position.is_flat and position.avg_price == 0
    assert position.realized_pnl == D("-50")  # the short gained 10 x 5


def test_short_positions_gain_when_the_price_falls() -> None:
    position = Position("acct-1", "AAPL").apply(fill(1, Side.SELL, "10", "50"))
    assert position.unrealized_pnl(D("45")) == D("50")


def test_applying_a_fill_twice_changes_nothing() -> None:
    book = Portfolio("acct-1", cash=D("1000"))
    assert book.apply_fill(fill(1, Side.BUY, "3", "10", fee="1")) is True
    snapshot = book.to_dict()
    assert book.apply_fill(fill(1, Side.BUY, "3", "10", fee="1")) is False
    assert book.to_dict() == snapshot


def test_equity_and_exposures_at_marks() -> None:
    book = Portfolio("acct-1", cash=D("10000"))
    book.apply_fill(fill(1, Side.BUY, "10", "100"))
    book.apply_fill(fill(2, Side.SELL, "5", "200", symbol="MSFT"))
    marks = {"AAPL": D("110"), "MSFT": D("190")}
    assert book.equity(marks) == D("10000") - D("1000") + D("1000") + D("1100") - D("950")
    assert book.gross_exposure(marks) == D("1100") + D("950")
    assert book.net_exposure(marks) == D("150")
    assert book.unrealized_pnl(marks) == D("100") + D("50")
    with pytest.raises(ValidationError):
        book.equity({"AAPL": D("1")})


def test_portfolio_round_trips_through_json() -> None:
    book = Portfolio("acct-1", cash=D("500.25"))
    book.apply_fill(fill(1, Side.BUY, "2.5", "10.10", fee="0.01"))
    restored = Portfolio.from_dict(json.loads(json.dumps(book.to_dict())))
    assert restored == book
    assert restored.apply_fill(fill(1, Side.BUY, "2.5", "10.10")) is False


def test_a_fill_for_another_account_is_refused() -> None:
    with pytest.raises(ValidationError):
        Portfolio("acct-2").apply_fill(fill(1, Side.BUY, "1", "1"))


fills_strategy = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(min_value=1, max_value=500),
        st.integers(min_value=100, max_value=20_000),  # price in cents
        st.integers(min_value=0, max_value=300),  # fee in cents
        st.sampled_from(["AAPL", "MSFT"]),
    ),
    min_size=1,
    max_size=40,
)


def build(raw: list[tuple[Side, int, int, int, str]]) -> list[Fill]:
    return [
        fill(i, side, str(qty), str(D(cents) / 100), fee=str(D(fee) / 100), symbol=symbol)
        for i, (side, qty, cents, fee, symbol) in enumerate(raw)
    ]


@given(raw=fills_strategy, mark_cents=st.integers(min_value=100, max_value=20_000))
def test_books_invariants_hold_for_any_fill_sequence(
    raw: list[tuple[Side, int, int, int, str]], mark_cents: int
) -> None:
    fills = build(raw)
    book = Portfolio("acct-1", cash=D("0"))
    for f in fills:
        book.apply_fill(f)
    mark = D(mark_cents) / 100
    marks = {"AAPL": mark, "MSFT": mark}
    for symbol in ("AAPL", "MSFT"):
        expected = sum((f.signed_quantity for f in fills if f.symbol == symbol), D(0))
        assert book.position(symbol).quantity == expected
    # Realized + unrealized - fees is the cash-flow P&L: cash spent and received plus what
    # the open quantity is worth at the mark.
    cash_flow_pnl = book.cash + book.market_value(marks)
    accounted = book.realized_pnl() + book.unrealized_pnl(marks) - book.fees()
    assert abs(cash_flow_pnl - accounted) < D("1e-20")
    # The average price of an open position lies within the prices that built it.
    for symbol, position in book.positions.items():
        if not position.is_flat:
            prices = [f.price for f in fills if f.symbol == symbol]
            assert min(prices) <= position.avg_price <= max(prices)
    # Replaying every fill again is a no-op.
    before = book.to_dict()
    assert not any(book.apply_fill(f) for f in fills)
    assert book.to_dict() == before
