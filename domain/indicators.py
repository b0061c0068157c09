"""Indicators in two forms that agree: incremental (O(1) per update, plain floats, state
that serialises) for live ticks, and vectorised over numpy arrays for backtests.

Precision: a running sum that adds the new value and subtracts the oldest drifts (a
cumsum-based rolling mean is off by ~5e-9 after a million bars), enough to flip a
crossover when two averages are nearly equal. The incremental sums here are compensated
(Neumaier), and the vectorised forms sum each window on its own, so both stay within a
few ulps of the exact window mean however long the series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from domain.errors import ValidationError

if TYPE_CHECKING:
    # numpy is imported where the vectorised forms run: live trading never needs it, and
    # it is a third of the app's import time (cold starts count).
    import numpy as np
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]
    IndexArray = NDArray[np.intp]


def _window(value: object, name: str = "window") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(name, "must be an integer of at least 1")
    return value


@dataclass(slots=True)
class RollingWindow:
    """The last ``size`` values with a compensated (Neumaier) running sum, and optionally of
    their squares, both taken about ``shift`` (the first value seen) so that variance does
    not cancel catastrophically on prices far from zero.

    The arithmetic is written out inline: this runs on every tick."""

    size: int
    squares: bool = False
    values: list[float] = field(default_factory=list)
    head: int = 0
    shift: float | None = None
    total: float = 0.0
    total_c: float = 0.0
    total_sq: float = 0.0
    total_sq_c: float = 0.0

    @property
    def full(self) -> bool:
        return len(self.values) == self.size

    def push(self, value: float) -> None:
        shift = self.shift
        if shift is None:
            shift = self.shift = value
        centred = value - shift
        values = self.values
        if len(values) < self.size:
            values.append(centred)
            delta = centred
        else:
            head = self.head
            old = values[head]
            values[head] = centred
            self.head = head + 1 if head + 1 < self.size else 0
            delta = centred - old
            if self.squares:
                self._add_sq(-old * old)
        total = self.total
        new_total = total + delta
        if abs(total) >= abs(delta):
            self.total_c += (total - new_total) + delta
        else:
            self.total_c += (delta - new_total) + total
        self.total = new_total
        if self.squares:
            self._add_sq(centred * centred)

    def _add_sq(self, value: float) -> None:
        total = self.total_sq
        new_total = total + value
        if abs(total) >= abs(value):
            self.total_sq_c += (total - new_total) + value
        else:
            self.total_sq_c += (value - new_total) + total
        self.total_sq = new_total

    def mean(self) -> float:
        assert self.shift is not None
        return self.shift + (self.total + self.total_c) / len(self.values)

    def std(self) -> float:
        """Population standard deviation (ddof=0) of the window."""
        n = len(self.values)
        centred_mean = (self.total + self.total_c) / n
        variance = (self.total_sq + self.total_sq_c) / n - centred_mean * centred_mean
        return math.sqrt(variance) if variance > 0.0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        # The sums travel as they are, so a restored window continues bit for bit.
        return {
            "size": self.size,
            "squares": self.squares,
            "values": self.values[self.head :] + self.values[: self.head],
            "shift": self.shift,
            "sums": [self.total, self.total_c, self.total_sq, self.total_sq_c],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        window = cls(_window(data.get("size")), bool(data.get("squares", False)))
        values = data.get("values") or []
        if not isinstance(values, list) or len(values) > window.size:
            raise ValidationError("values", f"must be a list of at most {window.size} numbers")
        sums = data.get("sums") or [0.0, 0.0, 0.0, 0.0]
        if not isinstance(sums, list) or len(sums) != 4:
            raise ValidationError("sums", "must be a list of four numbers")
        shift = data.get("shift")
        window.shift = None if shift is None else float(shift)
        window.values = [float(v) for v in values]
        window.total, window.total_c, window.total_sq, window.total_sq_c = (float(v) for v in sums)
        return window


@dataclass(slots=True)
class SMA:
    """Simple moving average over ``window`` values; ``None`` until the window is full.

    The ring buffer and the compensated sum are inlined here rather than delegated to
    :class:`RollingWindow`: this runs twice per tick for a crossover."""

    window: int
    values: list[float] = field(default_factory=list)
    head: int = 0
    shift: float | None = None
    total: float = 0.0
    compensation: float = 0.0

    def __post_init__(self) -> None:
        _window(self.window)

    def update(self, value: float) -> float | None:
        shift = self.shift
        if shift is None:
            shift = self.shift = value
        centred = value - shift
        values = self.values
        size = self.window
        if len(values) < size:
            values.append(centred)
            delta = centred
        else:
            head = self.head
            delta = centred - values[head]
            values[head] = centred
            head += 1
            self.head = 0 if head == size else head
        total = self.total
        new_total = total + delta
        if abs(total) >= abs(delta):
            self.compensation += (total - new_total) + delta
        else:
            self.compensation += (delta - new_total) + total
        self.total = new_total
        if len(values) < size:
            return None
        return shift + (new_total + self.compensation) / size

    @property
    def value(self) -> float | None:
        if len(self.values) < self.window or self.shift is None:
            return None
        return self.shift + (self.total + self.compensation) / self.window

    def to_dict(self) -> dict[str, Any]:
        # The sums travel as they are, so a restored average continues bit for bit.
        return {
            "window": self.window,
            "values": self.values[self.head :] + self.values[: self.head],
            "shift": self.shift,
            "sums": [self.total, self.compensation],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        sma = cls(_window(data.get("window")))
        values = data.get("values") or []
        sums = data.get("sums") or [0.0, 0.0]
        if not isinstance(values, list) or len(values) > sma.window:
            raise ValidationError("values", f"must be a list of at most {sma.window} numbers")
        if not isinstance(sums, list) or len(sums) != 2:
            raise ValidationError("sums", "must be a list of two numbers")
        shift = data.get("shift")
        sma.shift = None if shift is None else float(shift)
        sma.values = [float(v) for v in values]
        sma.total, sma.compensation = float(sums[0]), float(sums[1])
        return sma


@dataclass(slots=True)
class EMA:
    """Exponential moving average with ``alpha = 2 / (span + 1)``, seeded with the first
    value; ``None`` until ``span`` values have been seen."""

    span: int
    current: float | None = None
    count: int = 0

    def __post_init__(self) -> None:
        _window(self.span, "span")

    @property
    def alpha(self) -> float:
        return 2.0 / (self.span + 1.0)

    def update(self, value: float) -> float | None:
        current = self.current
        self.current = value if current is None else current + self.alpha * (value - current)
        self.count += 1
        return self.current if self.count >= self.span else None

    @property
    def value(self) -> float | None:
        return self.current if self.count >= self.span else None

    def to_dict(self) -> dict[str, Any]:
        return {"span": self.span, "current": self.current, "count": self.count}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        current = data.get("current")
        count = data.get("count", 0)
        if not isinstance(count, int) or count < 0:
            raise ValidationError("count", "must be a non-negative integer")
        return cls(
            _window(data.get("span"), "span"), None if current is None else float(current), count
        )


@dataclass(slots=True)
class ZScore:
    """``(x - mean) / std`` of the last ``window`` values (x included); ``None`` until the
    window is full, and 0.0 when the window has no spread."""

    window: int
    buffer: RollingWindow = field(init=False)

    def __post_init__(self) -> None:
        if _window(self.window) < 2:
            raise ValidationError("window", "must be at least 2 for a standard deviation")
        self.buffer = RollingWindow(self.window, squares=True)

    def update(self, value: float) -> float | None:
        # ``RollingWindow.push``, ``std`` and ``mean`` written out, the same operations in
        # the same order (so the same bits): this runs on every tick of a z-score strategy.
        window = self.buffer
        shift = window.shift
        if shift is None:
            shift = window.shift = value
        centred = value - shift
        values = window.values
        size = window.size
        total_sq = window.total_sq
        if len(values) < size:
            values.append(centred)
            delta = centred
        else:
            head = window.head
            old = values[head]
            values[head] = centred
            window.head = head + 1 if head + 1 < size else 0
            delta = centred - old
            removed = -old * old
            new_sq = total_sq + removed
            if abs(total_sq) >= abs(removed):
                window.total_sq_c += (total_sq - new_sq) + removed
            else:
                window.total_sq_c += (removed - new_sq) + total_sq
            total_sq = new_sq
        total = window.total
        new_total = total + delta
        if abs(total) >= abs(delta):
            window.total_c += (total - new_total) + delta
        else:
            window.total_c += (delta - new_total) + total
        window.total = new_total
        added = centred * centred
        new_sq = total_sq + added
        if abs(total_sq) >= abs(added):
            window.total_sq_c += (total_sq - new_sq) + added
        else:
            window.total_sq_c += (added - new_sq) + total_sq
        window.total_sq = new_sq
        count = len(values)
        if count < size:
            return None
        centred_mean = (new_total + window.total_c) / count
        variance = (new_sq + window.total_sq_c) / count - centred_mean * centred_mean
        if not variance > 0.0:
            return 0.0
        std = math.sqrt(variance)
        return (value - (shift + (new_total + window.total_c) / count)) / std

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "buffer": self.buffer.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        z = cls(_window(data.get("window")))
        z.buffer = RollingWindow.from_dict(
            data.get("buffer") or {"size": z.window, "squares": True}
        )
        return z


# -- vectorised twins --------------------------------------------------------------------


def _as_array(values: FloatArray | list[float]) -> FloatArray:
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValidationError("values", "must be one-dimensional")
    return array


def sma(values: FloatArray | list[float], window: int) -> FloatArray:
    """Rolling mean; NaN until the window is full. Each window is summed on its own
    (numpy's pairwise summation), so no error carries from one window to the next."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    x = _as_array(values)
    out = np.full(x.shape, np.nan)
    _window(window)
    if len(x) >= window:
        shift = x[0]
        out[window - 1 :] = shift + sliding_window_view(x - shift, window).sum(axis=1) / window
    return out


_PREFIX_BLOCK = 1024


@dataclass(frozen=True, slots=True, eq=False)
class BlockPrefix:
    """A series prepared for rolling means of any window in O(n) each: backtests sweep
    windows of hundreds of bars over millions of bars, where summing every window (as
    :func:`sma` does) costs O(n * window). Not bit-identical to :func:`sma`: where a
    decision hinges on a near-tie between two means, recompute them with :func:`sma_at`.

    Values are taken about the first one (as in :func:`sma`) and summed cumulatively within
    fixed blocks of 1024, restarting at each block; a window's sum is then a difference of
    two such sums plus the totals of the blocks it spans. Every partial sum runs over at
    most one block, so no error carries along the series as it does in a cumsum over the
    whole series (off by ~5e-9 after a million bars): a mean is within ~1e-13 of the
    exact one relative to the spread of the values. The blocks do not depend on the
    window, so a mean is the same bits whichever windows are asked for together."""

    shift: float
    prefix: FloatArray  # block-restarted running sums, padded to whole blocks
    totals: FloatArray  # each block's sum
    before: FloatArray  # sum of the blocks before each block
    size: int

    @classmethod
    def of(cls, values: FloatArray | list[float]) -> BlockPrefix:
        import numpy as np

        x = _as_array(values)
        n = len(x)
        blocks = max(1, -(-n // _PREFIX_BLOCK))
        shift = float(x[0]) if n else 0.0
        prefix = np.empty(blocks * _PREFIX_BLOCK)
        np.subtract(x, shift, out=prefix[:n])
        prefix[n:] = 0.0
        grid = prefix.reshape(blocks, _PREFIX_BLOCK)
        np.cumsum(grid, axis=1, out=grid)
        totals = grid[:, -1].copy()
        before = np.zeros(blocks)
        np.cumsum(totals[:-1], out=before[1:])
        return cls(shift, prefix, totals, before, n)

    def mean(self, window: int) -> FloatArray:
        """Rolling mean over ``window`` values; NaN until the window is full."""
        means = self.centred_mean(window)
        means += self.shift
        return means

    def centred_mean(self, window: int) -> FloatArray:
        """:meth:`mean` less the first value: what comparing two means needs, one pass
        cheaper."""
        import numpy as np

        _window(window)
        n, block = self.size, _PREFIX_BLOCK
        out = np.empty(len(self.prefix))
        out[: window - 1] = np.nan
        if n < window:
            return out[:n]
        prefix = self.prefix
        # The first full window ends at window - 1 and starts the series.
        out[window - 1] = prefix[window - 1] + self.before[(window - 1) // block]
        np.subtract(prefix[window:n], prefix[: n - window], out=out[window:n])
        if window < block:
            # A window ending in the first ``window`` values of block k starts in block
            # k - 1: add that block's total (the difference above took away its head).
            out.reshape(-1, block)[1:, :window] += self.totals[:-1, None]
        else:
            index = np.arange(n) // block
            out[window:n] += self.before[index[window:]] - self.before[index[: n - window]]
        means = out[window - 1 : n]
        np.divide(means, window, out=means)
        return out[:n]


def sma_at(values: FloatArray | list[float], window: int, index: IndexArray) -> FloatArray:
    """The values :func:`sma` gives at bars ``index`` (each at least ``window - 1``), to the
    bit, without computing the others: the same window sums over the same centred values."""
    import numpy as np

    x = _as_array(values)
    _window(window)
    starts = np.asarray(index, dtype=np.intp) - (window - 1)
    if len(starts) and (starts.min() < 0 or starts.max() > len(x) - window):
        raise ValidationError("index", f"must lie in [{window - 1}, {len(x) - 1}]")
    shift = x[0]
    # Only the asked-for windows are centred and summed, each as one contiguous row, which
    # numpy sums exactly as it does each row of the sliding-window view in ``sma``.
    rows = starts[:, None] + np.arange(window)
    sums = (x[rows] - shift).sum(axis=1)
    means: FloatArray = shift + sums / window
    return means


def ema(values: FloatArray | list[float], span: int) -> FloatArray:
    """The same recurrence as :class:`EMA`, element by element, so the two agree to the
    last bit. (A recurrence has no loop-free form that keeps that guarantee.)"""
    import numpy as np

    x = _as_array(values)
    _window(span, "span")
    alpha = 2.0 / (span + 1.0)
    out = np.full(x.shape, np.nan)
    current: float | None = None
    results = out.tolist()
    for index, value in enumerate(x.tolist()):
        current = value if current is None else current + alpha * (value - current)
        if index + 1 >= span:
            results[index] = current
    return np.asarray(results, dtype=np.float64)


def rolling_mean_std(
    values: FloatArray | list[float], window: int
) -> tuple[FloatArray, FloatArray]:
    """Rolling mean and population standard deviation (two-pass within each window)."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    x = _as_array(values)
    _window(window)
    mean = np.full(x.shape, np.nan)
    std = np.full(x.shape, np.nan)
    if len(x) >= window:
        shift = x[0]
        windows = sliding_window_view(x - shift, window)
        centred_mean = windows.mean(axis=1)
        mean[window - 1 :] = shift + centred_mean
        std[window - 1 :] = windows.std(axis=1)
    return mean, std


def zscore(values: FloatArray | list[float], window: int) -> FloatArray:
    import numpy as np

    x = _as_array(values)
    if _window(window) < 2:
        raise ValidationError("window", "must be at least 2 for a standard deviation")
    mean, std = rolling_mean_std(x, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - mean) / std
    z[(std == 0.0) & ~np.isnan(std)] = 0.0
    return z
