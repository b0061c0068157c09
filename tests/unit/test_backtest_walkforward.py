"""Walk-forward: window layout, in-sample choice, one continuous out-of-sample curve."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from domain.backtest import (
    Bars,
    Commission,
    CommissionKind,
    ExecutionModel,
    ParameterGrid,
    StrategySignals,
    backtest,
    sweep,
    walk_forward,
)
from domain.errors import ValidationError
from domain.strategies import build_strategy

MODEL = ExecutionModel(commission=Commission(CommissionKind.BPS, 5.0), starting_cash=10_000.0)
GRID = ParameterGrid(
    {"kind": "sma_cross", "symbol": "SPY", "allow_short": True},
    {"fast": [3, 5, 10], "slow": [20, 40]},
)
T0 = datetime(2026, 1, 5, 14, 30, tzinfo=UTC)


def trending_bars(n: int, seed: int) -> Bars:
    rng = np.random.default_rng(seed)
    drift = 0.002 * np.sin(np.arange(n) / 150.0)
    close = 100.0 * np.exp(np.cumsum(drift + rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([close[0]], close[:-1])) * np.exp(rng.normal(0.0, 0.002, n))
    ts = [T0 + timedelta(minutes=i) for i in range(n)]
    return Bars.of(close, open=open_, ts=ts, symbols=["SPY"])


def test_windows_roll_and_the_choice_is_the_in_sample_best() -> None:
    bars = trending_bars(1000, 1)
    result = walk_forward(bars, GRID, MODEL, train_bars=300, test_bars=250, select_by="sortino")
    layout = [(w.train_start, w.train_stop, w.test_stop) for w in result.windows]
    assert layout == [(0, 300, 550), (250, 550, 800), (500, 800, 1000)]
    assert result.start == 300 and len(result.result.equity) == 700
    for window in result.windows:
        in_sample = sweep(bars.slice(window.train_start, window.train_stop), GRID, MODEL)
        best = in_sample.best("sortino")
        assert window.config == in_sample.configs[best]
        assert window.in_sample.sortino == in_sample.metrics[best].sortino
        assert window.ts_test_start == T0 + timedelta(minutes=window.train_stop)


def test_anchored_windows_train_on_everything_before() -> None:
    result = walk_forward(
        trending_bars(900, 2), GRID, MODEL, train_bars=300, test_bars=300, anchored=True
    )
    assert [(w.train_start, w.train_stop) for w in result.windows] == [(0, 300), (0, 600)]


def test_out_of_sample_windows_form_one_continuous_curve() -> None:
    bars = trending_bars(1200, 3)
    result = walk_forward(bars, GRID, MODEL, train_bars=400, test_bars=200)
    # The stitched run is the chosen strategies' targets, each computed on all the bars up
    # to its window's end, traded as one backtest from the starting cash.
    expected = np.zeros(800, dtype=np.int8)
    for w in result.windows:
        history = bars.slice(0, w.test_stop)
        targets = StrategySignals(history, [build_strategy(w.config)]).targets(0)[:, 0]
        expected[w.train_stop - 400 : w.test_stop - 400] = targets[w.train_stop :]
    again = backtest(bars.slice(400, 1200), expected, MODEL)
    np.testing.assert_array_equal(result.result.equity, again.equity)
    # Each window starts from the equity the previous one ended with.
    previous = MODEL.starting_cash
    for w in result.windows:
        assert w.out_of_sample.starting_equity == previous
        assert w.out_of_sample.final_equity == result.result.equity[w.test_stop - 400 - 1]
        previous = w.out_of_sample.final_equity
    total = np.prod([1 + w.out_of_sample.total_return for w in result.windows])
    assert total == pytest.approx(result.metrics.final_equity / MODEL.starting_cash)


def test_out_of_sample_results_never_see_later_bars() -> None:
    bars = trending_bars(1000, 4)
    changed_close = bars.close.copy()
    changed_close[700:] *= 1.5
    changed_open = bars.open.copy()
    changed_open[700:] *= 1.5
    later = Bars.of(changed_close, open=changed_open, ts=bars.ts, symbols=["SPY"])
    a = walk_forward(bars, GRID, MODEL, train_bars=300, test_bars=200)
    b = walk_forward(later, GRID, MODEL, train_bars=300, test_bars=200)
    # Bars up to 699 are identical: so are the choices and the curve up to there.
    assert [w.config for w in a.windows[:2]] == [w.config for w in b.windows[:2]]
    np.testing.assert_array_equal(a.result.equity[: 700 - 300], b.result.equity[: 700 - 300])


def test_walk_forward_serialises_and_checks_its_inputs() -> None:
    bars = trending_bars(600, 5)
    result = walk_forward(bars, GRID, MODEL, train_bars=300, test_bars=150)
    data = json.loads(json.dumps(result.to_dict(curve=False)))
    assert len(data["windows"]) == 2 and data["windows"][0]["config"]["kind"] == "sma_cross"
    for kwargs, field in [
        ({"train_bars": 600, "test_bars": 10}, "train_bars"),
        ({"train_bars": 1, "test_bars": 10}, "train_bars"),
        ({"train_bars": 100, "test_bars": 0}, "test_bars"),
        ({"train_bars": 100, "test_bars": 10, "select_by": "luck"}, "metric"),
    ]:
        with pytest.raises(ValidationError) as caught:
            walk_forward(bars, GRID, MODEL, **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field
    two = Bars.of(np.stack([bars.close[:, 0]] * 2, axis=1), symbols=["SPY", "QQQ"])
    mixed = [
        {"kind": "sma_cross", "symbol": "SPY", "fast": 3, "slow": 9},
        {"kind": "sma_cross", "symbol": "QQQ", "fast": 3, "slow": 9},
    ]
    with pytest.raises(ValidationError, match="same symbols"):
        walk_forward(two, mixed, MODEL, train_bars=100, test_bars=100)
