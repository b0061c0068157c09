"""Backtesting: a vectorised engine over OHLCV arrays, parameter sweeps and walk-forward.

    bars = Bars.of(close, open=open_, high=high, low=low, ts=ts, symbols=["SPY"])
    model = ExecutionModel(commission=Commission(CommissionKind.BPS, 10.0))
    result = backtest(bars, targets, model, bars_per_year=252)
    result = backtest_strategy(bars, {"kind": "sma_cross", "symbol": "SPY", "fast": 10,
                                      "slow": 50}, model)
    grid = ParameterGrid({"kind": "sma_cross", "symbol": "SPY"},
                         {"fast": range(5, 50, 5), "slow": range(50, 200, 15)})
    table = sweep(bars, grid, model)            # table.best("sharpe"), table.rows()
    wf = walk_forward(bars, grid, model, train_bars=5000, test_bars=1000)

The execution rules are in ``domain.backtest.engine``, the metric definitions in
``domain.backtest.metrics``. This package imports numpy when imported: import it where a
backtest runs, not at function-app start-up (cold starts count).
"""

from domain.backtest.engine import BacktestResult, Fills, Trade, Trades, backtest
from domain.backtest.metrics import HIGHER_IS_BETTER, Metrics, compute_metrics
from domain.backtest.model import (
    Bars,
    Commission,
    CommissionKind,
    ExecutionModel,
    FillTiming,
    Sizing,
    SizingKind,
    Slippage,
    SlippageKind,
)
from domain.backtest.signals import StrategySignals
from domain.backtest.sweep import ParameterGrid, SweepResult, backtest_strategy, sweep
from domain.backtest.walkforward import WalkForwardResult, WalkForwardWindow, walk_forward

__all__ = [
    "HIGHER_IS_BETTER",
    "BacktestResult",
    "Bars",
    "Commission",
    "CommissionKind",
    "ExecutionModel",
    "FillTiming",
    "Fills",
    "Metrics",
    "ParameterGrid",
    "Sizing",
    "SizingKind",
    "Slippage",
    "SlippageKind",
    "StrategySignals",
    "SweepResult",
    "Trade",
    "Trades",
    "WalkForwardResult",
    "WalkForwardWindow",
    "backtest",
    "backtest_strategy",
    "compute_metrics",
    "sweep",
    "walk_forward",
]
