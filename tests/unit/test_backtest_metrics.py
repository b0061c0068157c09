"""Metrics against their written definitions, computed here the slow way."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.backtest import Bars, Metrics, backtest, compute_metrics
from domain.errors import ValidationError


def slow_figures(equity: list[float], start: float, per_year: float, rf: float) -> dict[str, float]:
    previous = [start, *equity[:-1]]
    returns = [e / p - 1.0 for e, p in zip(equity, previous, strict=True)]
    excess = [r - rf / per_year for r in returns]
    n = len(equity)
    mean = math.fsum(excess) / n
    std = statistics.stdev(excess)
    downside = math.sqrt(math.fsum(min(x, 0.0) ** 2 for x in excess) / n)
    peak, deepest, depth = start, 0.0, []
    for e in equity:
        peak = max(peak, e)
        depth.append(1.0 - e / peak)
        deepest = max(deepest, 1.0 - e / peak)
    return {
        "total_return": equity[-1] / start - 1.0,
        "annualised_return": annualised(equity[-1] / start, per_year / n),
        "volatility": statistics.stdev(returns) * math.sqrt(per_year),
        "sharpe": mean / std * math.sqrt(per_year),
        "sortino": mean / downside * math.sqrt(per_year) if downside else math.nan,
        "max_drawdown": deepest,
    }


def annualised(growth: float, power: float) -> float:
    try:
        return float(growth**power - 1.0)
    except OverflowError:
        return math.inf


def underwater_stretches(equity: list[float], start: float) -> list[tuple[int, int]]:
    """(first, last) bar of each run of bars below the running peak."""
    peak = start
    runs: list[tuple[int, int]] = []
    begin: int | None = None
    for t, e in enumerate(equity):
        if e >= peak:
            peak = e
            if begin is not None:
                runs.append((begin, t - 1))
                begin = None
        elif begin is None:
            begin = t
    if begin is not None:
        runs.append((begin, len(equity) - 1))
    return runs


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 400),
    per_year=st.sampled_from([252.0, 98_280.0, 12.0]),
    rf=st.sampled_from([0.0, 0.03]),
)
def test_curve_metrics_match_their_definitions(
    seed: int, n: int, per_year: float, rf: float
) -> None:
    rng = np.random.default_rng(seed)
    start = 1000.0
    equity = (start * np.exp(np.cumsum(rng.normal(0.0002, 0.01, n)))).tolist()
    got = compute_metrics(equity, starting_equity=start, bars_per_year=per_year, risk_free_rate=rf)
    want = slow_figures(equity, start, per_year, rf)
    for name, value in want.items():
        assert getattr(got, name) == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), name
    runs = underwater_stretches(equity, start)
    longest = max((b - a + 1 for a, b in runs), default=0)
    assert got.longest_drawdown == longest
    if got.max_drawdown > 0.0:
        peaks = np.maximum.accumulate([start, *equity])[1:]
        trough = int(np.argmax([1 - e / p for e, p in zip(equity, peaks, strict=True)]))
        (stretch,) = [(a, b) for a, b in runs if a <= trough <= b]
        assert got.max_drawdown_duration == stretch[1] - stretch[0] + 1
    else:
        assert got.max_drawdown_duration == 0
    assert got.final_equity == equity[-1] and got.bars == n


def test_drawdowns_by_hand() -> None:
    equity = [110.0, 105.0, 100.0, 108.0, 112.0, 90.0, 95.0]
    got = compute_metrics(equity, starting_equity=100.0)
    assert got.max_drawdown == pytest.approx(1.0 - 90.0 / 112.0)
    assert got.max_drawdown_duration == 2  # bars 5 and 6, not yet recovered
    assert got.longest_drawdown == 3  # bars 1 to 3, below 110


def test_a_curve_that_starts_below_its_starting_equity_is_in_drawdown() -> None:
    got = compute_metrics([90.0, 95.0, 101.0], starting_equity=100.0)
    assert got.max_drawdown == pytest.approx(0.1)
    assert (got.max_drawdown_duration, got.longest_drawdown) == (2, 2)


def test_trade_figures() -> None:
    got = compute_metrics([1.0, 1.0], starting_equity=1.0, trade_pnls=[5.0, -2.0, 3.0, -1.0, 0.0])
    assert (got.trades, got.win_rate) == (5, 0.4)
    assert got.profit_factor == pytest.approx(8.0 / 3.0)
    no_loss = compute_metrics([1.0, 1.0], starting_equity=1.0, trade_pnls=[1.0])
    assert no_loss.profit_factor == math.inf
    none = compute_metrics([1.0, 1.0], starting_equity=1.0)
    assert none.trades == 0 and math.isnan(none.win_rate) and math.isnan(none.profit_factor)


def test_exposure_turnover_and_fees() -> None:
    got = compute_metrics(
        [100.0, 100.0, 110.0, 90.0],
        starting_equity=100.0,
        positions=[[0.0, 0.0], [1.0, 0.0], [0.0, -2.0], [0.0, 0.0]],
        traded_notional=400.0,
        fees=1.5,
    )
    assert got.exposure == 0.5
    assert got.turnover == pytest.approx(400.0 / 100.0)
    assert got.fees == 1.5


def test_a_curve_that_never_moves_has_no_sharpe() -> None:
    got = compute_metrics([100.0] * 10, starting_equity=100.0)
    assert got.total_return == 0.0 and got.volatility == 0.0 and got.max_drawdown == 0.0
    assert math.isnan(got.sharpe) and math.isnan(got.sortino)


def test_ratios_are_undefined_once_the_equity_is_gone() -> None:
    got = compute_metrics([50.0, -10.0, 5.0], starting_equity=100.0)
    assert got.total_return == pytest.approx(-0.95)
    assert got.annualised_return == -1.0 or got.annualised_return < 0.0
    assert math.isnan(got.sharpe) and math.isnan(got.volatility)
    assert got.max_drawdown == pytest.approx(1.1)


def test_portfolio_metrics_count_trades_of_every_symbol() -> None:
    rng = np.random.default_rng(1)
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (200, 2)), axis=0))
    bars = Bars.of(close, symbols=["A", "B"])
    targets = (rng.random((200, 2)) < 0.5).astype(float)
    result = backtest(bars, targets)
    per = result.symbol_metrics
    assert result.metrics.trades == per["A"].trades + per["B"].trades
    assert result.metrics.fees == pytest.approx(per["A"].fees + per["B"].fees)
    pnl = result.trades.pnl[result.trades.closed]
    assert result.metrics.win_rate == pytest.approx(float(np.mean(pnl > 0)))


def test_metrics_serialise_with_undefined_values_as_null() -> None:
    got = compute_metrics([100.0] * 3, starting_equity=100.0)
    data = json.loads(json.dumps(got.to_dict()))
    assert data["sharpe"] is None and data["win_rate"] is None
    back = Metrics.from_dict(data)
    assert math.isnan(back.sharpe) and back.bars == 3 and back.total_return == 0.0
    with pytest.raises(ValidationError):
        Metrics.from_dict({**data, "bars": "3"})


def test_metric_inputs_are_checked() -> None:
    with pytest.raises(ValidationError):
        compute_metrics([], starting_equity=1.0)
    with pytest.raises(ValidationError):
        compute_metrics([1.0], starting_equity=0.0)
    with pytest.raises(ValidationError):
        compute_metrics([1.0, 2.0], starting_equity=1.0, bars_per_year=-1.0)


@pytest.mark.parametrize("n", [2047, 2048, 2049, 6000, 30_000])
@pytest.mark.parametrize("drift", [-0.0005, 0.0, 0.0005])
def test_drawdowns_of_long_curves_match_their_definitions(n: int, drift: float) -> None:
    # Long enough that the running peak is found block by block.
    rng = np.random.default_rng(n)
    start = 500.0
    equity = (start * np.exp(np.cumsum(rng.normal(drift, 0.01, n)))).tolist()
    got = compute_metrics(equity, starting_equity=start)
    want = slow_figures(equity, start, 252.0, 0.0)
    assert got.max_drawdown == pytest.approx(want["max_drawdown"], rel=1e-12)
    runs = underwater_stretches(equity, start)
    assert got.longest_drawdown == max((b - a + 1 for a, b in runs), default=0)
    peaks = np.maximum.accumulate([start, *equity])[1:]
    trough = int(np.argmax([1 - e / p for e, p in zip(equity, peaks, strict=True)]))
    (stretch,) = [(a, b) for a, b in runs if a <= trough <= b]
    assert got.max_drawdown_duration == stretch[1] - stretch[0] + 1
