"""Sweeps, the shared signal builder and the O(n) means behind it."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from typing import Any

import numpy as np
import pytest

from domain import indicators
from domain.backtest import (
    Bars,
    Commission,
    CommissionKind,
    ExecutionModel,
    Metrics,
    ParameterGrid,
    StrategySignals,
    backtest_strategy,
    sweep,
)
from domain.errors import ValidationError
from domain.strategies import build_strategy, crossover_targets

MODEL = ExecutionModel(commission=Commission(CommissionKind.BPS, 10.0), starting_cash=50_000.0)


def cent_walk(n: int, seed: int, symbols: int = 1) -> np.ndarray:
    """Prices on a cent grid, where two averages tie exactly now and then."""
    rng = np.random.default_rng(seed)
    return np.round(100.0 + np.cumsum(rng.normal(0.0, 0.2, (n, symbols)), axis=0), 2)


def assert_same_metrics(a: Metrics, b: Metrics) -> None:
    for f in fields(Metrics):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x == pytest.approx(y, rel=1e-9, abs=1e-12, nan_ok=True), f.name


GRIDS = {
    "sma": ParameterGrid(
        {"kind": "sma_cross", "symbol": "AAA"}, {"fast": [3, 5, 8, 40], "slow": [5, 20, 35]}
    ),
    "ema": ParameterGrid(
        {"kind": "ema_cross", "symbol": "AAA", "allow_short": True},
        {"fast": [4, 9], "slow": [12, 30]},
    ),
    "zscore": ParameterGrid(
        {"kind": "zscore", "symbol": "BBB"}, {"window": [15, 30], "entry_z": [1.0, 2.0]}
    ),
    "pairs": ParameterGrid(
        {"kind": "pairs", "symbol_a": "AAA", "symbol_b": "BBB", "hedge_ratio": 1.0},
        {"window": [20, 40], "entry_z": [1.0, 1.5]},
    ),
}


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("block_size", [10**9, 1])
def test_a_sweep_is_a_backtest_per_configuration(name: str, block_size: int) -> None:
    bars = Bars.of(cent_walk(1500, 3, 2), symbols=["AAA", "BBB"])
    result = sweep(bars, GRIDS[name], MODEL, block_size=block_size, keep_equity=True)
    assert len(result.configs) == len(result.metrics)
    assert result.equity is not None and result.equity.shape == (1500, len(result.configs))
    for index, config in enumerate(result.configs):
        alone = backtest_strategy(bars, config, MODEL)
        assert_same_metrics(result.metrics[index], alone.metrics)
        np.testing.assert_allclose(result.equity[:, index], alone.equity, rtol=1e-12)
    assert any(m.trades > 0 for m in result.metrics)


def test_threads_share_the_grid_and_change_nothing() -> None:
    bars = Bars.of(cent_walk(3000, 8, 2), symbols=["AAA", "BBB"])
    configs, _ = GRIDS["sma"].configs()
    configs += GRIDS["pairs"].configs()[0]
    one = sweep(bars, configs, MODEL, keep_equity=True)
    three = sweep(bars, configs, MODEL, keep_equity=True, workers=3, block_size=6000)
    assert one.metrics == three.metrics
    assert one.equity is not None and three.equity is not None
    assert np.array_equal(one.equity, three.equity)
    with pytest.raises(ValidationError):
        sweep(bars, configs, MODEL, workers=0)


LEAN_MODELS = {
    "all-in, next open": MODEL,
    "fixed, this close, per-share": ExecutionModel.from_dict(
        {
            "fill": "this_close",
            "commission": {"kind": "per_share", "amount": 0.01},
            "sizing": {"kind": "fixed", "quantity": 50},
            "starting_cash": 50_000.0,
        }
    ),
    "all-in, per order": ExecutionModel.from_dict(
        {"commission": {"kind": "per_order", "amount": 1.0}, "starting_cash": 50_000.0}
    ),
}


@pytest.mark.parametrize("model", list(LEAN_MODELS.values()), ids=list(LEAN_MODELS))
def test_a_sweep_without_curve_metrics_gives_the_same_figures_to_the_bit(
    model: ExecutionModel,
) -> None:
    bars = Bars.of(cent_walk(4000, 5, 2), symbols=["AAA", "BBB"])
    configs = GRIDS["sma"].configs()[0] + GRIDS["ema"].configs()[0] + GRIDS["pairs"].configs()[0]
    full = sweep(bars, configs, model, block_size=9000)
    lean = sweep(bars, configs, model, block_size=9000, metrics=["final_equity", "trades"])
    assert lean.computed == full.computed - {
        "volatility", "sharpe", "sortino", "max_drawdown", "max_drawdown_duration",
        "longest_drawdown", "turnover"}  # fmt: skip
    for a, b in zip(full.metrics, lean.metrics, strict=True):
        for name in lean.computed:
            x, y = getattr(a, name), getattr(b, name)
            assert x == y or (math.isnan(x) and math.isnan(y)), name
    assert any(m.trades > 0 for m in lean.metrics) and any(m.exposure > 0 for m in lean.metrics)
    # What was not computed is neither reported nor ranked.
    assert set(lean.rows()[0]["metrics"]) == set(lean.computed)
    assert lean.ranked("total_return") == full.ranked("total_return")
    with pytest.raises(ValidationError, match="not computed"):
        lean.ranked("sharpe")
    # Asking for a curve metric, or for the curves, builds them.
    assert sweep(bars, configs[:3], model, metrics=["sharpe"]).metrics == full.metrics[:3]
    kept = sweep(bars, configs[:3], model, metrics=["trades"], keep_equity=True)
    assert kept.equity is not None and kept.metrics == full.metrics[:3]


@pytest.mark.parametrize("metrics", ["sharpe", [], ["sharpe", "beauty"], [3]])
def test_a_metric_selection_names_known_metrics(metrics: Any) -> None:
    bars = Bars.of(cent_walk(50, 1), symbols=["AAA"])
    with pytest.raises(ValidationError) as caught:
        sweep(bars, [{"kind": "sma_cross", "symbol": "AAA", "fast": 2, "slow": 3}], metrics=metrics)
    assert caught.value.field == "metrics"


def test_invalid_combinations_are_skipped_and_counted() -> None:
    grid = GRIDS["sma"]
    configs, skipped = grid.configs()
    assert grid.size == 12
    assert skipped == 5  # fast >= slow: (5, 5), (8, 5), (40, 5), (40, 20), (40, 35)
    assert configs[0] == {"kind": "sma_cross", "symbol": "AAA", "fast": 3, "slow": 5}
    assert ParameterGrid.from_dict(json.loads(json.dumps(grid.to_dict()))) == grid


@pytest.mark.parametrize(
    ("grid", "field"),
    [
        ({"base": {"symbol": "AAA"}}, "base"),
        ({"base": {"kind": "sma_cross"}, "axes": {"fast": []}}, "axes"),
        ({"base": {"kind": "sma_cross"}, "axes": {"fast": "5"}}, "axes"),
        ({"base": {"kind": "sma_cross"}, "axes": {"fast": [object()]}}, "axes.fast"),
    ],
)
def test_bad_grids_name_the_field(grid: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ParameterGrid.from_dict(grid)
    assert caught.value.field == field


def test_a_grid_with_no_valid_combination_is_refused() -> None:
    grid = ParameterGrid({"kind": "sma_cross", "symbol": "AAA"}, {"fast": [9], "slow": [5]})
    with pytest.raises(ValidationError):
        grid.configs()
    bars = Bars.of(cent_walk(50, 1), symbols=["AAA"])
    with pytest.raises(ValidationError) as caught:
        sweep(bars, [{"kind": "sma_cross", "symbol": "ZZZ", "fast": 2, "slow": 3}])
    assert caught.value.field == "symbol"


def test_ranking_puts_nan_last_and_respects_the_metric_direction() -> None:
    bars = Bars.of(cent_walk(400, 5), symbols=["AAA"])
    configs = [
        {"kind": "sma_cross", "symbol": "AAA", "fast": 5, "slow": 20},
        {"kind": "sma_cross", "symbol": "AAA", "fast": 300, "slow": 500},  # never warm
        {"kind": "sma_cross", "symbol": "AAA", "fast": 2, "slow": 9},
    ]
    result = sweep(bars, configs, MODEL)
    assert math.isnan(result.metrics[1].sharpe)
    assert result.ranked("sharpe")[-1] == 1
    by_drawdown = result.ranked("max_drawdown")
    drawdowns = [result.metrics[i].max_drawdown for i in by_drawdown]
    assert drawdowns == sorted(drawdowns)
    assert result.best("total_return") == max(
        range(3), key=lambda i: result.metrics[i].total_return
    )
    with pytest.raises(ValidationError):
        result.ranked("luck")
    assert json.loads(json.dumps(result.to_dict()))["results"][0]["config"] == configs[0]


@pytest.mark.parametrize("seed", range(6))
def test_shared_signals_equal_each_strategys_own_targets_even_on_ties(seed: int) -> None:
    close = cent_walk(4000, seed, 2)
    bars = Bars.of(close, symbols=["AAA", "BBB"])
    configs: list[dict[str, Any]] = [
        {"kind": "sma_cross", "symbol": "AAA", "fast": f, "slow": s, "allow_short": short}
        for f, s in [(2, 3), (2, 4), (3, 6), (5, 20), (4, 8), (10, 40), (1, 2)]
        for short in (False, True)
    ]
    configs += [
        {"kind": "ema_cross", "symbol": "BBB", "fast": 5, "slow": 17},
        {"kind": "zscore", "symbol": "BBB", "window": 25},
        {"kind": "pairs", "symbol_a": "AAA", "symbol_b": "BBB", "hedge_ratio": 1.0, "window": 30},
    ]
    strategies = [build_strategy(c) for c in configs]
    signals = StrategySignals(bars, strategies)
    for index, strategy in enumerate(strategies):
        own = strategy.targets(bars.select(strategy.symbols).close)
        assert np.array_equal(signals.targets(index), own), configs[index]


def test_cent_prices_do_produce_exact_ties_the_shortcut_must_resolve() -> None:
    close = cent_walk(4000, 0)[:, 0]
    fast, slow = indicators.sma(close, 2), indicators.sma(close, 4)
    assert np.count_nonzero(fast == slow) > 10  # so the test above exercises the refinement


def test_block_prefix_means_are_close_to_exact_window_means() -> None:
    rng = np.random.default_rng(9)
    x = 1e4 + np.cumsum(rng.normal(0.0, 0.5, 300_000))
    prefix = indicators.BlockPrefix.of(x)
    for window in (1, 7, 50, 1023, 1024, 1025, 3000):
        means = prefix.mean(window)
        assert np.isnan(means[: window - 1]).all()
        for t in range(window - 1, len(x), 9973):
            exact = math.fsum(x[t - window + 1 : t + 1].tolist()) / window
            assert abs(means[t] - exact) < 1e-13 * 1e4 * 10, (window, t)
    assert np.array_equal(np.isnan(indicators.BlockPrefix.of([1.0, 2.0]).mean(3)), [True, True])


def test_sma_at_gives_smas_bits() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        n = int(rng.integers(1, 2000))
        window = int(rng.integers(1, min(n, 300) + 1))
        x = np.round(100 + np.cumsum(rng.normal(0, 0.3, n)), 2)
        index = rng.integers(window - 1, n, 20)
        assert np.array_equal(indicators.sma_at(x, window, index), indicators.sma(x, window)[index])
    with pytest.raises(ValidationError):
        indicators.sma_at([1.0, 2.0, 3.0], 3, np.array([1]))


def test_crossover_targets_hold_through_ties_and_warm_up() -> None:
    nan = math.nan
    fast = np.array([nan, nan, 2.0, 1.0, 1.0, 3.0, 2.0])
    slow = np.array([nan, nan, 1.0, 1.0, 2.0, 2.0, 2.0])
    assert crossover_targets(fast, slow, allow_short=True).tolist() == [0, 0, 1, 1, -1, 1, 1]
    assert crossover_targets(fast, slow).tolist() == [0, 0, 1, 1, 0, 1, 1]
    assert crossover_targets(fast[[2, 4, 5]], slow[[2, 4, 5]], True).tolist() == [1, -1, 1]
