from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import ValidationError
from domain.market import (
    MAX_FUTURE_SKEW,
    Bar,
    ParseError,
    Quote,
    Tick,
    as_decimal,
    parse_bar,
    parse_market_event,
    parse_quote,
    parse_tick,
)

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def trade(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "symbol": "AAPL",
        "price": 187.25,
        "size": 100,
        "ts": "2026-03-02T14:59:59.123456Z",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def test_valid_trade_parses_to_a_tick_in_utc() -> None:
    tick = parse_tick(trade(id=42), now=NOW)
    assert tick == Tick("AAPL", 187.25, 100.0, datetime(2026, 3, 2, 14, 59, 59, 123456, UTC), "42")
    assert tick.ts_event.tzinfo is UTC


def test_offset_timestamps_are_converted_to_utc() -> None:
    tick = parse_tick(trade(ts="2026-03-02T09:59:59-05:00"), now=NOW)
    assert isinstance(tick, Tick)
    assert tick.ts_event == datetime(2026, 3, 2, 14, 59, 59, tzinfo=UTC)


def test_nanosecond_timestamps_from_the_feed_are_accepted() -> None:
    tick = parse_tick(trade(ts="2026-03-02T14:59:59.123456789Z"), now=NOW)
    assert isinstance(tick, Tick)
    assert tick.ts_event.microsecond == 123456


@pytest.mark.parametrize(
    ("overrides", "field", "reason_part"),
    [
        ({"symbol": None}, "symbol", "required"),
        ({"symbol": "aapl"}, "symbol", "not a valid symbol"),
        ({"symbol": "AAPL; DROP"}, "symbol", "not a valid symbol"),
        ({"symbol": 7}, "symbol", "not a valid symbol"),
        ({"price": None}, "price", "required"),
        ({"price": 0}, "price", "greater than zero"),
        ({"price": -1.5}, "price", "greater than zero"),
        ({"price": math.nan}, "price", "finite"),
        ({"price": math.inf}, "price", "finite"),
        ({"price": "abc"}, "price", "not a number"),
        ({"price": True}, "price", "must be a number"),
        ({"price": [1]}, "price", "must be a number"),
        ({"size": -1}, "size", "negative"),
        ({"ts": None}, "ts", "required"),
        ({"ts": "2026-03-02T14:59:59"}, "ts", "timezone"),
        ({"ts": "yesterday"}, "ts", "ISO 8601"),
        ({"ts": 1700000000}, "ts", "ISO 8601"),
        ({"ts": "2026-03-02T15:01:01Z"}, "ts", "future"),
        ({"id": {"x": 1}}, "id", "string or an integer"),
    ],
)
def test_bad_trade_fields_are_named_with_a_reason(
    overrides: dict[str, Any], field: str, reason_part: str
) -> None:
    raw = trade(**overrides)
    if overrides.get("symbol", "") is None:
        raw.pop("symbol", None)
    result = parse_tick(raw, now=NOW)
    assert isinstance(result, ParseError)
    assert result.field == field
    assert reason_part in result.reason
    assert result.raw is raw


def test_future_skew_boundary() -> None:
    at_limit = (NOW + MAX_FUTURE_SKEW).isoformat()
    past_limit = (NOW + MAX_FUTURE_SKEW + timedelta(microseconds=1)).isoformat()
    assert isinstance(parse_tick(trade(ts=at_limit), now=NOW), Tick)
    assert isinstance(parse_tick(trade(ts=past_limit), now=NOW), ParseError)
    # Replaying history has no "now".
    assert isinstance(parse_tick(trade(ts="2099-01-01T00:00:00Z"), now=None), Tick)


def test_non_object_event_is_a_parse_error() -> None:
    raws: list[object] = [None, [], "AAPL", 3]
    for raw in raws:
        result = parse_market_event(raw, now=NOW)
        assert isinstance(result, ParseError)
        assert result.field == "event"


def test_event_type_dispatch_and_unknown_type() -> None:
    assert isinstance(parse_market_event(trade(), now=NOW), Tick)
    result = parse_market_event(trade(type="trade_cancel"), now=NOW)
    assert isinstance(result, ParseError)
    assert result.field == "type"


def test_quote_parses_and_refuses_a_crossed_book() -> None:
    raw = {
        "type": "quote",
        "symbol": "MSFT",
        "bid_price": 410.1,
        "bid_size": 3,
        "ask_price": 410.2,
        "ask_size": 5,
        "ts": "2026-03-02T14:00:00Z",
    }
    quote = parse_market_event(raw, now=NOW)
    assert isinstance(quote, Quote)
    assert quote.mid == pytest.approx(410.15)
    crossed = parse_quote({**raw, "bid_price": 410.3}, now=NOW)
    assert isinstance(crossed, ParseError)
    assert crossed.field == "bid_price"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"low": 12.0}, "low"),
        ({"open": 9.0}, "open"),
        ({"close": 11.5}, "close"),
        ({"volume": -5}, "volume"),
    ],
)
def test_bar_ohlc_consistency(overrides: dict[str, Any], field: str) -> None:
    raw = {
        "type": "bar",
        "symbol": "SPY",
        "open": 10.0,
        "high": 11.0,
        "low": 9.5,
        "close": 10.5,
        "volume": 1000,
        "ts": "2026-03-02T14:00:00Z",
    }
    assert isinstance(parse_bar(raw, now=NOW), Bar)
    result = parse_bar({**raw, **overrides}, now=NOW)
    assert isinstance(result, ParseError)
    assert result.field == field


