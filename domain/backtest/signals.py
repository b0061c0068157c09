"""Target positions for many strategy configurations over the same bars.

Each configuration's targets are exactly what its strategy's own ``targets`` returns (a
test pins it), but indicator work is shared between configurations: a sweep of 90 SMA
crossovers needs 19 distinct averages, not 180.

SMA crossovers take a shortcut. Summing every window (``indicators.sma``) costs
O(bars x window); an ``indicators.BlockPrefix`` gives every window's mean in O(bars) but
rounds differently, by ~1e-13 of the price. Where the fast and slow means are further
apart than 1e-8 of the price, that cannot change which is above; on the few bars where
they are closer (prices on a cent grid tie exactly now and then), both means are
recomputed with ``indicators.sma_at``, which gives ``indicators.sma``'s bits. So the
decision on every bar is the one ``SmaCrossover.targets`` makes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from domain import indicators
from domain.backtest.model import Bars, FloatArray
from domain.strategies import AnyStrategy, EmaCrossover, SmaCrossover, crossover_targets

# Means closer than this fraction of the largest price are recomputed exactly; the two
# methods' rounding differs by about 1e-13 of it.
_NEAR_TIE = 1e-8
_ZERO = np.zeros(1)


class StrategySignals:
    """Targets for ``strategies`` over ``bars``, shared work cached. Ask in index order:
    an average is dropped once no later strategy needs it, which bounds memory on grids
    with many windows. Not for sharing between threads: give each its own."""

    def __init__(self, bars: Bars, strategies: Sequence[AnyStrategy]) -> None:
        self._bars = bars
        self._strategies = list(strategies)
        self._columns = [tuple(bars.column(s) for s in st.symbols) for st in self._strategies]
        self._cache: dict[Hashable, Any] = {}
        self._last_use: dict[Hashable, int] = {}
        self._work: FloatArray | None = None
        for index, strategy in enumerate(self._strategies):
            for key in self._keys(index, strategy):
                self._last_use[key] = index

    def _keys(self, index: int, strategy: AnyStrategy) -> list[Hashable]:
        column = self._columns[index][0]
        if isinstance(strategy, SmaCrossover):
            return [
                ("prefix", column),
                ("sma", column, strategy.fast),
                ("sma", column, strategy.slow),
            ]
        if isinstance(strategy, EmaCrossover):
            return [("ema", column, strategy.fast), ("ema", column, strategy.slow)]
        return []

    def __len__(self) -> int:
        return len(self._strategies)

    def columns(self, index: int) -> tuple[int, ...]:
        """The bars' columns strategy ``index`` trades, in its symbols' order."""
        return self._columns[index]

    def _close(self, column: int) -> FloatArray:
        key = ("close", column)
        if key not in self._cache:
            self._cache[key] = np.ascontiguousarray(self._bars.close[:, column])
        close: FloatArray = self._cache[key]
        return close

    def _prefix(self, column: int) -> indicators.BlockPrefix:
        key = ("prefix", column)
        if key not in self._cache:
            self._cache[key] = indicators.BlockPrefix.of(self._close(column))
        prefix: indicators.BlockPrefix = self._cache[key]
        return prefix

    def _average(self, kind: str, column: int, window: int) -> FloatArray:
        key = (kind, column, window)
        if key not in self._cache:
            if kind == "sma":
                # Only differences of these are taken, where the first value cancels.
                self._cache[key] = self._prefix(column).centred_mean(window)
            else:
                self._cache[key] = indicators.ema(self._close(column), window)
        average: FloatArray = self._cache[key]
        return average

    def targets(self, index: int) -> NDArray[np.int8]:
        """(bars, the strategy's symbols): the targets of strategy ``index``."""
        strategy = self._strategies[index]
        columns = self._columns[index]
        if isinstance(strategy, SmaCrossover):
            result = self._sma_crossover(strategy, columns[0]).reshape(-1, 1)
        elif isinstance(strategy, EmaCrossover):
            fast = self._average("ema", columns[0], strategy.fast)
            slow = self._average("ema", columns[0], strategy.slow)
            result = crossover_targets(fast, slow, strategy.allow_short).reshape(-1, 1)
        else:
            result = strategy.targets(self._bars.close[:, list(columns)])
        for key in self._keys(index, strategy):
            if self._last_use.get(key) == index:
                self._cache.pop(key, None)
        return result

    def _sma_crossover(self, strategy: SmaCrossover, column: int) -> NDArray[np.int8]:
        close = self._close(column)
        if self._work is None:
            # Reused by every crossover: a fresh array costs page faults each time.
            self._work = np.empty(len(close))
        difference = self._work
        np.subtract(
            self._average("sma", column, strategy.fast),
            self._average("sma", column, strategy.slow),
            out=difference,
        )
        scale_key = ("scale", column)
        if scale_key not in self._cache:
            self._cache[scale_key] = float(np.max(close))
        tolerance = _NEAR_TIE * float(self._cache[scale_key])
        # Two one-byte comparisons cost less than an eight-byte absolute value.
        near = np.flatnonzero((difference <= tolerance) & (difference >= -tolerance))
        if len(near):
            difference[near] = indicators.sma_at(close, strategy.fast, near) - indicators.sma_at(
                close, strategy.slow, near
            )
        # For floats, a - b > 0 exactly when a > b: the difference decides as the means do.
        return crossover_targets(difference, _ZERO, strategy.allow_short)
