"""From a signal to an intent: the difference of targets, in the strategy's units."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from domain.errors import ValidationError
from domain.model import OrderType, Side
from domain.orders import OrderIntent, PlanKind
from domain.planning import SizingRule, plan_intent
from domain.serde import ts_str
from domain.strategies import Signal

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
D = Decimal


def single(target: int, price: float = 101.0) -> Signal:
    return Signal("sma:AAPL", ("AAPL",), (target,), (price,), T0)


def test_a_flip_from_short_to_long_trades_twice_the_unit() -> None:
    intent = plan_intent(single(1), (-1,), SizingRule(D(10)), account="paper")
    assert intent is not None and intent.kind is PlanKind.SINGLE
    [leg] = intent.legs
    assert (leg.side, leg.quantity, leg.order_type) == (Side.BUY, D(20), OrderType.MARKET)
    assert intent.reference_prices == {"AAPL": D("101.00")}
    again = plan_intent(single(1), (-1,), SizingRule(D(10)), account="paper")
    assert again is not None and again.intent_id == intent.intent_id


def test_the_intent_id_is_derived_from_the_signal_time_in_utc() -> None:
    # A signal stamped in another zone names the same instant: the same ids, and the time
    # written as UTC wherever the signal is recorded.
    local = T0.astimezone(timezone(timedelta(hours=-5)))
    signal = Signal("sma:AAPL", ("AAPL",), (1,), (101.0,), local)
    assert signal.to_dict()["ts_signal"] == ts_str(T0) == "2026-03-02T15:00:00+00:00"
    assert signal.signal_id == single(1).signal_id
    intent = plan_intent(signal, (0,), SizingRule(D(10)), account="paper")
    assert intent is not None
    assert intent.intent_id == OrderIntent.derive_id("sma:AAPL", "paper", ["AAPL"], T0, [1])


def test_no_change_of_target_is_no_intent() -> None:
    assert plan_intent(single(0), (0,), SizingRule(D(10)), account="paper") is None


def test_a_bracket_strategy_enters_from_flat_with_exits_around_the_price() -> None:
    rule = SizingRule.from_config(
        {"quantity": 5, "plan": "bracket", "take_profit_pct": 1, "stop_loss_pct": 0.5}
    )
    long = plan_intent(single(1, 200.0), (0,), rule, account="paper")
    assert long is not None and long.kind is PlanKind.BRACKET
    _, tp, sl = long.legs
    assert (tp.side, tp.limit_price, sl.stop_price) == (Side.SELL, D("202.00"), D("199.00"))
    short = plan_intent(single(-1, 200.0), (0,), rule, account="paper")
    assert short is not None
    assert (short.legs[1].limit_price, short.legs[2].stop_price) == (D("198.00"), D("201.00"))
    # The exits close the position: the strategy's own exit is not traded.
    assert plan_intent(single(0, 200.0), (1,), rule, account="paper") is None


def test_a_pair_trades_both_symbols_the_second_by_the_hedge_ratio() -> None:
    signal = Signal("pairs:SPY:QQQ", ("SPY", "QQQ"), (-1, 1), (500.0, 400.0), T0)
    intent = plan_intent(
        signal, (0, 0), SizingRule(D(10), hedge_ratio=D("1.5")), account="paper", unwind_after_s=30
    )
    assert intent is not None and intent.kind is PlanKind.PAIR
    assert [(leg.symbol, leg.side, leg.quantity) for leg in intent.legs] == [
        ("SPY", Side.SELL, D(10)),
        ("QQQ", Side.BUY, D(15)),
    ]
    assert intent.unwind_after_s == 30


def test_sizing_configuration_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="plan"):
        SizingRule.from_config({"quantity": 1, "plan": "bracket"})
    with pytest.raises(ValidationError, match="quantity"):
        SizingRule.from_config({"quantity": -1})
    with pytest.raises(ValidationError, match="plan"):
        SizingRule.from_config({"quantity": 1, "plan": "spread"})