def test_crypto_pair_symbols_are_valid() -> None:
    assert isinstance(parse_tick(trade(symbol="BTC/USD"), now=NOW), Tick)


def test_to_dict_round_trips_through_json() -> None:
    tick = parse_tick(trade(id="t-1"), now=NOW)
    assert isinstance(tick, Tick)
    assert Tick.from_dict(json.loads(json.dumps(tick.to_dict()))) == tick


def test_from_dict_raises_a_validation_error_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        Tick.from_dict(trade(price=-1))
    assert err.value.field == "price"


def test_as_decimal_keeps_the_printed_digits() -> None:
    assert as_decimal(0.1) == Decimal("0.1")
    assert as_decimal(187.25) == Decimal("187.25")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(
            ["type", "symbol", "price", "size", "ts", "id", "bid_price", "ask_price", "open"]
        ),
        json_values,
    )
)
def test_arbitrary_input_never_raises(raw: dict[str, Any]) -> None:
    result = parse_market_event(raw, now=NOW)
    assert isinstance(result, Tick | Quote | Bar | ParseError)


@given(
    symbol=st.sampled_from(["AAPL", "MSFT", "aapl", "BTC/USD"]),
    price=st.one_of(st.floats(), st.integers(-5, 5), st.just("1.5")),
    size=st.one_of(st.floats(), st.integers(-5, 1000)),
    ts=st.one_of(
        st.just("2026-03-02T14:59:59.5Z"),
        st.just("2026-03-02T14:59:59+00:00"),
        st.just("2026-03-02T09:59:59-05:00"),
        st.just("2026-03-02T14:59:59"),
        st.just("2026-03-02T15:05:00Z"),
        st.just("garbage"),
    ),
    trade_id=st.one_of(st.none(), st.integers(0, 10), st.text(max_size=3), st.just([1])),
)
def test_the_fast_path_agrees_with_the_general_parser(
    symbol: str, price: object, size: object, ts: str, trade_id: object
) -> None:
    from domain.market import _parse_tick_general

    raw = {"symbol": symbol, "price": price, "size": size, "ts": ts, "id": trade_id}
    parse_tick(raw, now=NOW)  # the first sighting of a symbol warms the fast path
    assert parse_tick(raw, now=NOW) == _parse_tick_general(raw, NOW)


def test_prices_and_sizes_beyond_belief_are_refused() -> None:
    ts = "2026-03-02T14:30:00Z"
    refused = parse_tick({"symbol": "AAPL", "price": 1e13, "size": 1, "ts": ts}, now=None)
    assert isinstance(refused, ParseError) and refused.field == "price"
    huge = parse_tick({"symbol": "AAPL", "price": 10.0, "size": 1e13, "ts": ts}, now=None)
    assert isinstance(huge, ParseError) and huge.field == "size"
    assert isinstance(
        parse_tick({"symbol": "AAPL", "price": 1e12, "size": 1, "ts": ts}, now=None), Tick
    )
