"""Performance metrics of an equity curve and its trades.

Definitions, for an equity curve ``E[0..n-1]`` (one value per bar, at its close) that
started from ``E0`` before bar 0, with ``B`` = bars per year and ``rf`` = the annual
risk-free rate:

* per-bar return ``r[t] = E[t] / E[t-1] - 1`` with ``E[-1] = E0`` (n returns); excess
  return ``x[t] = r[t] - rf / B``.
* ``total_return = E[n-1] / E0 - 1``.
* ``annualised_return = (E[n-1] / E0) ** (B / n) - 1`` (-1 when the equity ends at or
  below zero).
* ``volatility = std(r, ddof=1) * sqrt(B)``.
* ``sharpe = mean(x) / std(x, ddof=1) * sqrt(B)``.
* ``sortino = mean(x) / sqrt(mean(min(x, 0) ** 2)) * sqrt(B)`` (downside deviation over
  all n bars, with 0 as the target).
* ``max_drawdown = max over t of 1 - E[t] / P[t]``, where the running peak
  ``P[t] = max(E0, E[0..t])``: a fraction (0.25 = 25% below the peak).
* ``max_drawdown_duration``: the length in bars of the stretch spent below the peak that
  contains the deepest trough (from the bar after the peak to the bar before the equity
  first regains it, or to the last bar); ``longest_drawdown``: the longest such stretch.
* ``trades``: closed round trips; ``win_rate`` = winners (P&L > 0, net of fees) / closed
  trades; ``profit_factor`` = gross profit / gross loss of closed trades (inf without a
  loss).
* ``exposure``: the fraction of bars that end holding a position (any, for a portfolio).
* ``turnover``: traded value (shares x fill price, both sides) over the mean equity:
  2.0 is one full round trip of the average capital.
* ``fees``: commission paid.

Undefined values are NaN: Sharpe of a curve that never moves, win rate without a closed
trade, and every return-based ratio once the equity has touched zero or below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from domain.backtest.model import FloatArray, positive_float
from domain.backtest_jobs import HIGHER_IS_BETTER as HIGHER_IS_BETTER
from domain.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Metrics:
    """The figures of one equity curve; see this module's docstring for each definition."""

    bars: int
    starting_equity: float
    final_equity: float
    total_return: float
    annualised_return: float
    volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    max_drawdown_duration: int
    longest_drawdown: int
    trades: int
    win_rate: float
    profit_factor: float
    exposure: float
    turnover: float
    fees: float

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-safe: NaN and infinities become None."""
        return {
            f.name: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for f in fields(self)
            for v in (getattr(self, f.name),)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if f.type == "int":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValidationError(f.name, "must be an integer")
                values[f.name] = value
            else:
                values[f.name] = math.nan if value is None else float(value)
        return cls(**values)


# Figures that need the per-bar equity curve; the rest follow from the fills and trades.
CURVE_METRICS = frozenset(
    {
        "volatility",
        "sharpe",
        "sortino",
        "max_drawdown",
        "max_drawdown_duration",
        "longest_drawdown",
        "turnover",
    }
)
ALL_METRICS = frozenset(f.name for f in fields(Metrics))


def check_metric_names(names: object) -> frozenset[str]:
    """A selection of metrics by name (a list of strings), checked."""
    if isinstance(names, str) or not isinstance(names, Sequence | set | frozenset):
        raise ValidationError("metrics", "must be a list of metric names")
    chosen = frozenset(names)
    unknown = sorted(str(n) for n in chosen - ALL_METRICS)
    if unknown or not chosen:
        raise ValidationError(
            "metrics", f"must name some of {', '.join(sorted(ALL_METRICS))}; not {unknown}"
        )
    return chosen


def metrics_without_curve(
    final: FloatArray,
    start: FloatArray,
    *,
    in_market: FloatArray,
    trade_pnls: Sequence[FloatArray],
    fees: FloatArray,
    bars: int,
    bars_per_year: float,
) -> list[Metrics]:
    """The figures that need no per-bar curve, for rows that ended at ``final``; the curve
    figures (``CURVE_METRICS``) are NaN, their counts 0. Each computed figure is the one
    ``metrics_for_rows`` gives, to the bit."""
    bars_per_year = positive_float(bars_per_year, "bars_per_year")
    growth = final / start
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        annualised = np.where(
            growth > 0.0, np.power(np.maximum(growth, 0.0), bars_per_year / bars) - 1.0, -1.0
        )
    result = []
    for r in range(len(final)):
        closed, win_rate, profit_factor = _trade_figures(trade_pnls[r])
        result.append(
            Metrics(
                bars=bars,
                starting_equity=float(start[r]),
                final_equity=float(final[r]),
                total_return=float(growth[r] - 1.0),
                annualised_return=float(annualised[r]),
                volatility=math.nan,
                sharpe=math.nan,
                sortino=math.nan,
                max_drawdown=math.nan,
                max_drawdown_duration=0,
                longest_drawdown=0,
                trades=closed,
                win_rate=win_rate,
                profit_factor=profit_factor,
                exposure=float(in_market[r]) / bars,
                turnover=math.nan,
                fees=float(fees[r]),
            )
        )
    return result


def check_metric(name: str) -> str:
    if name not in HIGHER_IS_BETTER:
        raise ValidationError("metric", f"must be one of {', '.join(HIGHER_IS_BETTER)}")
    return name


_BLOCK = 2048


@dataclass(frozen=True, slots=True)
class _Drawdown:
    deepest: float  # 1 - lowest equity / peak
    duration: int
    longest: int


def _drawdown(equity: FloatArray, start: float) -> _Drawdown:
    """Drawdown figures of one curve. The running peak changes only in blocks that reach
    the peak they start under; elsewhere it is that peak, so the deepest point of such a
    block is its lowest equity. Only blocks that reach a peak get the per-bar running
    maximum (a sequential scan, the slow part): most blocks of most curves do not."""
    n = len(equity)
    full = n // _BLOCK
    grid = equity[: full * _BLOCK].reshape(full, _BLOCK)
    highs = grid.max(axis=1)
    lows = grid.min(axis=1)
    if full * _BLOCK < n:
        tail = equity[full * _BLOCK :]
        highs = np.append(highs, tail.max())
        lows = np.append(lows, tail.min())
    entering = np.empty(len(highs))
    entering[0] = start
    np.maximum.accumulate(np.maximum(highs[:-1], start), out=entering[1:])
    reaches = np.flatnonzero(highs >= entering)
    with np.errstate(divide="ignore", invalid="ignore"):
        lowest = lows / entering  # exact for blocks that do not reach their peak
    peaks_at: list[NDArray[np.intp]] = []
    where_lowest: dict[int, int] = {}
    for block in reaches.tolist():
        a = block * _BLOCK
        values = equity[a : a + _BLOCK]
        peak = np.maximum.accumulate(values)
        np.maximum(peak, entering[block], out=peak)
        ratio = values / peak
        at = int(np.argmin(ratio))
        lowest[block] = ratio[at]
        where_lowest[block] = a + at
        peaks_at.append(np.flatnonzero(values >= peak) + a)
    trough_block = int(np.argmin(lowest))
    deepest = 1.0 - float(lowest[trough_block])
    peaks = np.concatenate(peaks_at) if peaks_at else np.zeros(0, dtype=np.intp)
    gaps = np.diff(np.concatenate(([-1], peaks, [n]))) - 1
    longest = int(gaps.max())
    if deepest <= 0.0:
        return _Drawdown(deepest, 0, longest)
    trough = where_lowest.get(trough_block)
    if trough is None:
        a = trough_block * _BLOCK
        trough = a + int(np.argmin(equity[a : a + _BLOCK]))
    stretch = int(np.searchsorted(peaks, trough))  # between peaks[stretch - 1] and [stretch]
    return _Drawdown(deepest, int(gaps[stretch]), longest)


def _row_dots(values: FloatArray) -> FloatArray:
    """Each row's sum of squares. (Not np.dot: BLAS may start threads of its own, which
    fight a sweep's workers for the cores.)"""
    squares: FloatArray = np.einsum("ij,ij->i", values, values)
    return squares


