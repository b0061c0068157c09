"""Position sizing and rounding to an instrument's increments, in Decimal.

Quantities round down to the lot size (never more than the budget); a result of zero
means the budget buys less than one lot, which the caller sees and can report. Limit
prices round in the direction that never trades worse than asked: a buy rounds down, a
sell rounds up.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from domain.errors import ValidationError
from domain.model import Instrument, Side

HUNDRED = Decimal(100)


def _to_decimal(value: Decimal | float | int, field: str) -> Decimal:
    # Floats from market data convert through their shortest repr: 0.1 -> Decimal("0.1").
    result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not result.is_finite():
        raise ValidationError(field, "must be finite")
    return result


def _positive(value: Decimal | float | int, field: str) -> Decimal:
    result = _to_decimal(value, field)
    if result <= 0:
        raise ValidationError(field, "must be greater than zero")
    return result


def round_to_increment(value: Decimal, increment: Decimal, rounding: str) -> Decimal:
    units = (value / increment).to_integral_value(rounding=rounding)
    return units * increment


def round_quantity(quantity: Decimal | float | int, instrument: Instrument) -> Decimal:
    """Down to a whole number of lots."""
    value = _to_decimal(quantity, "quantity")
    if value < 0:
        raise ValidationError("quantity", "must not be negative")
    return round_to_increment(value, instrument.lot_size, ROUND_FLOOR)


def round_price(price: Decimal | float, instrument: Instrument) -> Decimal:
    """To the nearest tick (ties to even)."""
    return round_to_increment(_positive(price, "price"), instrument.tick_size, ROUND_HALF_EVEN)


def round_limit_price(price: Decimal | float, side: Side, instrument: Instrument) -> Decimal:
    """A buy limit rounds down and a sell limit rounds up, so rounding never makes the
    order trade at a worse price than the one asked for."""
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    return round_to_increment(_positive(price, "price"), instrument.tick_size, rounding)


def fixed_quantity(quantity: Decimal | float | int, instrument: Instrument) -> Decimal:
    _positive(quantity, "quantity")
    return round_quantity(quantity, instrument)


def fixed_notional(
    notional: Decimal | float | int, price: Decimal | float, instrument: Instrument
) -> Decimal:
    """As many lots as ``notional`` buys at ``price``, never more."""
    budget = _positive(notional, "notional")
    return round_quantity(budget / _positive(price, "price"), instrument)


def percent_of_equity(
    percent: Decimal | float | int,
    equity: Decimal | float | int,
    price: Decimal | float,
    instrument: Instrument,
) -> Decimal:
    share = _positive(percent, "percent")
    if share > HUNDRED:
        raise ValidationError("percent", "must be at most 100")
    budget = _positive(equity, "equity") * share / HUNDRED
    return round_quantity(budget / _positive(price, "price"), instrument)
