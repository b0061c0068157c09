from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import ValidationError
from domain.model import AssetClass, Instrument, Side
from domain.sizing import (
    fixed_notional,
    fixed_quantity,
    percent_of_equity,
    round_limit_price,
    round_price,
    round_quantity,
)

D = Decimal
STOCK = Instrument("AAPL")
CRYPTO = Instrument("BTC/USD", AssetClass.CRYPTO, lot_size=D("0.0001"), tick_size=D("0.5"))


def test_fixed_notional_rounds_down_to_whole_lots() -> None:
    assert fixed_notional(1000, D("187.25"), STOCK) == D("5")
    assert fixed_notional(1000, 0.1, STOCK) == D("10000")  # float prices convert exactly
    assert fixed_notional(D("100"), D("60000"), CRYPTO) == D("0.0016")


def test_a_budget_below_one_lot_gives_zero() -> None:
    assert fixed_notional(100, D("187.25"), STOCK) == 0


def test_percent_of_equity() -> None:
    assert percent_of_equity(10, D("50000"), D("99.99"), STOCK) == D("50")
    with pytest.raises(ValidationError) as error:
        percent_of_equity(101, D("50000"), D("10"), STOCK)
    assert error.value.field == "percent"


def test_fixed_quantity_rounds_to_the_lot() -> None:
    assert fixed_quantity(D("7.9"), STOCK) == D("7")
    assert fixed_quantity(D("0.00019"), CRYPTO) == D("0.0001")


def test_limit_prices_round_in_the_direction_that_never_trades_worse() -> None:
    assert round_limit_price(D("100.019"), Side.BUY, STOCK) == D("100.01")
    assert round_limit_price(D("100.011"), Side.SELL, STOCK) == D("100.02")
    assert round_limit_price(D("100.01"), Side.BUY, STOCK) == D("100.01")
    assert round_price(D("100.015"), STOCK) == D("100.02")
    assert round_price(D("100.025"), STOCK) == D("100.02")  # ties to even


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: fixed_notional(0, 10, STOCK), "notional"),
        (lambda: fixed_notional(10, -1, STOCK), "price"),
        (lambda: fixed_notional(10, float("nan"), STOCK), "price"),
        (lambda: percent_of_equity(0, 100, 1, STOCK), "percent"),
        (lambda: round_quantity(-1, STOCK), "quantity"),
    ],
)
def test_bad_inputs_name_the_field(call: object, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        call()  # type: ignore[operator]
    assert error.value.field == field


@given(
    notional=st.decimals(min_value=1, max_value=10**7, places=2),
    price=st.decimals(min_value=D("0.01"), max_value=10**5, places=2),
)
def test_fixed_notional_never_exceeds_the_budget_and_wastes_less_than_a_lot(
    notional: Decimal, price: Decimal
) -> None:
    quantity = fixed_notional(notional, price, STOCK)
    assert quantity % STOCK.lot_size == 0
    assert quantity * price <= notional
    assert (quantity + STOCK.lot_size) * price > notional
