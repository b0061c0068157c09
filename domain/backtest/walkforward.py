"""Walk-forward analysis: choose parameters on a rolling in-sample window, trade them on the
out-of-sample window that follows, and stitch the out-of-sample windows into one curve.

Windows: the first out-of-sample window starts at bar ``train_bars``; each is
``test_bars`` long (the last may be shorter) and follows the previous one. Its in-sample
window is the ``train_bars`` bars before it (or every bar before it, ``anchored``). On
each in-sample window the grid is swept and the configuration best by ``select_by`` is
chosen (NaN ranks last; ties go to the earlier configuration in grid order).

Stitching: the out-of-sample windows are one continuous backtest, not separate ones. Its
target at bar ``t`` is the target of the configuration chosen for the window holding
``t``, computed by that strategy over every bar up to ``t`` (so indicators are warm at the
window's start and no bar after ``t`` is seen). One simulation then trades the stitched
targets from the starting cash: each window starts from the equity and the position the
previous one ended with, and a change of parameters trades only if the targets differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from domain.backtest.engine import BacktestResult, backtest
from domain.backtest.metrics import Metrics, check_metric, compute_metrics
from domain.backtest.model import Bars, ExecutionModel, FloatArray
from domain.backtest.signals import StrategySignals
from domain.backtest.sweep import ParameterGrid, sweep
from domain.errors import ValidationError
from domain.strategies import build_strategy


@dataclass(frozen=True, slots=True)
class WalkForwardWindow:
    train_start: int
    train_stop: int  # exclusive; also the start of the test window
    test_stop: int  # exclusive
    ts_test_start: datetime | None
    config: dict[str, Any]  # the configuration chosen in sample
    in_sample: Metrics  # the chosen configuration's, on the in-sample window
    out_of_sample: Metrics  # this window's slice of the stitched curve

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_start": self.train_start,
            "train_stop": self.train_stop,
            "test_stop": self.test_stop,
            "ts_test_start": None if self.ts_test_start is None else self.ts_test_start.isoformat(),
            "config": dict(self.config),
            "in_sample": self.in_sample.to_dict(),
            "out_of_sample": self.out_of_sample.to_dict(),
        }


@dataclass(frozen=True, slots=True, eq=False)
class WalkForwardResult:
    select_by: str
    windows: tuple[WalkForwardWindow, ...]
    start: int  # the input bar at which the stitched curve starts
    result: BacktestResult  # the stitched out-of-sample backtest (bar 0 = input bar start)

    @property
    def metrics(self) -> Metrics:
        return self.result.metrics

    def to_dict(self, *, curve: bool = True) -> dict[str, Any]:
        return {
            "select_by": self.select_by,
            "start": self.start,
            "windows": [w.to_dict() for w in self.windows],
            "out_of_sample": self.result.to_dict(curve=curve),
        }


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValidationError(name, f"must be an integer of at least {minimum}")
    return value


def walk_forward(
    bars: Bars,
    grid: ParameterGrid | Sequence[Mapping[str, Any]],
    model: ExecutionModel | None = None,
    *,
    train_bars: int,
    test_bars: int,
    select_by: str = "sharpe",
    anchored: bool = False,
    bars_per_year: float = 252.0,
    risk_free_rate: float = 0.0,
) -> WalkForwardResult:
    """Rolling in-sample optimisation and stitched out-of-sample evaluation (see the module
    docstring). Every configuration must trade the same symbols."""
    model = model or ExecutionModel()
    check_metric(select_by)
    train_bars = _positive_int(train_bars, "train_bars", 2)
    test_bars = _positive_int(test_bars, "test_bars")
    n = bars.n_bars
    if train_bars >= n:
        raise ValidationError("train_bars", f"must leave bars to test ({train_bars} >= {n})")
    configs = grid.configs()[0] if isinstance(grid, ParameterGrid) else [dict(c) for c in grid]
    if not configs:
        raise ValidationError("configs", "must not be empty")
    symbols = {build_strategy(c).symbols for c in configs}
    if len(symbols) != 1:
        raise ValidationError("configs", "must all trade the same symbols")
    traded = bars.select(next(iter(symbols)))

    windows: list[tuple[int, int, int, int, Metrics]] = []
    stitched = np.zeros((n - train_bars, traded.n_symbols), dtype=np.int8)
    for test_start in range(train_bars, n, test_bars):
        test_stop = min(test_start + test_bars, n)
        train_start = 0 if anchored else test_start - train_bars
        in_sample = sweep(
            traded.slice(train_start, test_start),
            configs,
            model,
            bars_per_year=bars_per_year,
            risk_free_rate=risk_free_rate,
        )
        chosen = in_sample.best(select_by)
        strategy = build_strategy(configs[chosen])
        history = traded.slice(0, test_stop)
        targets = StrategySignals(history, [strategy]).targets(0)
        stitched[test_start - train_bars : test_stop - train_bars] = targets[test_start:]
        windows.append((train_start, test_start, test_stop, chosen, in_sample.metrics[chosen]))

    result = backtest(
        traded.slice(train_bars, n),
        stitched,
        model,
        bars_per_year=bars_per_year,
        risk_free_rate=risk_free_rate,
    )
    positions = result.positions
    return WalkForwardResult(
        select_by,
        tuple(
            _window(
                traded, result, positions, train_bars, w, configs, bars_per_year, risk_free_rate
            )
            for w in windows
        ),
        train_bars,
        result,
    )


def _window(
    bars: Bars,
    result: BacktestResult,
    positions: FloatArray,
    offset: int,
    window: tuple[int, int, int, int, Metrics],
    configs: Sequence[Mapping[str, Any]],
    bars_per_year: float,
    risk_free_rate: float,
) -> WalkForwardWindow:
    """A window's figures from its slice of the stitched run: its equity from the one it
    started with, the trades that closed in it, and the orders it filled."""
    train_start, test_start, test_stop, chosen, in_sample = window
    a, b = test_start - offset, test_stop - offset
    equity = result.equity[a:b]
    starting = float(result.equity[a - 1]) if a > 0 else result.model.starting_cash
    trades = result.trades
    closed_here = trades.closed & (trades.exit_bar >= a) & (trades.exit_bar < b)
    fills = result.fills
    filled_here = (fills.bar >= a) & (fills.bar < b)
    if starting > 0.0 and math.isfinite(starting):
        figures = compute_metrics(
            equity,
            starting_equity=starting,
            positions=positions[a:b],
            trade_pnls=trades.pnl[closed_here],
            traded_notional=float(fills.notional[filled_here].sum()),
            fees=float(fills.fee[filled_here].sum()),
            bars_per_year=bars_per_year,
            risk_free_rate=risk_free_rate,
        )
    else:
        figures = _ruined(len(equity), starting, float(equity[-1]))
    return WalkForwardWindow(
        train_start=train_start,
        train_stop=test_start,
        test_stop=test_stop,
        ts_test_start=bars.timestamp(test_start),
        config=dict(configs[chosen]),
        in_sample=in_sample,
        out_of_sample=figures,
    )


def _ruined(bars: int, starting: float, final: float) -> Metrics:
    nan = math.nan
    return Metrics(
        bars, starting, final, nan, nan, nan, nan, nan, nan, 0, 0, 0, nan, nan, nan, nan, 0.0
    )