def _curve_rows(
    equity: FloatArray,
    start: FloatArray,
    bars_per_year: float,
    risk_free_rate: float,
    scratch: tuple[FloatArray, FloatArray] | None,
) -> dict[str, FloatArray]:
    """Curve figures for each row of ``equity`` (rows x bars): return statistics for all
    rows at once (a scratch array is reused: on a million bars allocating an array costs
    about as much as a pass over it), drawdowns row by row."""
    rows, n = equity.shape
    out: dict[str, FloatArray] = {}
    final = equity[:, -1]
    growth = final / start
    out["final_equity"] = final.copy()
    out["total_return"] = growth - 1.0
    scale = math.sqrt(bars_per_year)
    if scratch is None:
        returns, negative = np.empty((rows, n)), np.empty((rows, n))
    else:
        returns, negative = scratch[0][:rows], scratch[1][:rows]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # A short curve compounding a big gain to a year overflows to inf: so be it.
        out["annualised_return"] = np.where(
            growth > 0.0, np.power(np.maximum(growth, 0.0), bars_per_year / n) - 1.0, -1.0
        )
        np.divide(equity[:, 0], start, out=returns[:, 0])
        np.divide(equity[:, 1:], equity[:, :-1], out=returns[:, 1:])
        returns -= 1.0 + risk_free_rate / bars_per_year  # excess returns
        mean = returns.mean(axis=1)
        np.minimum(returns, 0.0, out=negative)
        downside = np.sqrt(_row_dots(negative) / n)
        if n > 1:
            # Excess and raw returns differ by a constant: one deviation serves volatility
            # and Sharpe. One pass (sum of squares less n * mean^2) unless the mean is so
            # large against the spread that the subtraction would cancel digits away.
            squares = _row_dots(returns)
            variance = (squares - n * mean * mean) / (n - 1)
            if not (squares < 1e6 * np.maximum(variance, 0.0) * (n - 1)).all():
                returns -= mean[:, None]
                variance = _row_dots(returns) / (n - 1)
            std = np.sqrt(np.maximum(variance, 0.0))
        else:
            std = np.full(rows, math.nan)
    drawdowns = [_drawdown(equity[r], float(start[r])) for r in range(rows)]
    deepest = np.asarray([d.deepest for d in drawdowns])
    out["max_drawdown"] = deepest
    # Ratios are meaningless once the equity has been at or below zero.
    solvent = (deepest < 1.0) & (start > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["volatility"] = np.where(solvent, std * scale, math.nan)
        out["sharpe"] = np.where(solvent & (std > 0.0), mean / std * scale, math.nan)
        out["sortino"] = np.where(solvent & (downside > 0.0), mean / downside * scale, math.nan)
    duration = np.asarray([d.duration for d in drawdowns], dtype=np.float64)
    longest = np.asarray([d.longest for d in drawdowns], dtype=np.float64)
    out["max_drawdown_duration"] = duration
    out["longest_drawdown"] = longest
    return out


def _trade_figures(pnls: FloatArray) -> tuple[int, float, float]:
    closed = len(pnls)
    if not closed:
        return 0, math.nan, math.nan
    profit = float(pnls[pnls > 0.0].sum())
    loss = float(-pnls[pnls < 0.0].sum())
    win_rate = float(np.count_nonzero(pnls > 0.0)) / closed
    if loss > 0.0:
        return closed, win_rate, profit / loss
    return closed, win_rate, (math.inf if profit > 0.0 else math.nan)


def metrics_for_rows(
    equity: FloatArray,
    start: FloatArray,
    *,
    positions: FloatArray | None = None,
    in_market: FloatArray | None = None,
    trade_pnls: Sequence[FloatArray],
    traded: FloatArray,
    fees: FloatArray,
    bars_per_year: float,
    risk_free_rate: float,
    scratch: tuple[FloatArray, FloatArray] | None = None,
) -> list[Metrics]:
    """Metrics of each row of ``equity`` (rows x bars). Exposure comes from ``positions``
    (rows x bars) or directly as ``in_market`` (bars holding a position, per row).
    ``scratch``: two work arrays of at least the shape of ``equity``, to reuse."""
    bars_per_year = positive_float(bars_per_year, "bars_per_year")
    if not math.isfinite(risk_free_rate):
        raise ValidationError("risk_free_rate", "must be finite")
    rows, n = equity.shape
    curve = _curve_rows(equity, start, bars_per_year, risk_free_rate, scratch)
    if in_market is None:
        if positions is None:
            raise ValidationError("positions", "are needed for exposure")
        in_market = np.count_nonzero(positions, axis=1).astype(np.float64)
    mean_equity = equity.mean(axis=1)
    result = []
    for r in range(rows):
        closed, win_rate, profit_factor = _trade_figures(trade_pnls[r])
        result.append(
            Metrics(
                bars=n,
                starting_equity=float(start[r]),
                final_equity=float(curve["final_equity"][r]),
                total_return=float(curve["total_return"][r]),
                annualised_return=float(curve["annualised_return"][r]),
                volatility=float(curve["volatility"][r]),
                sharpe=float(curve["sharpe"][r]),
                sortino=float(curve["sortino"][r]),
                max_drawdown=float(curve["max_drawdown"][r]),
                max_drawdown_duration=int(curve["max_drawdown_duration"][r]),
                longest_drawdown=int(curve["longest_drawdown"][r]),
                trades=closed,
                win_rate=win_rate,
                profit_factor=profit_factor,
                exposure=float(in_market[r]) / n,
                turnover=(
                    float(traded[r]) / float(mean_equity[r]) if mean_equity[r] > 0.0 else math.nan
                ),
                fees=float(fees[r]),
            )
        )
    return result


def compute_metrics(
    equity: ArrayLike,
    *,
    starting_equity: float,
    positions: ArrayLike | None = None,
    trade_pnls: ArrayLike = (),
    traded_notional: float = 0.0,
    fees: float = 0.0,
    bars_per_year: float = 252.0,
    risk_free_rate: float = 0.0,
) -> Metrics:
    """Metrics of one equity curve (bars,) that started from ``starting_equity``.
    ``positions`` (bars,) or (bars, symbols) gives exposure (a bar counts when any position
    is held); ``trade_pnls`` are the closed trades' P&L, net of fees."""
    curve = np.asarray(equity, dtype=np.float64)
    if curve.ndim != 1 or len(curve) == 0:
        raise ValidationError("equity", "must be a non-empty 1-D series")
    start = positive_float(starting_equity, "starting_equity")
    if positions is None:
        in_market = 0.0
    else:
        held = np.asarray(positions, dtype=np.float64).reshape(len(curve), -1)
        in_market = float(np.count_nonzero(held.any(axis=1)))
    return metrics_for_rows(
        curve.reshape(1, -1),
        np.asarray([start]),
        in_market=np.asarray([in_market]),
        trade_pnls=[np.asarray(trade_pnls, dtype=np.float64).reshape(-1)],
        traded=np.asarray([traded_notional], dtype=np.float64),
        fees=np.asarray([fees], dtype=np.float64),
        bars_per_year=bars_per_year,
        risk_free_rate=risk_free_rate,
    )[0]
