"""From Alpaca's stream messages to the events the desk's hubs carry.

Market data arrives as msgpack maps keyed by Alpaca's one-letter fields (``T`` type, ``S``
symbol, ``t`` a msgpack timestamp...). Each becomes the JSON the ``ticks`` trigger parses
(``domain.market``'s ``to_dict`` of a trade, quote or bar), after the same validation the
trigger applies, so a message the app would dead-letter is refused here and counted instead
of crossing the wire. Trade updates keep Alpaca's JSON and are keyed by the order's intent,
so every update of one orchestration lands on one partition, in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from domain.market import MarketEvent, ParseError, parse_market_event

# Alpaca's market-data message types and the desk's names for them.
TRADE, QUOTE, BAR = "t", "q", "b"
KINDS = {TRADE: "trade", QUOTE: "quote", BAR: "bar", "u": "bar", "d": "bar"}


def _when(value: object) -> object:
    """Alpaca's ``t``: a msgpack Timestamp in the stream (anything with ``to_datetime``), a
    datetime or an RFC 3339 string; left as it is when it is none of those, for the
    validation to name."""
    to_datetime = getattr(value, "to_datetime", None)
    if callable(to_datetime):
        value = to_datetime()
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    return value


def desk_record(message: Mapping[str, Any]) -> dict[str, Any]:
    """The desk's field names for one Alpaca market-data map (not yet validated)."""
    kind = KINDS.get(str(message.get("T")), str(message.get("T")))
    record: dict[str, Any] = {
        "type": kind,
        "symbol": message.get("S"),
        "ts": _when(message.get("t")),
    }
    if kind == "trade":
        record.update(price=message.get("p"), size=message.get("s"))
        if message.get("i") is not None:
            record["id"] = message["i"]
    elif kind == "quote":
        record.update(
            bid_price=message.get("bp"),
            bid_size=message.get("bs"),
            ask_price=message.get("ap"),
            ask_size=message.get("as"),
        )
    elif kind == "bar":
        record.update(
            open=message.get("o"),
            high=message.get("h"),
            low=message.get("l"),
            close=message.get("c"),
            volume=message.get("v"),
        )
    return record


def market_event(message: object, *, now: datetime | None) -> MarketEvent | ParseError:
    """A validated trade, quote or bar, or why the message is refused."""
    if not isinstance(message, Mapping):
        return ParseError("message", f"must be a map, got {type(message).__name__}", message)
    if str(message.get("T")) not in KINDS:
        return ParseError(
            "T", f"not a trade, quote or bar: {str(message.get('T'))[:20]!r}", message
        )
    return parse_market_event(desk_record(message), now=now)


def market_body(event: MarketEvent) -> bytes:
    return orjson.dumps(event.to_dict())


def trade_update(message: object) -> tuple[str, bytes] | ParseError:
    """(partition key, body) for one message of the trade-updates stream: the key is the
    intent id the order's client order id starts with, so an orchestration's updates stay in
    order. Updates of orders this desk did not place are refused (no orchestration waits)."""
    if not isinstance(message, Mapping):
        return ParseError("message", f"must be an object, got {type(message).__name__}", message)
    data = message.get("data")
    if message.get("stream") != "trade_updates" or not isinstance(data, Mapping):
        return ParseError("stream", "not a trade update", message)
    order = data.get("order")
    if not isinstance(order, Mapping):
        return ParseError("order", "must be an object", message)
    cid = order.get("client_order_id")
    if not isinstance(cid, str) or not cid or len(cid) > 128:
        return ParseError("client_order_id", "is required", message)
    intent, sep, _leg = cid.partition(":")
    if not sep or not intent:
        return ParseError("client_order_id", "is not one of this desk's orders", message)
    return intent, orjson.dumps(message)
