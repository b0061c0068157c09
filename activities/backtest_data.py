"""Where a backtest's bars come from, named by reference.

A durable payload carries a small JSON mapping that says where the bars are, never the bars:
a million minutes of five symbols is 200 MB of arrays, and orchestration histories are
stored and replayed. The activity that runs a backtest turns the reference into
:class:`domain.backtest.Bars` with :func:`load_bars`:

* ``{"source": "synthetic", "symbols": ["AAPL"], "bars": 1_000_000, "seed": 7,
  "start": "2026-01-02T14:30:00Z", "minutes": 1}``: seeded geometric Brownian motion,
  the same bars for the same seed (and each symbol's bars the same whatever other symbols
  are asked for);
* ``{"source": "file", "path": "data/spy.csv", "symbols": ["SPY"]}``: a CSV or Parquet
  file, long (a row per symbol and time) or wide (a row per time, a column per symbol);
* ``{"source": "alpaca", "symbols": ["SPY"], "start": ISO, "end": ISO, "timeframe":
  "1Min"}``: Alpaca's historical bars (keys from ``ALPACA_KEY_ID`` and
  ``ALPACA_SECRET_KEY``; ``ALPACA_DATA_URL`` points it elsewhere, for tests).

:func:`parse_source` validates a reference without loading anything (an HTTP route can
refuse a bad one with a 400 before an orchestration starts). numpy and pandas are imported
inside the functions that need them: an activity module imports this one at start-up,
and cold starts count.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domain.errors import ValidationError
from domain.model import parse_symbol
from domain.serde import parse_enum

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from domain.backtest import Bars

    FloatArray = NDArray[np.float64]
    BoolArray = NDArray[np.bool_]

# Trading minutes in a year (252 sessions of 6.5 hours): scales the synthetic volatility.
MINUTES_PER_YEAR = 252 * 390
# Cells (bars x symbols) one synthetic request may ask for: five float64 arrays of 50M
# cells are 2 GB, which is what a Functions worker can spare.
MAX_SYNTHETIC_CELLS = 50_000_000
DEFAULT_START = datetime(2026, 1, 2, 14, 30, tzinfo=UTC)

PRICE_FIELDS = ("open", "high", "low", "close")
TIME_COLUMNS = ("ts", "timestamp", "time", "datetime", "date")
SYMBOL_COLUMNS = ("symbol", "ticker")
ALPACA_FEEDS = ("iex", "sip", "delayed_sip", "otc", "boats", "overnight")
ALPACA_ADJUSTMENTS = ("raw", "split", "dividend", "all")


class SourceKind(StrEnum):
    SYNTHETIC = "synthetic"
    FILE = "file"
    ALPACA = "alpaca"


class Missing(StrEnum):
    """What to do where one symbol has a bar at a time and another has none."""

    FILL = "fill"  # a bar without trades: the last close as its prices, no volume
    DROP = "drop"  # keep only the times every symbol has a bar at
    ERROR = "error"  # refuse, naming the first gap


class FileFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


class Timeframe(StrEnum):
    """Alpaca's names for the bar lengths a backtest can ask it for."""

    MINUTE = "1Min"
    HOUR = "1Hour"
    DAY = "1Day"


# -- parsing the reference -------------------------------------------------------------------


def _check_keys(source: Mapping[str, Any], allowed: Sequence[str], kind: str) -> None:
    # A misspelt key ("seeds") would otherwise be ignored and the default used silently.
    for key in source:
        if key not in allowed:
            raise ValidationError(
                str(key), f"is not a field of a {kind} source ({', '.join(allowed)})"
            )


