"""What a backtest takes: bars, target positions and the execution model, validated.

Backtests are the one place where money is a numpy float rather than a ``Decimal``: a
backtest is arithmetic over millions of bars, and nothing it computes reaches a broker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from domain.errors import ValidationError
from domain.model import parse_symbol
from domain.serde import parse_enum

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]
TimeArray = NDArray[np.datetime64]


class FillTiming(StrEnum):
    """When the target decided at bar ``t`` (with data up to its close) is traded."""

    NEXT_OPEN = "next_open"  # at the open of bar t + 1: the default, and the honest one
    THIS_CLOSE = "this_close"  # at the close of bar t, the price the decision was made at


class CommissionKind(StrEnum):
    BPS = "bps"  # basis points of the traded value (10 = 0.1%)
    PER_SHARE = "per_share"  # currency per share (or unit) traded
    PER_ORDER = "per_order"  # currency per order, whatever its size


class SlippageKind(StrEnum):
    BPS = "bps"  # basis points of the reference price, against the trade
    RANGE_FRACTION = "range_fraction"  # a fraction of the fill bar's high - low, against the trade


class SizingKind(StrEnum):
    ALL_IN = "all_in"  # the target is a fraction of the sleeve's equity
    FIXED = "fixed"  # the target times a fixed quantity of shares


def _number(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValidationError(name, f"must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValidationError(name, "must be finite")
    if positive and number <= 0.0:
        raise ValidationError(name, "must be greater than zero")
    if number < 0.0:
        raise ValidationError(name, "must not be negative")
    return number


def _known(data: Mapping[str, Any], name: str, fields: tuple[str, ...]) -> None:
    # A misspelt field would otherwise leave its default in place without a word (a
    # commission of zero, say), and the backtest would look better than it should.
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise ValidationError(
            f"{name}.{unknown[0]}", f"is not a field; the fields are {', '.join(fields)}"
        )


@dataclass(frozen=True, slots=True)
class Commission:
    kind: CommissionKind = CommissionKind.BPS
    amount: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_enum(CommissionKind, self.kind, "commission.kind"))
        object.__setattr__(self, "amount", _number(self.amount, "commission.amount"))

    @property
    def per_order(self) -> float:
        """The fixed part of every order's fee."""
        return self.amount if self.kind is CommissionKind.PER_ORDER else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "amount": self.amount}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Commission:
        _known(data, "commission", ("kind", "amount"))
        return cls(data.get("kind", CommissionKind.BPS), data.get("amount", 0.0))


@dataclass(frozen=True, slots=True)
class Slippage:
    kind: SlippageKind = SlippageKind.BPS
    amount: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_enum(SlippageKind, self.kind, "slippage.kind"))
        object.__setattr__(self, "amount", _number(self.amount, "slippage.amount"))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "amount": self.amount}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Slippage:
        _known(data, "slippage", ("kind", "amount"))
        return cls(data.get("kind", SlippageKind.BPS), data.get("amount", 0.0))


