"""Parameter sweeps: every combination of a grid backtested over the same bars.

A sweep is exactly a backtest per configuration (``backtest_strategy``), computed in
blocks: the sleeves of many configurations become the rows of one simulation, vectorised
across bars and configurations, with rows per block capped so memory stays bounded
whatever the grid (``block_size`` bars x rows of float64 per working array).

A sweep asked for ``metrics`` that need no per-bar curve (final equity, returns, trades,
win rate, profit factor, exposure, fees: everything but ``CURVE_METRICS``) skips building
the curve of single-symbol configurations, most of the work of each; the figures it gives
are the same, to the bit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from domain.backtest.engine import (
    BacktestResult,
    FillColumns,
    PriceRows,
    backtest,
    final_equity,
    simulate,
    simulate_fills,
    trades_from_fills,
)
from domain.backtest.metrics import (
    ALL_METRICS,
    CURVE_METRICS,
    HIGHER_IS_BETTER,
    Metrics,
    check_metric,
    check_metric_names,
    metrics_for_rows,
    metrics_without_curve,
)
from domain.backtest.model import Bars, ExecutionModel, FloatArray
from domain.backtest.signals import StrategySignals
from domain.errors import ValidationError
from domain.strategies import AnyStrategy, build_strategy


def _scalar(value: object, name: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is not None and not isinstance(value, bool | int | float | str):
        raise ValidationError(name, f"values must be numbers, strings or booleans: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class ParameterGrid:
    """Strategy configurations (as ``domain.strategies.build_strategy`` takes them): the
    ``base`` configuration with every combination of the ``axes`` values laid over it,
    e.g. ``ParameterGrid({"kind": "sma_cross", "symbol": "SPY"}, {"fast": range(5, 50, 5),
    "slow": range(50, 200, 15)})``. Combinations the strategy refuses (fast >= slow) are
    skipped."""

    base: Mapping[str, Any]
    axes: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.base, Mapping) or "kind" not in self.base:
            raise ValidationError("base", "must be a strategy configuration with a kind")
        if not isinstance(self.axes, Mapping):
            raise ValidationError("axes", "must map parameter names to lists of values")
        axes: dict[str, tuple[Any, ...]] = {}
        for name, values in self.axes.items():
            if not isinstance(name, str) or isinstance(values, str | bytes):
                raise ValidationError("axes", f"{name!r} must map to a list of values")
            try:
                items = tuple(_scalar(v, f"axes.{name}") for v in values)
            except TypeError:
                raise ValidationError("axes", f"{name!r} must map to a list of values") from None
            if not items:
                raise ValidationError("axes", f"{name!r} has no values")
            axes[name] = items
        object.__setattr__(self, "base", dict(self.base))
        object.__setattr__(self, "axes", axes)

    @property
    def size(self) -> int:
        """Combinations, valid or not."""
        return math.prod(len(v) for v in self.axes.values())

    def configs(self) -> tuple[list[dict[str, Any]], int]:
        """The valid configurations in grid order (the last axis varies fastest), and how
        many combinations were skipped as invalid."""
        names = list(self.axes)
        valid: list[dict[str, Any]] = []
        skipped = 0
        for combination in itertools.product(*self.axes.values()):
            config = {**self.base, **dict(zip(names, combination, strict=True))}
            try:
                build_strategy(config)
            except ValidationError:
                skipped += 1
                continue
            valid.append(config)
        if not valid:
            raise ValidationError("axes", "no combination is a valid strategy")
        return valid, skipped

    def to_dict(self) -> dict[str, Any]:
        return {"base": dict(self.base), "axes": {k: list(v) for k, v in self.axes.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParameterGrid:
        if not isinstance(data, Mapping):
            raise ValidationError("grid", "must be an object")
        return cls(data.get("base") or {}, data.get("axes") or {})


@dataclass(frozen=True, slots=True, eq=False)
class SweepResult:
    """``computed``: the metrics computed; the others of each ``Metrics`` are NaN (counts
    0), and neither ranked nor reported."""

    configs: tuple[dict[str, Any], ...]
    metrics: tuple[Metrics, ...]
    skipped: int  # grid combinations the strategy refused
    equity: FloatArray | None  # (bars, configs), when asked for
    computed: frozenset[str] = ALL_METRICS

    def ranked(self, by: str = "sharpe") -> list[int]:
        """Configuration indices, best first by metric ``by``; NaN last, ties in grid order."""
        check_metric(by)
        if by not in self.computed:
            raise ValidationError("metric", f"{by} was not computed by this sweep")
        higher = HIGHER_IS_BETTER[by]
        values = [float(getattr(m, by)) for m in self.metrics]

        def key(i: int) -> tuple[bool, float, int]:
            value = values[i]
            if math.isnan(value):
                return (True, 0.0, i)
            return (False, -value if higher else value, i)

        return sorted(range(len(values)), key=key)

    def best(self, by: str = "sharpe") -> int:
        return self.ranked(by)[0]

    def rows(self) -> list[dict[str, Any]]:
        """JSON-safe: each configuration with its metrics."""
        return [
            {
                "config": dict(c),
                "metrics": {k: v for k, v in m.to_dict().items() if k in self.computed},
            }
            for c, m in zip(self.configs, self.metrics, strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "results": self.rows()}


def _strategies(configs: Sequence[Mapping[str, Any]], bars: Bars) -> list[AnyStrategy]:
    strategies = []
    for index, config in enumerate(configs):
        try:
            strategy = build_strategy(config)
        except ValidationError as error:
            raise ValidationError(f"configs[{index}].{error.field}", error.reason) from None
        for symbol in strategy.symbols:
            bars.column(symbol)
        strategies.append(strategy)
    return strategies


def sweep(
    bars: Bars,
    grid: ParameterGrid | Sequence[Mapping[str, Any]],
    model: ExecutionModel | None = None,
    *,
    bars_per_year: float = 252.0,
    risk_free_rate: float = 0.0,
    keep_equity: bool = False,
    block_size: int = 2_000_000,
    workers: int = 1,
    metrics: Collection[str] | None = None,
) -> SweepResult:
    """Backtest every configuration of ``grid`` (or of an explicit list of configurations)
    over ``bars``. Each configuration trades its strategy's symbols from the model's full
    starting cash, split equally between them: the same as ``backtest_strategy`` for it.

    No loop runs per bar: work is vectorised over bars and over the configurations of a
    block (at most ``block_size`` bars x sleeves, which bounds memory); the loops are over
    blocks, and over orders only where all-in sizing is path dependent (see
    ``domain.backtest.engine``). ``workers`` > 1 runs contiguous shares of the grid on that
    many threads (numpy releases the GIL in its loops); the results are the same.
    ``metrics`` names the metrics wanted (all of them by default); the bars and starting
    equity come with any choice. Without a curve metric (and without ``keep_equity``) no
    per-bar curve is built where it can be avoided."""
    model = model or ExecutionModel()
    if isinstance(grid, ParameterGrid):
        configs, skipped = grid.configs()
    else:
        configs, skipped = [dict(c) for c in grid], 0
        if not configs:
            raise ValidationError("configs", "must not be empty")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValidationError("block_size", "must be a positive integer")
    if not isinstance(workers, int) or workers < 1:
        raise ValidationError("workers", "must be a positive integer")
    wanted = ALL_METRICS if metrics is None else check_metric_names(metrics)
    curve = keep_equity or bool(wanted & CURVE_METRICS)
    computed = ALL_METRICS if curve else ALL_METRICS - CURVE_METRICS
    strategies = _strategies(configs, bars)
    prices = PriceRows.of(bars, model)
    context = _Context(bars, prices, model, bars_per_year, risk_free_rate, block_size, curve)
    kept = np.empty((len(configs), bars.n_bars)) if keep_equity else None
    shares = min(workers, len(strategies))
    bounds = [len(strategies) * k // shares for k in range(shares + 1)]
    parts = [(bounds[k], bounds[k + 1]) for k in range(shares)]
    if shares == 1:
        found = _sweep_part(context, strategies, 0, len(strategies), kept)
    else:
        with ThreadPoolExecutor(max_workers=shares) as pool:
            futures = [pool.submit(_sweep_part, context, strategies, a, b, kept) for a, b in parts]
            found = [m for future in futures for m in future.result()]
    return SweepResult(
        tuple(configs), tuple(found), skipped, None if kept is None else kept.T, computed
    )


@dataclass(frozen=True, slots=True)
class _Context:
    bars: Bars
    prices: PriceRows
    model: ExecutionModel
    bars_per_year: float
    risk_free_rate: float
    block_size: int
    curve: bool  # build the per-bar equity curve (a curve metric or the curves are wanted)


def _sweep_part(
    context: _Context,
    strategies: Sequence[AnyStrategy],
    first: int,
    stop: int,
    kept: FloatArray | None,
) -> list[Metrics]:
    """Strategies ``first`` to ``stop``, block by block, with their own signal cache and
    work arrays (reused by every block: fresh arrays of this size cost page faults)."""
    n = context.bars.n_bars
    mine = list(strategies[first:stop])
    signals = StrategySignals(context.bars, mine)
    legs = [len(s.symbols) for s in mine]
    rows_per_block = max(1, context.block_size // n, max(legs))
    work = tuple(np.empty((rows_per_block, n)) for _ in range(3))
    metrics: list[Metrics] = []
    start = 0
    while start < len(mine):
        stop_ = start + 1
        rows = legs[start]
        while stop_ < len(mine) and rows + legs[stop_] <= rows_per_block:
            rows += legs[stop_]
            stop_ += 1
        block, equity = _run_block(signals, range(start, stop_), legs, context, work)
        metrics.extend(block)
        if kept is not None and equity is not None:
            kept[first + start : first + stop_] = equity
        start = stop_
    return metrics


def _run_block(
    signals: StrategySignals,
    indices: range,
    legs: Sequence[int],
    context: _Context,
    work: tuple[FloatArray, ...],
) -> tuple[list[Metrics], FloatArray | None]:
    model, prices = context.model, context.prices
    n = context.bars.n_bars
    counts = [legs[i] for i in indices]
    rows = sum(counts)
    targets = np.empty((rows, n), dtype=np.int8)
    price_row = np.empty(rows, dtype=np.intp)
    cash0 = np.empty(rows)
    owner = np.empty(rows, dtype=np.intp)  # the block's config each row belongs to
    row = 0
    for position, index in enumerate(indices):
        block = signals.targets(index)
        k = block.shape[1]
        targets[row : row + k] = block.T
        price_row[row : row + k] = signals.columns(index)
        cash0[row : row + k] = model.starting_cash / k
        owner[row : row + k] = position
        row += k
    multi = any(c > 1 for c in counts)
    configs = len(counts)
    starting = np.full(configs, model.starting_cash)
    if not context.curve and not multi:
        # One sleeve a configuration: its final equity and exposure follow from its fills.
        fills = simulate_fills(targets, prices, price_row, cash0, model)
        pnls, _, fees = _per_config(fills, owner, configs, prices, price_row, n)
        final, held = final_equity(fills, prices, price_row, cash0, n)
        year = context.bars_per_year
        lean = metrics_without_curve(
            final, starting, in_market=held, trade_pnls=pnls, fees=fees, bars=n, bars_per_year=year
        )
        return lean, None
    simulation = simulate(targets, prices, price_row, cash0, model, holding=multi, out=work[0])
    fills = simulation.fills
    pnls, traded, fees = _per_config(fills, owner, configs, prices, price_row, n)
    if multi:
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        equity = np.add.reduceat(simulation.equity, starts, axis=0)
        holding = simulation.holding
        assert holding is not None
        in_market = np.asarray(
            [np.count_nonzero(h.any(axis=0)) for h in np.split(holding, starts[1:])],
            dtype=np.float64,
        )
    else:
        equity = simulation.equity
        in_market = simulation.in_market
    result = metrics_for_rows(
        equity,
        starting,
        in_market=in_market,
        trade_pnls=pnls,
        traded=traded,
        fees=fees,
        bars_per_year=context.bars_per_year,
        risk_free_rate=context.risk_free_rate,
        scratch=(work[1], work[2]),
    )
    return result, equity


def _per_config(
    fills: FillColumns,
    owner: NDArray[np.intp],
    configs: int,
    prices: PriceRows,
    price_row: NDArray[np.intp],
    n: int,
) -> tuple[list[FloatArray], FloatArray, FloatArray]:
    """Per configuration of a block: its closed trades' P&L, traded value and fees."""
    trades = trades_from_fills(fills, prices.close[price_row, -1], n)
    closed_owner = owner[trades.row[trades.closed]]
    closed_pnl = trades.pnl[trades.closed]
    order = np.argsort(closed_owner, kind="stable")
    bounds = np.searchsorted(closed_owner[order], np.arange(configs + 1))
    pnls = [closed_pnl[order][bounds[c] : bounds[c + 1]] for c in range(configs)]
    notional = np.abs(fills.after - fills.before) * fills.price
    fill_owner = owner[fills.row]
    traded = np.bincount(fill_owner, notional, minlength=configs).astype(np.float64)
    fees = np.bincount(fill_owner, fills.fee, minlength=configs).astype(np.float64)
    return pnls, traded, fees


def backtest_strategy(
    bars: Bars,
    strategy: AnyStrategy | Mapping[str, Any],
    model: ExecutionModel | None = None,
    *,
    bars_per_year: float = 252.0,
    risk_free_rate: float = 0.0,
) -> BacktestResult:
    """Backtest one strategy (or its configuration) on its symbols of ``bars``, from the
    model's starting cash split equally between its symbols."""
    if isinstance(strategy, Mapping):
        strategy = _strategies([strategy], bars)[0]
    chosen = bars.select(strategy.symbols)
    targets = StrategySignals(chosen, [strategy]).targets(0)
    return backtest(
        chosen, targets, model, bars_per_year=bars_per_year, risk_free_rate=risk_free_rate
    )