def _integer(value: object, name: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, f"must be a whole number, got {type(value).__name__}")
    if value < minimum:
        raise ValidationError(name, f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValidationError(name, f"must be at most {maximum:,}, got {value:,}")
    return value


def _real(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, f"must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValidationError(name, "must be finite")
    if positive and number <= 0.0:
        raise ValidationError(name, "must be greater than zero")
    return number


def _time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValidationError(name, "must be an ISO 8601 time such as 2026-01-02T14:30:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(name, f"is not an ISO 8601 time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise ValidationError(name, "must carry its zone (Z or an offset)")
    return parsed.astimezone(UTC)


def _symbols(value: object, name: str = "symbols") -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(name, 'must be a list of symbols, e.g. ["SPY"]')
    if not value:
        raise ValidationError(name, "must name at least one symbol")
    symbols = tuple(parse_symbol(s, f"{name}[{i}]") for i, s in enumerate(value))
    if len(set(symbols)) != len(symbols):
        raise ValidationError(name, "must not repeat a symbol")
    return symbols


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class SyntheticSource:
    """Seeded geometric Brownian motion: ``volatility`` and ``drift`` are annual (over
    trading minutes), bars follow each other every ``minutes`` without market hours."""

    symbols: tuple[str, ...]
    bars: int
    seed: int = 7
    ts_start: datetime = DEFAULT_START
    minutes: int = 1
    price: float = 100.0
    volatility: float = 0.2
    drift: float = 0.0

    KEYS = (
        "source",
        "symbols",
        "bars",
        "seed",
        "start",
        "minutes",
        "price",
        "volatility",
        "drift",
    )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SyntheticSource:
        _check_keys(data, cls.KEYS, "synthetic")
        symbols = _symbols(data.get("symbols"))
        if "bars" not in data:
            raise ValidationError("bars", "is required: how many bars to generate")
        bars = _integer(data["bars"], "bars", 2, MAX_SYNTHETIC_CELLS // len(symbols))
        start = data.get("start")
        return cls(
            symbols=symbols,
            bars=bars,
            seed=_integer(data.get("seed", 7), "seed", 0),
            ts_start=DEFAULT_START if start is None else _time(start, "start"),
            minutes=_integer(data.get("minutes", 1), "minutes", 1, 1440),
            price=_real(data.get("price", 100.0), "price", positive=True),
            volatility=_real(data.get("volatility", 0.2), "volatility", positive=True),
            drift=_real(data.get("drift", 0.0), "drift"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": SourceKind.SYNTHETIC.value,
            "symbols": list(self.symbols),
            "bars": self.bars,
            "seed": self.seed,
            "start": _iso(self.ts_start),
            "minutes": self.minutes,
            "price": self.price,
            "volatility": self.volatility,
            "drift": self.drift,
        }


@dataclass(frozen=True, slots=True)
class FileSource:
    """A CSV or Parquet file (the format from ``format`` or the file's suffix); ``symbols``
    keeps those symbols, in that order (and names the one symbol of a file without a symbol
    column)."""

    path: str
    symbols: tuple[str, ...] | None = None
    format: FileFormat | None = None
    missing: Missing = Missing.FILL

    KEYS = ("source", "path", "symbols", "format", "missing")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileSource:
        _check_keys(data, cls.KEYS, "file")
        path = data.get("path")
        if not isinstance(path, str) or not path.strip():
            raise ValidationError("path", "must be the path of a CSV or Parquet file")
        symbols = data.get("symbols")
        fmt = data.get("format")
        return cls(
            path=path,
            symbols=None if symbols is None else _symbols(symbols),
            format=None if fmt is None else parse_enum(FileFormat, fmt, "format"),
            missing=parse_enum(Missing, data.get("missing", Missing.FILL.value), "missing"),
        )

    def resolved_format(self) -> FileFormat:
        if self.format is not None:
            return self.format
        name = Path(self.path).name.lower()
        if name.endswith((".parquet", ".pq")):
            return FileFormat.PARQUET
        if name.endswith((".csv", ".csv.gz", ".txt")):
            return FileFormat.CSV
        raise ValidationError(
            "path", f"cannot tell the format of {Path(self.path).name!r}: say format csv or parquet"
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"source": SourceKind.FILE.value, "path": self.path}
        if self.symbols is not None:
            data["symbols"] = list(self.symbols)
        if self.format is not None:
            data["format"] = self.format.value
        data["missing"] = self.missing.value
        return data


@dataclass(frozen=True, slots=True)
class AlpacaSource:
    """Alpaca's historical bars for ``symbols`` from ``ts_start`` to ``ts_end``."""

    symbols: tuple[str, ...]
    ts_start: datetime
    ts_end: datetime
    timeframe: Timeframe = Timeframe.MINUTE
    feed: str | None = None  # iex (free plans), sip, ...: Alpaca's default when unset
    adjustment: str | None = None  # raw, split, dividend, all
    missing: Missing = Missing.FILL

    KEYS = ("source", "symbols", "start", "end", "timeframe", "feed", "adjustment", "missing")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlpacaSource:
        _check_keys(data, cls.KEYS, "alpaca")
        symbols = _symbols(data.get("symbols"))
        if "start" not in data or "end" not in data:
            raise ValidationError("start" if "start" not in data else "end", "is required")
        start, end = _time(data["start"], "start"), _time(data["end"], "end")
        if not start < end:
            raise ValidationError("end", "must be after start")
        feed, adjustment = data.get("feed"), data.get("adjustment")
        for name, value, allowed in (
            ("feed", feed, ALPACA_FEEDS),
            ("adjustment", adjustment, ALPACA_ADJUSTMENTS),
        ):
            if value is not None and value not in allowed:
                raise ValidationError(name, f"must be one of {', '.join(allowed)}")
        return cls(
            symbols=symbols,
            ts_start=start,
            ts_end=end,
            timeframe=parse_enum(
                Timeframe, data.get("timeframe", Timeframe.MINUTE.value), "timeframe"
            ),
            feed=feed,
            adjustment=adjustment,
            missing=parse_enum(Missing, data.get("missing", Missing.FILL.value), "missing"),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "source": SourceKind.ALPACA.value,
            "symbols": list(self.symbols),
            "start": _iso(self.ts_start),
            "end": _iso(self.ts_end),
            "timeframe": self.timeframe.value,
            "missing": self.missing.value,
        }
        if self.feed is not None:
            data["feed"] = self.feed
        if self.adjustment is not None:
            data["adjustment"] = self.adjustment
        return data


Source = SyntheticSource | FileSource | AlpacaSource


def parse_source(source: Mapping[str, Any]) -> Source:
    """The reference, validated (nothing is read): errors name the field."""
    if not isinstance(source, Mapping):
        raise ValidationError("source", "must be an object naming where the bars come from")
    kind = parse_enum(SourceKind, source.get("source"), "source")
    if kind is SourceKind.SYNTHETIC:
        return SyntheticSource.from_dict(source)
    if kind is SourceKind.FILE:
        return FileSource.from_dict(source)
    return AlpacaSource.from_dict(source)


def load_bars(source: Mapping[str, Any]) -> Bars:
    """The bars a reference names (see this module's docstring). Bad references and bad
    data raise ``ValidationError`` naming the field, or the file's row and column."""
    parsed = parse_source(source)
    if isinstance(parsed, SyntheticSource):
        return synthetic_bars(parsed)
    if isinstance(parsed, FileSource):
        return file_bars(parsed)
    return alpaca_bars(parsed)


# -- synthetic -------------------------------------------------------------------------------


def synthetic_bars(source: SyntheticSource) -> Bars:
    """Seeded 1-minute-style OHLCV. Each symbol draws from its own stream, seeded by the
    seed and the symbol's name, so adding a symbol leaves the others' bars unchanged."""
    import numpy as np

    from domain.backtest import Bars

    n, k = source.bars, len(source.symbols)
    step = source.minutes / MINUTES_PER_YEAR
    sigma = source.volatility * math.sqrt(step)
    mu = (source.drift - 0.5 * source.volatility**2) * step
    shape = (n, k)
    open_, high, low, close, volume = (np.empty(shape) for _ in range(5))
    for column, symbol in enumerate(source.symbols):
        rng = np.random.default_rng([source.seed, zlib.crc32(symbol.encode())])
        path = rng.standard_normal(n)
        path *= sigma
        path += mu
        np.cumsum(path, out=path)
        path += math.log(source.price)
        c = np.exp(path)
        # A bar opens near the last close (its first print), not exactly on it.
        o = np.empty(n)
        o[0] = source.price
        o[1:] = c[:-1]
        o *= np.exp(rng.normal(0.0, 0.1 * sigma, n))
        # The extremes reach a little past the open and close, by half a bar's move.
        h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0.0, 0.5 * sigma, n)))
        lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0.0, 0.5 * sigma, n)))
        close[:, column], open_[:, column], high[:, column], low[:, column] = c, o, h, lo
        volume[:, column] = np.floor(rng.lognormal(math.log(1000.0), 0.5, n))
    start = np.datetime64(source.ts_start.replace(tzinfo=None), "ns")
    ts = start + np.arange(n, dtype=np.int64) * np.timedelta64(source.minutes, "m")
    return Bars.of(
        close, open=open_, high=high, low=low, volume=volume, ts=ts, symbols=source.symbols
    )


