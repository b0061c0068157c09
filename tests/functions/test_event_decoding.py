"""The ticks trigger reads each event body through a typed fast decoder first. It must
accept exactly what the general path (JSON decode, then the domain's parsers) accepts, give
the same tick, and leave every refusal and its reason to the general path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from activities.signals import RawEvent, parse_event, read_event
from domain.market import ParseError, Tick

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

scalars = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.integers(2**63 - 2, 2**64 + 2)
    | st.integers(-(2**63) - 2, -(2**63) + 2)
    | st.text(max_size=6)
    | st.sampled_from(
        [
            "AAPL",
            "MSFT",
            "bad symbol",
            "2026-03-02T14:59:59.5Z",
            "2026-03-02T14:59:59.1234567Z",
            "2026-03-02T14:59:59+00:00",
            "2026-03-02T09:59:59-05:00",
            "2026-03-02T14:59:59",
            "2026-03-02t14:59:59z",
            "2026-03-02T15:05:00Z",
            "trade",
            "quote",
        ]
    )
)
values = scalars | st.lists(scalars, max_size=2) | st.dictionaries(st.text(max_size=3), scalars)
fields = st.dictionaries(
    st.sampled_from(["type", "symbol", "price", "size", "ts", "id", "bid_price", "extra"]),
    values,
)


def both_paths(body: bytes) -> tuple[Tick | ParseError | None, Tick | ParseError | None]:
    # The first sighting of a symbol registers it with the domain's fast check: parse once
    # so both paths meet a warm symbol set, as they do in a running trigger.
    parse_event(body, NOW)
    return read_event(RawEvent("0", 1, body), NOW), parse_event(body, NOW)


def trade(**fields: Any) -> dict[str, Any]:
    return {"symbol": "AAPL", "price": 187.25, "size": 100, "ts": "2026-03-02T14:59:59Z", **fields}


@given(fields)
@example(trade())
@example(trade(id=2**63))  # a 64-bit id beyond int64: the general path reads it as an int
@example(trade(id=2**64))  # beyond 64 bits: read as a float, refused
@example(trade(ts="2026-03-02T14:59:59.9999996Z"))  # seven digits: truncated, never rounded
@example(trade(price=187))
@example(trade(price=True))
@example(trade(type="trade", size=0))
@example(trade(type="bar"))
def test_the_fast_decoder_agrees_with_the_general_path(event: dict[str, Any]) -> None:
    fast, general = both_paths(json.dumps(event).encode())
    assert fast == general
    if isinstance(fast, ParseError) and isinstance(general, ParseError):
        assert fast.reason == general.reason


@given(
    st.binary(max_size=40) | st.sampled_from([b"", b"[]", b"null", b'{"a":1}x', b"\xef\xbb\xbf{}"])
)
def test_bodies_that_are_not_trades_get_the_general_paths_verdict(body: bytes) -> None:
    fast, general = both_paths(body)
    assert fast == general


def test_a_trade_and_its_refusals_are_what_the_general_path_says() -> None:
    tick, _ = both_paths(json.dumps(trade(id=7)).encode())
    assert tick == Tick("AAPL", 187.25, 100.0, datetime(2026, 3, 2, 14, 59, 59, tzinfo=UTC), "7")
    refused, _ = both_paths(json.dumps(trade(price=-1)).encode())
    assert isinstance(refused, ParseError) and refused.field == "price"
    not_json, _ = both_paths(b"{")
    assert isinstance(not_json, ParseError) and not_json.field == "body"
    quote = {"type": "quote", "symbol": "AAPL", "bid_price": 1.0, "ask_price": 1.1}
    assert both_paths(
        json.dumps({**quote, "bid_size": 1, "ask_size": 1, "ts": "2026-03-02T14:59:59Z"}).encode()
    ) == (None, None)
