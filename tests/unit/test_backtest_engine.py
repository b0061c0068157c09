"""The backtest engine: hand-worked examples, no look-ahead, validation, results."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from domain.backtest import (
    Bars,
    Commission,
    CommissionKind,
    ExecutionModel,
    FillTiming,
    Sizing,
    SizingKind,
    Slippage,
    SlippageKind,
    backtest,
    backtest_strategy,
)
from domain.errors import ValidationError
from domain.strategies import SmaCrossover

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def bps(amount: float) -> Commission:
    return Commission(CommissionKind.BPS, amount)


def test_all_in_long_at_the_next_open_by_hand() -> None:
    bars = Bars.of([10.0, 11.0, 12.0, 12.0], open=[10.0, 10.5, 11.5, 13.0])
    model = ExecutionModel(commission=bps(10.0), starting_cash=1000.0)
    result = backtest(bars, [1, 1, 0, 0], model)
    # Decided at bar 0's close, bought at bar 1's open: all cash, fee included.
    quantity = 1000.0 / (10.5 * 1.001)
    proceeds = quantity * 13.0 * 0.999  # sold at bar 3's open
    np.testing.assert_allclose(
        result.equity, [1000.0, quantity * 11.0, quantity * 12.0, proceeds], rtol=1e-15
    )
    (trade,) = result.trades
    assert (trade.direction, trade.entry_bar, trade.exit_bar, trade.closed) == (1, 1, 3, True)
    assert trade.entry_price == 10.5 and trade.exit_price == 13.0
    assert trade.quantity == pytest.approx(quantity, rel=1e-15)
    assert trade.fees == pytest.approx(quantity * 10.5 * 0.001 + quantity * 13.0 * 0.001)
    assert trade.pnl == pytest.approx(proceeds - 1000.0, rel=1e-12)
    assert result.fills.bar.tolist() == [1, 3]
    np.testing.assert_allclose(result.positions[:, 0], [0.0, quantity, quantity, 0.0], rtol=1e-15)


def test_this_close_fills_at_the_decision_bars_close() -> None:
    bars = Bars.of([10.0, 11.0, 12.0], open=[9.0, 9.0, 9.0])
    result = backtest(bars, [0, 1, 1], ExecutionModel(fill=FillTiming.THIS_CLOSE))
    assert result.fills.bar.tolist() == [1]
    assert result.fills.price.tolist() == [11.0]
    assert result.equity[-1] == pytest.approx(100_000.0 * 12.0 / 11.0)


def test_fixed_sizing_with_per_share_fees_and_bps_slippage_by_hand() -> None:
    bars = Bars.of([20.0, 20.0, 22.0, 22.0], open=[20.0, 20.0, 21.0, 25.0])
    model = ExecutionModel(
        commission=Commission(CommissionKind.PER_SHARE, 0.01),
        slippage=Slippage(SlippageKind.BPS, 100.0),
        sizing=Sizing(SizingKind.FIXED, 10.0),
        starting_cash=500.0,
    )
    result = backtest(bars, [-0.5, 1.0, 1.0, 1.0], model)
    # Short 5 at 20 * 0.99, then buy 15 at 21 * 1.01 (to long 10).
    cash = 500.0 + 5 * 19.8 - 0.05 - 15 * 21.21 - 0.15
    assert result.fills.quantity.tolist() == [-5.0, 15.0]
    assert result.fills.price.tolist() == pytest.approx([19.8, 21.21])
    assert result.equity[-1] == pytest.approx(cash + 10 * 22.0)
    short, long_ = result.trades
    assert (short.direction, short.closed, long_.direction, long_.closed) == (-1, True, 1, False)
    # The reversal's fee splits between the two trades by quantity: 5 closed, 10 opened.
    assert short.fees == pytest.approx(0.05 + 0.05)
    assert long_.fees == pytest.approx(0.10)
    assert long_.exit_price == 22.0  # still open: valued at the last close


def test_range_slippage_moves_the_fill_by_a_fraction_of_the_bar_range() -> None:
    bars = Bars.of([10.0, 10.0, 10.0], open=[10.0, 10.0, 10.0], high=[10, 11, 10], low=[10, 9, 10])
    model = ExecutionModel(slippage=Slippage(SlippageKind.RANGE_FRACTION, 0.25))
    result = backtest(bars, [1, 0, 0], model)
    assert result.fills.price.tolist() == [10.5, 10.0]  # bar 1's range is 2; bar 2's is 0


def test_a_per_order_fee_is_charged_once_per_order() -> None:
    bars = Bars.of([10.0] * 6)
    model = ExecutionModel(commission=Commission(CommissionKind.PER_ORDER, 2.0))
    result = backtest(bars, [1, 1, 0, 1, 0, 0], model)
    assert result.fills.fee.tolist() == [2.0, 2.0, 2.0, 2.0]
    assert result.equity[-1] == pytest.approx(100_000.0 - 8.0)


def test_nan_targets_hold_the_previous_decision() -> None:
    bars = Bars.of([10.0] * 6)
    nan = float("nan")
    held = backtest(bars, [nan, 1.0, nan, nan, 0.0, nan])
    explicit = backtest(bars, [0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    assert held.fills.bar.tolist() == explicit.fills.bar.tolist() == [2, 5]


def test_a_future_spike_cannot_be_traded() -> None:
    """A jump from bar 300's close to bar 301's open is invisible to decisions up to bar
    300: they and everything the engine did until then are the same as without it, and a
    strategy that reacts to the spike buys only after it."""
    rng = np.random.default_rng(5)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, 600)))
    spiked = close.copy()
    spiked[301:] *= 3.0
    open_ = np.concatenate(([close[0]], close[:-1]))
    open_spiked = np.concatenate(([spiked[0]], spiked[:-1]))
    open_spiked[301] = spiked[301]  # the gap is at the open of bar 301
    plain = Bars.of(close, open=open_)
    spike = Bars.of(spiked, open=open_spiked)
    strategy = SmaCrossover("S1", 5, 30)
    plain_targets = strategy.targets(plain.close)
    spike_targets = strategy.targets(spike.close)
    assert np.array_equal(plain_targets[:301], spike_targets[:301])
    for fill in FillTiming:
        model = ExecutionModel(fill=fill, commission=bps(5.0))
        a = backtest(plain, plain_targets, model)
        b = backtest(spike, spike_targets, model)
        assert np.array_equal(a.equity[:301], b.equity[:301])
        # An oracle that goes long exactly when the spike shows (bar 301's close) gains
        # nothing from the jump: it buys after it.
        oracle = np.zeros(600)
        oracle[301:305] = 1.0
        gained = backtest(spike, oracle, model)
        assert gained.equity[305] <= gained.equity[300] * 1.01
        assert gained.fills.bar[0] == (302 if fill is FillTiming.NEXT_OPEN else 301)


def test_changing_a_target_never_changes_the_past() -> None:
    rng = np.random.default_rng(8)
    bars = Bars.of(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 200))))
    targets = rng.choice([-1.0, 0.0, 1.0], 200)
    base = backtest(bars, targets)
    for t in (50, 120):
        changed = targets.copy()
        changed[t] = -changed[t] if changed[t] else 1.0
        other = backtest(bars, changed)
        # Traded at bar t + 1's open: equity up to bar t is untouched.
        assert np.array_equal(base.equity[: t + 1], other.equity[: t + 1])
        assert not np.array_equal(base.equity[t + 1 :], other.equity[t + 1 :])


def test_sleeves_split_the_cash_and_the_portfolio_is_their_sum() -> None:
    rng = np.random.default_rng(2)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (300, 2)), axis=0))
    bars = Bars.of(close, symbols=["AAA", "BBB"])
    targets = np.stack([np.sign(np.sin(np.arange(300) / 7.0)), np.ones(300)], axis=1)
    result = backtest(bars, targets, weights=[0.25, 0.75])
    alone = backtest(bars.select(["BBB"]), targets[:, 1], ExecutionModel(starting_cash=75_000.0))
    np.testing.assert_allclose(result.symbol_equity[:, 1], alone.equity, rtol=1e-15)
    np.testing.assert_allclose(result.equity, result.symbol_equity.sum(axis=1), rtol=1e-15)
    assert result.symbol_metrics["BBB"].final_equity == pytest.approx(alone.equity[-1])
    assert result.metrics.exposure == 299 / 300  # BBB is long from bar 1 on
    assert result.metrics.starting_equity == 100_000.0


def test_results_carry_utc_times_and_serialise_to_json() -> None:
    ts = [T0 + timedelta(minutes=i) for i in range(120)]
    rng = np.random.default_rng(4)
    bars = Bars.of(100.0 + np.cumsum(rng.normal(0.0, 0.5, 120)), ts=ts, symbols=["SPY"])
    result = backtest_strategy(bars, {"kind": "sma_cross", "symbol": "SPY", "fast": 3, "slow": 9})
    trade = result.trades[0]
    assert trade.ts_entry == ts[trade.entry_bar]
    assert trade.ts_entry is not None and trade.ts_entry.tzinfo is not None
    data = json.loads(json.dumps(result.to_dict()))
    assert data["ts"][0] == T0.isoformat()
    assert data["trades"][0]["ts_entry"] == ts[trade.entry_bar].isoformat()
    assert data["metrics"]["trades"] == result.metrics.trades
    assert ExecutionModel.from_dict(data["execution"]) == result.model


def test_execution_model_round_trips_and_names_bad_fields() -> None:
    model = ExecutionModel(
        fill=FillTiming.THIS_CLOSE,
        commission=Commission(CommissionKind.PER_ORDER, 1.0),
        slippage=Slippage(SlippageKind.RANGE_FRACTION, 0.2),
        sizing=Sizing(SizingKind.FIXED, 7.0),
        starting_cash=5000.0,
    )
    assert ExecutionModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    cases: list[tuple[dict[str, Any], str]] = [
        ({"fill": "tomorrow"}, "fill"),
        ({"commission": {"kind": "bps", "amount": -1}}, "commission.amount"),
        ({"commission": {"kind": "percent"}}, "commission.kind"),
        ({"slippage": {"kind": "bps", "amount": float("nan")}}, "slippage.amount"),
        ({"sizing": {"kind": "fixed", "quantity": 0}}, "sizing.quantity"),
        ({"starting_cash": 0}, "starting_cash"),
        ({"starting_cash": True}, "starting_cash"),
        ({"commission": {"kind": "bps", "value": 10}}, "commission.value"),
        ({"slipage": {}}, "execution.slipage"),
    ]
    for data, field in cases:
        with pytest.raises(ValidationError) as caught:
            ExecutionModel.from_dict(data)
        assert caught.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"close": [[1.0, 2.0, 3.0]] * 2, "symbols": ["A"]}, "symbols", "each of the 3"),
        ({"close": np.ones((2, 2, 2))}, "close", "1-D or 2-D"),
        ({"close": []}, "close", "at least one bar"),
        ({"close": [10.0, float("nan"), 11.0]}, "close", "bar 1, S1 is nan"),
        ({"close": [10.0, -1.0]}, "close", "finite and positive"),
        ({"close": [10.0, 11.0], "open": [10.0, float("inf")]}, "open", "bar 1"),
        ({"close": [10.0, 11.0], "open": [10.0]}, "open", "shape"),
        ({"close": [10.0, 11.0], "high": [10.0, 10.5]}, "high", "bar 1"),
        ({"close": [10.0, 11.0], "low": [10.5, 10.0]}, "low", "bar 0"),
        ({"close": [10.0, 11.0], "volume": [1.0, -2.0]}, "volume", "not negative"),
        ({"close": [[10.0, 11.0]], "symbols": ["A", "A"]}, "symbols", "repeat"),
        ({"close": [10.0, 11.0], "symbols": ["bad symbol"]}, "symbols", "not a valid"),
        ({"close": [10.0, 11.0], "ts": [T0, T0]}, "ts", "increasing"),
        ({"close": [10.0, 11.0], "ts": [T0.replace(tzinfo=None), T0]}, "ts", "aware"),
        ({"close": [10.0, 11.0], "ts": [T0]}, "ts", "one timestamp per bar"),
    ],
)
def test_bad_bars_are_refused_with_the_field_and_the_place(
    kwargs: dict[str, Any], field: str, words: str
) -> None:
    close = kwargs.pop("close")
    with pytest.raises(ValidationError) as caught:
        Bars.of(close, **kwargs)
    assert caught.value.field == field
    assert words in caught.value.reason


@pytest.mark.parametrize(
    ("targets", "words"),
    [
        ([0.0, 1.5, 0.0], "bar 1"),
        ([0, 2, 0], "bar 1"),
        ([0.0, float("inf"), 0.0], "bar 1"),
        ([0.0, 1.0], "one per bar"),
        ([True, False, True], "numbers"),
        (["1", "0", "1"], "numbers"),
    ],
)
def test_bad_targets_are_refused(targets: list[Any], words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        backtest(Bars.of([10.0, 11.0, 12.0]), targets)
    assert caught.value.field == "targets"
    assert words in caught.value.reason


def test_costs_that_swallow_the_price_are_refused() -> None:
    bars = Bars.of([10.0, 10.0, 10.0])
    with pytest.raises(ValidationError, match="sell price"):
        backtest(bars, [-1, 0, 0], ExecutionModel(slippage=Slippage(SlippageKind.BPS, 10_000.0)))
    # Selling down to half with 25 a share in costs on a price of 10 has no solution.
    per_share = ExecutionModel(commission=Commission(CommissionKind.PER_SHARE, 25.0))
    with pytest.raises(ValidationError) as caught:
        backtest(bars, [1.0, 0.5, 0.5], per_share)
    assert caught.value.field == "commission"


def test_weights_and_metric_parameters_are_checked() -> None:
    bars = Bars.of(np.full((3, 2), 10.0), symbols=["A", "B"])
    for weights in ([0.5], [0.5, 0.6], [1.0, 0.0]):
        with pytest.raises(ValidationError) as caught:
            backtest(bars, np.zeros((3, 2)), weights=weights)
        assert caught.value.field == "weights"
    with pytest.raises(ValidationError) as caught:
        backtest(bars, np.zeros((3, 2)), bars_per_year=0)
    assert caught.value.field == "bars_per_year"


def test_select_and_slice_keep_symbols_and_times_aligned() -> None:
    ts = [T0 + timedelta(days=i) for i in range(4)]
    close = np.arange(1.0, 9.0).reshape(4, 2)
    bars = Bars.of(close, ts=ts, symbols=["A", "B"])
    picked = bars.select(["B"]).slice(1, 3)
    assert picked.symbols == ("B",)
    assert picked.close[:, 0].tolist() == [4.0, 6.0]
    assert picked.timestamp(0) == ts[1]
    with pytest.raises(ValidationError):
        bars.select(["C"])
    with pytest.raises(ValidationError):
        bars.slice(3, 3)