# -- files -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Where:
    """How a file's rows are named in errors: editors count CSV lines (the header is line
    1), Parquet readers count rows from 0."""

    fmt: FileFormat

    def __call__(self, row: int) -> str:
        return f"line {row + 2}" if self.fmt is FileFormat.CSV else f"row {row}"


def _pandas() -> Any:
    try:
        import pandas  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - alpaca-py installs it
        raise ValidationError("path", "reading files needs pandas (pip install pandas)") from None
    return pandas


def _read_table(source: FileSource, fmt: FileFormat) -> Any:
    pd = _pandas()
    path = Path(source.path)
    if not path.is_file():
        raise ValidationError("path", f"no such file: {source.path}")
    if fmt is FileFormat.PARQUET:
        try:
            return pd.read_parquet(path)
        except ImportError as error:
            raise ValidationError(
                "path",
                f"reading Parquet needs pyarrow (pip install pyarrow), which is missing: {error}",
            ) from None
        except (OSError, ValueError) as error:
            raise ValidationError("path", f"{path.name} is not a Parquet file: {error}") from None
    try:
        header = pd.read_csv(path, nrows=0)
        # Symbols stay text: a ticker like "1" or "NAN" must not turn into a number.
        text = {c: str for c in header.columns if str(c).strip().lower() in SYMBOL_COLUMNS}
        return pd.read_csv(path, dtype=text, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise ValidationError("path", f"{path.name} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValidationError("path", f"{path.name} is not a readable CSV file: {first}") from None


def _named(frame: Any) -> dict[str, str]:
    """The recognised columns: lower-case role -> the column's name in the file."""
    roles: dict[str, str] = {}
    for column in frame.columns:
        name = str(column).strip().lower()
        role = (
            "ts"
            if name in TIME_COLUMNS
            else "symbol"
            if name in SYMBOL_COLUMNS
            else name
            if name in (*PRICE_FIELDS, "volume")
            else None
        )
        if role is None:
            continue
        if role in roles:
            raise ValidationError(
                str(column), f"the file has two {role} columns: {roles[role]!r} and {column!r}"
            )
        roles[role] = str(column)
    return roles


def _times(series: Any, column: str, where: Callable[[int], str]) -> NDArray[np.int64]:
    """UTC nanoseconds since the epoch; a time without a zone is taken as UTC."""
    import numpy as np

    pd = _pandas()
    if series.isna().any():
        row = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise ValidationError(column, f"{where(row)}: has no time")
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        raise ValidationError(column, "must be ISO 8601 times (2026-01-02T14:30:00Z), not numbers")
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        series.dtype
    ):
        parsed = pd.to_datetime(series, utc=True)
    else:
        parsed = pd.to_datetime(series.astype(str), utc=True, format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValidationError(
                column, f"{where(row)}: {str(series.iloc[row])[:40]!r} is not an ISO 8601 time"
            )
    values = parsed.dt.tz_localize(None).to_numpy().astype("datetime64[ns]")
    result: NDArray[np.int64] = values.view(np.int64)
    return result


def _numbers(
    series: Any,
    column: str,
    where: Callable[[int], str],
    *,
    price: bool,
    present: BoolArray | None = None,
) -> FloatArray:
    """A column as float64, every value (where ``present``) a finite positive price, or a
    finite volume not below zero."""
    import numpy as np

    pd = _pandas()
    values: FloatArray = pd.to_numeric(series, errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    with np.errstate(invalid="ignore"):
        good = np.isfinite(values) & ((values > 0.0) if price else (values >= 0.0))
    bad = ~good if present is None else present & ~good
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raw = series.iloc[row]
        raw = raw.item() if hasattr(raw, "item") else raw  # a numpy scalar, shown plainly
        shown = "nothing" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else raw
        need = "a positive price" if price else "a volume of zero or more"
        raise ValidationError(column, f"{where(row)}: must be {need}, got {shown!r}")
    return values


def _check_range(
    fields: Mapping[str, FloatArray],
    names: Mapping[str, str],
    describe: Callable[[int], str],
    present: BoolArray | None = None,
) -> None:
    """High at or above the open and close, low at or below them, row by row."""
    import numpy as np

    close = fields["close"]
    open_ = fields.get("open", close)
    for role in ("high", "low"):
        if role not in fields:
            continue
        value = fields[role]
        with np.errstate(invalid="ignore"):
            if role == "high":
                bad = (value < open_) | (value < close)
            else:
                bad = (value > open_) | (value > close)
        if present is not None:
            bad &= present
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            side = "at or above" if role == "high" else "at or below"
            raise ValidationError(
                names[role],
                f"{describe(row)}: {float(value[row])!r} must be {side} the open and close",
            )


def file_bars(source: FileSource) -> Bars:
    """Bars from a CSV or Parquet file: long or wide (see the module docstring)."""
    fmt = source.resolved_format()
    where = _Where(fmt)
    frame = _read_table(source, fmt)
    if len(frame) == 0:
        raise ValidationError("path", f"{Path(source.path).name} has no rows")
    roles = _named(frame)
    if "ts" not in roles:
        raise ValidationError(
            "ts",
            f"the file has no time column ({', '.join(TIME_COLUMNS[:2])}); it has "
            f"{', '.join(map(str, frame.columns))[:200]}",
        )
    if "symbol" in roles or "close" in roles:
        return _long_bars(frame, roles, source, where)
    return _wide_bars(frame, roles, source, where)


def _file_symbol(source: FileSource) -> str:
    """The symbol of a one-symbol file: the one asked for, or the file's name (spy.csv)."""
    if source.symbols is not None:
        if len(source.symbols) != 1:
            raise ValidationError(
                "symbols", "the file has no symbol column: it holds one symbol, name only it"
            )
        return source.symbols[0]
    stem = Path(source.path).name.split(".")[0].upper()
    try:
        return parse_symbol(stem, "symbols")
    except ValidationError:
        raise ValidationError(
            "symbols", f"the file has no symbol column and {stem!r} is not a symbol: name it"
        ) from None


def _long_bars(frame: Any, roles: Mapping[str, str], source: FileSource, where: _Where) -> Bars:
    import numpy as np

    pd = _pandas()
    if "close" not in roles:
        raise ValidationError("close", "the file has a symbol column but no close column")
    rows = np.arange(len(frame))
    if "symbol" in roles:
        column = roles["symbol"]
        raw = frame[column].astype("string").str.strip()
        codes, uniques = pd.factorize(raw, use_na_sentinel=True)
        if (codes < 0).any():
            row = int(np.flatnonzero(codes < 0)[0])
            raise ValidationError(column, f"{where(row)}: has no symbol")
        names = []
        for index, value in enumerate(uniques):
            try:
                names.append(parse_symbol(str(value), column))
            except ValidationError as error:
                row = int(np.flatnonzero(codes == index)[0])
                raise ValidationError(column, f"{where(row)}: {error.reason}") from None
        columns = codes.astype(np.intp)
        wanted = names
        if source.symbols is not None:
            for symbol in source.symbols:
                if symbol not in names:
                    raise ValidationError(
                        "symbols",
                        f"{symbol} is not in {Path(source.path).name} ({', '.join(names)})",
                    )
            # Each row's column in the output; -1 for the symbols not asked for.
            column_of = np.full(len(names), -1, dtype=np.intp)
            column_of[[names.index(s) for s in source.symbols]] = np.arange(len(source.symbols))
            columns = column_of[codes]
            rows = np.flatnonzero(columns >= 0)
            columns = columns[rows]
            wanted = list(source.symbols)
    else:
        columns = np.zeros(len(frame), dtype=np.intp)
        wanted = [_file_symbol(source)]
    part = frame.iloc[rows] if len(rows) != len(frame) else frame
    ts = _times(part[roles["ts"]], roles["ts"], _Shifted(where, rows))
    shifted = _Shifted(where, rows)
    fields = {
        role: _numbers(part[roles[role]], roles[role], shifted, price=True)
        for role in PRICE_FIELDS
        if role in roles
    }
    _check_range(fields, roles, shifted)
    volume = (
        _numbers(part[roles["volume"]], roles["volume"], shifted, price=False)
        if "volume" in roles
        else None
    )
    _check_order(ts, columns, wanted, roles["ts"], shifted)
    return pivot(ts, columns, wanted, fields, volume, source.missing, missing_field="missing")


@dataclass(frozen=True, slots=True)
class _Shifted:
    """Names row ``i`` of a filtered frame by its row in the file."""

    where: _Where
    rows: NDArray[np.intp]

    def __call__(self, row: int) -> str:
        return self.where(int(self.rows[row]))


def _check_order(
    ts: NDArray[np.int64],
    columns: NDArray[np.intp],
    symbols: Sequence[str],
    column: str,
    where: Callable[[int], str],
) -> None:
    """Each symbol's rows in time order, no time twice (rows of different symbols may
    interleave in any way)."""
    import numpy as np

    order = np.argsort(columns, kind="stable")
    same = columns[order][1:] == columns[order][:-1]
    step = np.diff(ts[order])
    bad = same & (step <= 0)
    if not bad.any():
        return
    positions = np.flatnonzero(bad)
    later = order[positions + 1]
    k = int(np.argmin(later))  # the first offending row in the file
    row, previous = int(later[k]), int(order[positions[k]])
    symbol = symbols[int(columns[row])]
    when = _ns_iso(int(ts[row]))
    if ts[row] == ts[previous]:
        raise ValidationError(column, f"{where(row)}: {symbol} at {when} repeats {where(previous)}")
    raise ValidationError(
        column,
        f"{where(row)}: {symbol} at {when} is before {where(previous)} "
        f"({_ns_iso(int(ts[previous]))}); sort each symbol's rows by time",
    )


def _ns_iso(ns: int) -> str:
    return _iso(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000))


def _wide_column(name: str) -> tuple[str, str]:
    """``SPY`` (its close) or ``SPY.open``/``SPY_open`` -> (symbol, field)."""
    text = name.strip()
    for separator in (".", "_", ":"):
        head, sep, tail = text.rpartition(separator)
        if sep and tail.lower() in (*PRICE_FIELDS, "volume"):
            return head.upper(), tail.lower()
    return text.upper(), "close"


def _wide_bars(frame: Any, roles: Mapping[str, str], source: FileSource, where: _Where) -> Bars:
    import numpy as np

    by_symbol: dict[str, dict[str, str]] = {}
    for column in frame.columns:
        name = str(column)
        if name == roles["ts"]:
            continue
        symbol, field = _wide_column(name)
        try:
            parse_symbol(symbol, name)
        except ValidationError:
            raise ValidationError(
                name,
                "is neither a column of a long file (symbol, open, high, low, close, volume) "
                "nor a symbol's column of a wide one (SPY or SPY.close)",
            ) from None
        by_symbol.setdefault(symbol, {})
        if field in by_symbol[symbol]:
            raise ValidationError(name, f"repeats {symbol}'s {field} ({by_symbol[symbol][field]})")
        by_symbol[symbol][field] = name
    if not by_symbol:
        raise ValidationError("close", "the file has a time column but no prices")
    wanted = list(source.symbols) if source.symbols is not None else list(by_symbol)
    for symbol in wanted:
        if symbol not in by_symbol:
            raise ValidationError(
                "symbols",
                f"{symbol} is not in {Path(source.path).name} ({', '.join(by_symbol)})",
            )
        if "close" not in by_symbol[symbol]:
            raise ValidationError(
                "close", f"{symbol} has no close column ({symbol} or {symbol}.close)"
            )
    ts = _times(frame[roles["ts"]], roles["ts"], where)
    step = np.diff(ts)
    if (step <= 0).any():
        row = int(np.flatnonzero(step <= 0)[0]) + 1
        what = "repeats" if step[row - 1] == 0 else "is before"
        raise ValidationError(
            roles["ts"], f"{where(row)}: {_ns_iso(int(ts[row]))} {what} {where(row - 1)}"
        )
    n, k = len(frame), len(wanted)
    present = np.empty((n, k), dtype=np.bool_)
    grids: dict[str, FloatArray] = {}
    has = {f for symbol in wanted for f in by_symbol[symbol]}
    for column, symbol in enumerate(wanted):
        close_name = by_symbol[symbol]["close"]
        raw = frame[close_name]
        present[:, column] = raw.notna().to_numpy()
        here = present[:, column]
        values: dict[str, FloatArray] = {}
        names: dict[str, str] = {}
        for field in (*PRICE_FIELDS, "volume"):
            if field not in has:
                continue
            found = by_symbol[symbol].get(field)
            if found is None:
                raise ValidationError(
                    f"{symbol}.{field}", f"other symbols have a {field} column, {symbol} has none"
                )
            values[field] = _numbers(
                frame[found], found, where, price=field != "volume", present=here
            )
            names[field] = found
            grids.setdefault(field, np.empty((n, k)))[:, column] = values[field]
        _check_range(values, names, where, here)
    rows = np.repeat(np.arange(n), k)
    columns = np.tile(np.arange(k), n)
    keep = present.reshape(-1)
    fields = {f: grids[f].reshape(-1)[keep] for f in PRICE_FIELDS if f in grids}
    volume = grids["volume"].reshape(-1)[keep] if "volume" in grids else None
    return pivot(ts[rows[keep]], columns[keep], wanted, fields, volume, source.missing, "missing")


# -- long rows to the engine's arrays --------------------------------------------------------


def pivot(
    ts: NDArray[np.int64],
    columns: NDArray[np.intp],
    symbols: Sequence[str],
    fields: Mapping[str, FloatArray],
    volume: FloatArray | None,
    missing: Missing,
    missing_field: str = "missing",
) -> Bars:
    """Rows (time in UTC ns, the symbol's column, prices) to (bars x symbols) arrays over
    every time any symbol has a bar, gaps handled by ``missing``. Each symbol's times must
    be unique (checked by the callers, which can name the row)."""
    import numpy as np

    from domain.backtest import Bars
    from domain.backtest.model import hold_forward

    k = len(symbols)
    times = np.unique(ts)
    at = np.searchsorted(times, ts)
    present = np.zeros((len(times), k), dtype=np.bool_)
    present[at, columns] = True
    grids: dict[str, FloatArray] = {}
    for name, values in (*fields.items(), *((("volume", volume),) if volume is not None else ())):
        grid = np.full((len(times), k), np.nan)
        grid[at, columns] = values
        grids[name] = grid
    for column, symbol in enumerate(symbols):
        if not present[:, column].any():
            raise ValidationError("symbols", f"{symbol} has no bars")
    if not present.all():
        if missing is Missing.ERROR:
            row, column = (int(v) for v in np.argwhere(~present)[0])
            raise ValidationError(
                missing_field,
                f"{symbols[column]} has no bar at {_ns_iso(int(times[row]))}, where other "
                'symbols have one: say "missing": "fill" or "drop"',
            )
        if missing is Missing.DROP:
            keep: BoolArray = np.all(present, axis=1)
        else:
            # Before a symbol's first bar there is no price to carry: start where all have one.
            keep = np.all(np.logical_or.accumulate(present, axis=0), axis=1)
            close = grids["close"]
            filled = hold_forward(close, ~present)
            gaps = ~present
            for name in PRICE_FIELDS:
                if name in grids:
                    grids[name] = np.where(gaps, filled, grids[name])
            if "volume" in grids:
                grids["volume"] = np.where(gaps, 0.0, grids["volume"])
        if not keep.any():
            raise ValidationError(
                missing_field, "no time has a bar of every symbol: the symbols never overlap"
            )
        times = times[keep]
        grids = {name: grid[keep] for name, grid in grids.items()}
    if len(times) < 2:
        raise ValidationError("bars", f"a backtest needs at least two bars, got {len(times)}")
    return Bars.of(
        grids["close"],
        open=grids.get("open"),
        high=grids.get("high"),
        low=grids.get("low"),
        volume=grids.get("volume"),
        ts=times.view("datetime64[ns]"),
        symbols=list(symbols),
    )


# -- Alpaca ----------------------------------------------------------------------------------


def alpaca_bars(source: AlpacaSource) -> Bars:
    """Alpaca's historical bars for the source (its paging is alpaca-py's)."""
    # Imported here: alpaca-py brings pandas, a cost only its users pay.
    import numpy as np

    from adapters.alpaca_bars import AlpacaBarSource
    from adapters.bootstrap import AlpacaSettings

    try:
        settings = AlpacaSettings.from_environ(os.environ)
    except ValidationError as error:
        raise ValidationError(
            error.field,
            "historical bars from Alpaca need ALPACA_KEY_ID and ALPACA_SECRET_KEY set "
            f"({error.reason})",
        ) from None
    client = AlpacaBarSource.connect(
        settings.key_id,
        settings.secret,
        url_override=(os.environ.get("ALPACA_DATA_URL") or "").strip() or None,
    )
    fetched = client.fetch(
        source.symbols,
        source.ts_start,
        source.ts_end,
        source.timeframe.value,
        feed=source.feed,
        adjustment=source.adjustment,
    )
    for symbol in source.symbols:
        if symbol not in fetched or len(fetched[symbol].ts) == 0:
            raise ValidationError(
                "symbols",
                f"Alpaca has no {source.timeframe.value} bars of {symbol} from "
                f"{_iso(source.ts_start)} to {_iso(source.ts_end)}",
            )
    parts = [fetched[s] for s in source.symbols]
    ts = np.concatenate([p.ts.astype("datetime64[ns]").view(np.int64) for p in parts])
    columns = np.concatenate([np.full(len(p.ts), i, dtype=np.intp) for i, p in enumerate(parts)])
    fields = {name: np.concatenate([getattr(p, name) for p in parts]) for name in PRICE_FIELDS}
    volume = np.concatenate([p.volume for p in parts])
    for name in PRICE_FIELDS:
        bad = ~(np.isfinite(fields[name]) & (fields[name] > 0.0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            symbol = source.symbols[int(columns[row])]
            raise ValidationError(
                name,
                f"Alpaca sent {symbol} a {name} of {fields[name][row]!r} at "
                f"{_ns_iso(int(ts[row]))}",
            )
    _check_order(ts, columns, source.symbols, "ts", lambda row: f"Alpaca's bar {row}")
    return pivot(ts, columns, source.symbols, fields, volume, source.missing)


def bars_per_year(bars: Bars) -> float:
    """Bars in a trading year at the bars' spacing (the median step): 252 for days (and
    longer), 252 x 6.5 hours of them for intraday bars. Without times, 252."""
    import numpy as np

    if bars.ts is None or bars.n_bars < 2:
        return 252.0
    step = float(np.median(np.diff(bars.ts).astype("timedelta64[s]").astype(np.float64)))
    if step >= 20 * 3600:
        return 252.0
    return 252.0 * 6.5 * 3600.0 / step