@dataclass(frozen=True, slots=True)
class Sizing:
    kind: SizingKind = SizingKind.ALL_IN
    quantity: float = 1.0  # shares per unit of target, for FIXED sizing

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_enum(SizingKind, self.kind, "sizing.kind"))
        object.__setattr__(
            self, "quantity", _number(self.quantity, "sizing.quantity", positive=True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "quantity": self.quantity}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sizing:
        _known(data, "sizing", ("kind", "quantity"))
        return cls(data.get("kind", SizingKind.ALL_IN), data.get("quantity", 1.0))


@dataclass(frozen=True, slots=True)
class ExecutionModel:
    """How targets become fills. See :func:`domain.backtest.backtest` for the exact rules."""

    fill: FillTiming = FillTiming.NEXT_OPEN
    commission: Commission = field(default_factory=Commission)
    slippage: Slippage = field(default_factory=Slippage)
    sizing: Sizing = field(default_factory=Sizing)
    starting_cash: float = 100_000.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "fill", parse_enum(FillTiming, self.fill, "fill"))
        for name, kind in (("commission", Commission), ("slippage", Slippage), ("sizing", Sizing)):
            if not isinstance(getattr(self, name), kind):
                raise ValidationError(name, f"must be a {kind.__name__}")
        object.__setattr__(
            self, "starting_cash", _number(self.starting_cash, "starting_cash", positive=True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "fill": self.fill.value,
            "commission": self.commission.to_dict(),
            "slippage": self.slippage.to_dict(),
            "sizing": self.sizing.to_dict(),
            "starting_cash": self.starting_cash,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecutionModel:
        if not isinstance(data, Mapping):
            raise ValidationError("execution", "must be an object")
        _known(data, "execution", ("fill", "commission", "slippage", "sizing", "starting_cash"))
        parts: dict[str, Mapping[str, Any]] = {}
        for name in ("commission", "slippage", "sizing"):
            part = data.get(name) or {}
            if not isinstance(part, Mapping):
                raise ValidationError(name, "must be an object")
            parts[name] = part
        return cls(
            fill=data.get("fill", FillTiming.NEXT_OPEN),
            commission=Commission.from_dict(parts["commission"]),
            slippage=Slippage.from_dict(parts["slippage"]),
            sizing=Sizing.from_dict(parts["sizing"]),
            starting_cash=data.get("starting_cash", 100_000.0),
        )


def _first_bad(mask: NDArray[np.bool_]) -> tuple[int, int]:
    bar, column = np.argwhere(mask)[0]
    return int(bar), int(column)


def _prices(
    value: ArrayLike,
    name: str,
    shape: tuple[int, ...] | None,
    symbols: Sequence[str] | None,
    bounds: str = "both",
) -> FloatArray:
    """A (bars x symbols) float array. ``bounds`` says which of the two checks (above zero,
    below infinity) to make here: a high at or above a checked open and close needs only
    the upper one, a low only the lower one (NaN fails either, and the order check)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(name, "must be an array of numbers") from None
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValidationError(name, f"must be 1-D or 2-D (bars x symbols), got {array.ndim}-D")
    if shape is not None and array.shape != shape:
        raise ValidationError(name, f"must have the shape of close {shape}, got {array.shape}")
    if array.size == 0:
        raise ValidationError(name, "must hold at least one bar of one symbol")
    # min and max propagate NaN, so two fast passes check finite and positive together.
    low = array.min() if bounds != "upper" else 1.0
    high = array.max() if bounds != "lower" else 0.0
    if not (low > 0.0 and high < math.inf):
        bar, column = _first_bad(~(np.isfinite(array) & (array > 0.0)))
        where = symbols[column] if symbols and column < len(symbols) else f"S{column + 1}"
        value = float(array[bar, column])
        raise ValidationError(
            name, f"prices must be finite and positive; bar {bar}, {where} is {value!r}"
        )
    return array


def _check_order(
    name: str,
    extreme: FloatArray,
    open_: FloatArray,
    close: FloatArray,
    compare: np.ufunc,
    symbols: Sequence[str],
) -> None:
    for other in (open_, close):
        ok = compare(extreme, other)
        if not ok.all():
            bar, column = _first_bad(~ok)
            side = "at or above" if name == "high" else "at or below"
            raise ValidationError(
                name, f"must be {side} the open and close; bar {bar}, {symbols[column]}"
            )


def _timestamps(value: TimeArray | Sequence[datetime], bars: int) -> TimeArray:
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.datetime64):
        # numpy datetimes carry no zone: they are taken as UTC, as everywhere in the desk.
        ts = value.astype("datetime64[ns]")
    else:
        items = list(value)
        converted = []
        for index, item in enumerate(items):
            if not isinstance(item, datetime) or item.tzinfo is None:
                raise ValidationError("ts", f"must be timezone-aware datetimes (item {index})")
            converted.append(np.datetime64(item.astimezone(UTC).replace(tzinfo=None), "ns"))
        ts = np.asarray(converted, dtype="datetime64[ns]")
    if ts.ndim != 1 or len(ts) != bars:
        raise ValidationError("ts", f"must hold one timestamp per bar ({bars})")
    if np.isnat(ts).any():
        raise ValidationError("ts", "must not hold NaT")
    if bars > 1 and not (ts[1:] > ts[:-1]).all():
        raise ValidationError("ts", "must be strictly increasing")
    return ts


@dataclass(frozen=True, slots=True, eq=False)
class Bars:
    """OHLCV bars for one or more symbols: every array is (bars x symbols), row ``t`` the
    bar at ``ts[t]`` (UTC). Build with :meth:`of`, which validates."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray | None
    ts: TimeArray | None
    symbols: tuple[str, ...]

    @classmethod
    def of(
        cls,
        close: ArrayLike,
        *,
        open: ArrayLike | None = None,
        high: ArrayLike | None = None,
        low: ArrayLike | None = None,
        volume: ArrayLike | None = None,
        ts: TimeArray | Sequence[datetime] | None = None,
        symbols: Sequence[str] | None = None,
    ) -> Bars:
        """Validated bars. 1-D arrays are one symbol. Without ``open`` each bar opens at
        its close (a close-only series, where "next open" is the next close); without
        ``high``/``low`` the range is the open-close span. Prices must be finite and
        positive, ``high`` at or above the open and close, ``low`` at or below them."""
        if symbols is not None and (isinstance(symbols, str) or not isinstance(symbols, Sequence)):
            raise ValidationError("symbols", "must be a list of symbols")
        names = list(symbols) if symbols is not None else None
        close_ = _prices(close, "close", None, names)
        shape = close_.shape
        if names is None:
            names = [f"S{i + 1}" for i in range(shape[1])]
        if len(names) != shape[1]:
            raise ValidationError("symbols", f"must name each of the {shape[1]} columns")
        parsed = tuple(parse_symbol(s, "symbols") for s in names)
        if len(set(parsed)) != len(parsed):
            raise ValidationError("symbols", "must not repeat a symbol")
        open_ = close_ if open is None else _prices(open, "open", shape, parsed)
        if high is None:
            high_ = np.maximum(open_, close_)
        else:
            high_ = _prices(high, "high", shape, parsed, "upper")
            _check_order("high", high_, open_, close_, np.greater_equal, parsed)
        if low is None:
            low_ = np.minimum(open_, close_)
        else:
            low_ = _prices(low, "low", shape, parsed, "lower")
            _check_order("low", low_, open_, close_, np.less_equal, parsed)
        volume_ = None
        if volume is not None:
            volume_ = np.asarray(volume, dtype=np.float64).reshape(shape[0], -1)
            if volume_.shape != shape:
                raise ValidationError("volume", f"must have the shape of close {shape}")
            if not (np.isfinite(volume_).all() and (volume_ >= 0.0).all()):
                raise ValidationError("volume", "must be finite and not negative")
        ts_ = None if ts is None else _timestamps(ts, shape[0])
        return cls(open_, high_, low_, close_, volume_, ts_, parsed)

    @property
    def n_bars(self) -> int:
        return int(self.close.shape[0])

    @property
    def n_symbols(self) -> int:
        return int(self.close.shape[1])

    def column(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise ValidationError("symbol", f"{symbol!r} is not in the bars") from None

    def select(self, symbols: Sequence[str]) -> Bars:
        """The same bars for ``symbols`` only, in that order."""
        columns = [self.column(s) for s in symbols]
        if len(set(columns)) != len(columns):
            raise ValidationError("symbols", "must not repeat a symbol")
        if columns == list(range(self.n_symbols)):
            return self
        return Bars(
            self.open[:, columns],
            self.high[:, columns],
            self.low[:, columns],
            self.close[:, columns],
            None if self.volume is None else self.volume[:, columns],
            self.ts,
            tuple(self.symbols[c] for c in columns),
        )

    def slice(self, start: int, stop: int) -> Bars:
        """Bars ``start`` to ``stop`` (exclusive), as views."""
        if not 0 <= start < stop <= self.n_bars:
            raise ValidationError("bars", f"slice [{start}, {stop}) is outside 0..{self.n_bars}")
        return Bars(
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            None if self.volume is None else self.volume[start:stop],
            None if self.ts is None else self.ts[start:stop],
            self.symbols,
        )

    def timestamp(self, bar: int) -> datetime | None:
        """The UTC time of bar ``bar``, when the bars have times."""
        if self.ts is None:
            return None
        return to_datetime(self.ts[bar])


def to_datetime(value: np.datetime64) -> datetime:
    """A numpy (UTC) datetime as a timezone-aware ``datetime`` (to the microsecond)."""
    micros = int(value.astype("datetime64[us]").astype(np.int64))
    return datetime(1970, 1, 1, tzinfo=UTC) + np.timedelta64(micros, "us").item()


def validate_targets(targets: ArrayLike, bars: int, symbols: int) -> NDArray[Any]:
    """Targets as (bars x symbols), int8 when whole, else float64 with NaN held forward.

    A target is the position wanted after a bar's close, as a fraction in [-1, 1] (-1 all
    short, 0 flat, 1 all long; with fixed sizing, a multiple of the fixed quantity). NaN
    means "no decision": the previous target stands (flat before the first)."""
    array = np.asarray(targets)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValidationError("targets", f"must be numbers, got {array.dtype}")
    if array.ndim == 1 and symbols == 1:
        array = array.reshape(-1, 1)
    if array.shape != (bars, symbols):
        raise ValidationError(
            "targets", f"must have one per bar and symbol {(bars, symbols)}, got {array.shape}"
        )
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < -1 or array.max() > 1):
            bar, column = _first_bad((array < -1) | (array > 1))
            raise ValidationError("targets", f"must lie in [-1, 1]; bar {bar}, column {column}")
        return array.astype(np.int8, copy=False)
    values = array.astype(np.float64, copy=False)
    nan = np.isnan(values)
    bad = ~nan & ~((values >= -1.0) & (values <= 1.0))
    if bad.any():
        bar, column = _first_bad(bad)
        raise ValidationError(
            "targets",
            f"must lie in [-1, 1] or be NaN (hold); bar {bar}, column {column} is "
            f"{values[bar, column]!r}",
        )
    if nan.any():
        values = hold_forward(values, nan)
    if np.array_equal(values, np.round(values)):
        # Whole targets take the engine's closed-form path, which needs to know they are.
        return values.astype(np.int8)
    return values


def hold_forward(values: FloatArray, nan: NDArray[np.bool_]) -> FloatArray:
    """NaN replaced by the last number above it in its column (0 before the first)."""
    rows = np.where(nan, 0, np.arange(values.shape[0])[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)
    held = np.take_along_axis(values, rows, axis=0)
    held[np.isnan(held)] = 0.0
    return held


def positive_float(value: object, name: str) -> float:
    return _number(value, name, positive=True)


def non_negative_float(value: object, name: str) -> float:
    return _number(value, name)
