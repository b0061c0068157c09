"""Market data: trades (``Tick``), quotes and bars, parsed from JSON-like dicts.

Parsing never raises for bad input: it returns a ``ParseError`` value naming the field and
the reason, so a caller can dead-letter one event and carry on with the rest of a batch.

Prices here are binary floats: market data feeds signals, which are computed in floating
point. A price that becomes an order price is converted with ``as_decimal`` and rounded to
the instrument's tick size before it reaches a broker or the books.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from domain.errors import ValidationError
from domain.model import SYMBOL_PATTERN
from domain.serde import parse_ts, ts_str

# No price or size is believable beyond this; the bound also keeps indicator sums of
# squares (and the state snapshots holding them) finite.
MAX_VALUE = 1e12

# Clocks disagree a little; a timestamp further ahead than this is not believable.
MAX_FUTURE_SKEW = timedelta(seconds=60)


class MarketEventType(StrEnum):
    TRADE = "trade"
    QUOTE = "quote"
    BAR = "bar"


def as_decimal(price: float) -> Decimal:
    """The shortest decimal that reads back as ``price`` (``0.1`` -> ``Decimal('0.1')``)."""
    return Decimal(repr(price))


@dataclass(frozen=True, slots=True)
class ParseError:
    """Why one raw event was refused; ``raw`` is kept for the dead-letter record."""

    field: str
    reason: str
    raw: Any = dc_field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(slots=True)
class Tick:
    """One trade print.

    Market-data records are treated as immutable but are not ``frozen``: a frozen dataclass
    pays for ``object.__setattr__`` on every field, a third of the per-tick budget.
    """

    symbol: str
    price: float
    size: float
    ts_event: datetime
    trade_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": MarketEventType.TRADE.value,
            "symbol": self.symbol,
            "price": self.price,
            "size": self.size,
            "ts": ts_str(self.ts_event),
        }
        if self.trade_id is not None:
            data["id"] = self.trade_id
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Strict inverse of ``to_dict``; raises ValidationError (use ``parse_tick`` on input
        from outside)."""
        result = parse_tick(data, now=None)
        if isinstance(result, ParseError):
            raise ValidationError(result.field, result.reason)
        return cls(result.symbol, result.price, result.size, result.ts_event, result.trade_id)


@dataclass(slots=True)
class Quote:
    symbol: str
    bid_price: float
    bid_size: float
    ask_price: float
    ask_size: float
    ts_event: datetime

    @property
    def mid(self) -> float:
        return (self.bid_price + self.ask_price) / 2.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": MarketEventType.QUOTE.value,
            "symbol": self.symbol,
            "bid_price": self.bid_price,
            "bid_size": self.bid_size,
            "ask_price": self.ask_price,
            "ask_size": self.ask_size,
            "ts": ts_str(self.ts_event),
        }


@dataclass(slots=True)
class Bar:
    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    ts_event: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": MarketEventType.BAR.value,
            "symbol": self.symbol,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "ts": ts_str(self.ts_event),
        }


MarketEvent = Tick | Quote | Bar


class _Refused(Exception):
    """Internal: carries a field and a reason out of the checks below."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason


# Symbols already seen valid: a set lookup is several times cheaper than the regex, and a
# feed carries a few thousand symbols at most. Bounded so junk cannot grow it for ever.
_KNOWN_SYMBOLS: set[str] = set()
_KNOWN_SYMBOLS_MAX = 50_000


def _symbol(data: Mapping[str, Any]) -> str:
    value = data.get("symbol")
    if type(value) is str and value in _KNOWN_SYMBOLS:
        return value
    if value is None:
        raise _Refused("symbol", "is required")
    if not isinstance(value, str) or not SYMBOL_PATTERN.fullmatch(value):
        raise _Refused("symbol", f"not a valid symbol: {str(value)[:20]!r}")
    if len(_KNOWN_SYMBOLS) < _KNOWN_SYMBOLS_MAX:
        _KNOWN_SYMBOLS.add(value)
    return value


def _number(data: Mapping[str, Any], name: str, *, positive: bool) -> float:
    value = data.get(name)
    if value is None:
        raise _Refused(name, "is required")
    if type(value) is float:
        number = value
    elif type(value) is int:
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _Refused(name, f"not a number: {value[:20]!r}") from None
    else:
        raise _Refused(name, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise _Refused(name, "must be finite")
    if number > MAX_VALUE:
        raise _Refused(name, f"above {MAX_VALUE:.0e} is not believable")
    if positive:
        if number <= 0.0:
            raise _Refused(name, "must be greater than zero")
    elif number < 0.0:
        raise _Refused(name, "must not be negative")
    return number


def _timestamp(data: Mapping[str, Any], now: datetime | None) -> datetime:
    value = data.get("ts")
    if value is None:
        raise _Refused("ts", "is required")
    ts: datetime | None = None
    if type(value) is str:
        # Fast path for the feed's own format (UTC, "Z" or "+00:00"); anything else takes
        # the general parser, which also produces the error message.
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            ts = None
        if ts is not None and ts.tzinfo is not UTC:
            ts = None
    if ts is None:
        try:
            ts = parse_ts(value, "ts")
        except ValidationError as err:
            raise _Refused(err.field, err.reason) from None
    if now is not None and ts - now > MAX_FUTURE_SKEW:
        raise _Refused("ts", f"{ts_str(ts)} is more than {MAX_FUTURE_SKEW} in the future")
    return ts


def _check_mapping(data: object) -> Mapping[str, Any]:
    if type(data) is dict:
        return data
    if not isinstance(data, Mapping):
        raise _Refused("event", f"must be a JSON object, got {type(data).__name__}")
    return data


def _now_utc(now: datetime | None) -> datetime | None:
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def parse_tick(data: object, *, now: datetime | None) -> Tick | ParseError:
    """A validated trade, or why not. ``now`` bounds how far in the future ``ts`` may be
    (``None`` skips that check, for replaying history)."""
    if type(data) is dict:
        tick = feed_trade(
            data.get("symbol"),
            data.get("price"),
            data.get("size"),
            data.get("ts"),
            data.get("id"),
            now,
        )
        if tick is not None:
            return tick
    return _parse_tick_general(data, now)


def feed_trade(
    symbol: object,
    price: object,
    size: object,
    ts_text: object,
    trade_id: object,
    now: datetime | None,
) -> Tick | None:
    """The trade these fields make when they are in the feed's own shape (a known symbol,
    float price, UTC time) and valid; ``None`` otherwise, and the general path
    (``parse_tick``) then accepts them or says why not. Every check of the general path,
    written out without calls: this is the per-tick hot path."""
    if (
        type(symbol) is str
        and symbol in _KNOWN_SYMBOLS
        and type(price) is float
        and 0.0 < price <= MAX_VALUE
        and (type(size) is float or type(size) is int)
        and 0 <= size <= MAX_VALUE
        and type(ts_text) is str
    ):
        try:
            ts = datetime.fromisoformat(ts_text)
        except ValueError:
            return None
        if ts.tzinfo is UTC and (now is None or ts - now <= MAX_FUTURE_SKEW):
            if trade_id is None or type(trade_id) is str:
                return Tick(symbol, price, float(size), ts, trade_id)
            if type(trade_id) is int:
                return Tick(symbol, price, float(size), ts, str(trade_id))
    return None


def _parse_tick_general(data: object, now: datetime | None) -> Tick | ParseError:
    try:
        event = _check_mapping(data)
        symbol = _symbol(event)
        price = _number(event, "price", positive=True)
        size = _number(event, "size", positive=False)
        ts = _timestamp(event, _now_utc(now))
        trade_id = event.get("id")
        if trade_id is not None and type(trade_id) is not str:
            if type(trade_id) is not int:
                raise _Refused("id", "must be a string or an integer")
            trade_id = str(trade_id)
    except _Refused as refused:
        return ParseError(refused.field, refused.reason, data)
    return Tick(symbol, price, size, ts, trade_id)


def parse_quote(data: object, *, now: datetime | None) -> Quote | ParseError:
    try:
        event = _check_mapping(data)
        symbol = _symbol(event)
        bid = _number(event, "bid_price", positive=True)
        bid_size = _number(event, "bid_size", positive=False)
        ask = _number(event, "ask_price", positive=True)
        ask_size = _number(event, "ask_size", positive=False)
        if bid > ask:
            raise _Refused("bid_price", f"{bid} is above ask_price {ask} (crossed quote)")
        ts = _timestamp(event, _now_utc(now))
    except _Refused as refused:
        return ParseError(refused.field, refused.reason, data)
    return Quote(symbol, bid, bid_size, ask, ask_size, ts)


def parse_bar(data: object, *, now: datetime | None) -> Bar | ParseError:
    try:
        event = _check_mapping(data)
        symbol = _symbol(event)
        o = _number(event, "open", positive=True)
        h = _number(event, "high", positive=True)
        lo = _number(event, "low", positive=True)
        c = _number(event, "close", positive=True)
        volume = _number(event, "volume", positive=False)
        if lo > h:
            raise _Refused("low", f"{lo} is above high {h}")
        if not lo <= o <= h:
            raise _Refused("open", f"{o} is outside [low {lo}, high {h}]")
        if not lo <= c <= h:
            raise _Refused("close", f"{c} is outside [low {lo}, high {h}]")
        ts = _timestamp(event, _now_utc(now))
    except _Refused as refused:
        return ParseError(refused.field, refused.reason, data)
    return Bar(symbol, o, h, lo, c, volume, ts)


_PARSERS = {
    MarketEventType.TRADE.value: parse_tick,
    MarketEventType.QUOTE.value: parse_quote,
    MarketEventType.BAR.value: parse_bar,
}


def parse_market_event(data: object, *, now: datetime | None) -> MarketEvent | ParseError:
    """Dispatch on ``type`` (``trade`` when absent, the common case on the ``ticks`` hub)."""
    if not isinstance(data, Mapping):
        return ParseError("event", f"must be a JSON object, got {type(data).__name__}", data)
    kind = data.get("type", MarketEventType.TRADE.value)
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        return ParseError("type", f"must be one of trade, quote, bar; got {str(kind)[:20]!r}", data)
    return parser(data, now=now)
