"""Manual order bodies: what is accepted, what is refused and with which field, and the
intent ids that make a retried request the same order."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from domain.errors import ValidationError
from domain.manual import ManualOrder, parse_idempotency_key
from domain.model import OrderType
from domain.orders import PlanKind

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
MARKET = {"symbol": "AAPL", "side": "buy", "quantity": "5"}


def parse(body: Any) -> ManualOrder:
    return ManualOrder.from_body(body, default_account="paper")


def test_a_retried_request_with_a_key_names_the_same_intent() -> None:
    order = parse(MARKET)
    first = order.intent(idempotency_key="k-1", unique="a", ts=T0, last_price=Decimal(100))
    again = order.intent(idempotency_key="k-1", unique="b", ts=T0, last_price=Decimal(101))
    other = order.intent(idempotency_key=None, unique="c", ts=T0, last_price=Decimal(100))
    assert first.intent_id == again.intent_id != other.intent_id
    assert parse(MARKET).fingerprint == order.fingerprint
    assert parse({**MARKET, "quantity": "6"}).fingerprint != order.fingerprint


def test_a_bracket_body_becomes_a_bracket_with_the_stop_kind_it_asks_for() -> None:
    body = {**MARKET, "take_profit": {"limit_price": 110}, "stop_loss": {"trail_percent": 2}}
    intent = parse(body).intent(idempotency_key=None, unique="u", ts=T0, last_price=Decimal(100))
    assert intent.kind is PlanKind.BRACKET
    assert intent.legs[2].order_type is OrderType.TRAILING_STOP
    limit_stop = {**MARKET, "take_profit": {"limit_price": 110}}
    limit_stop["stop_loss"] = {"stop_price": 95, "limit_price": 94}
    stop = parse(limit_stop).intent(
        idempotency_key=None, unique="u", ts=T0, last_price=Decimal(100)
    )
    assert stop.legs[2].order_type is OrderType.STOP_LIMIT


@pytest.mark.parametrize(
    ("exit_field", "exit_body", "leg", "order_type"),
    [
        ("stop_loss", {"stop_price": 95}, "sl", OrderType.STOP),
        ("take_profit", {"limit_price": 110}, "tp", OrderType.LIMIT),
    ],
)
def test_one_exit_alone_makes_a_one_triggers_other_plan(
    exit_field: str, exit_body: dict[str, Any], leg: str, order_type: OrderType
) -> None:
    intent = parse({**MARKET, exit_field: exit_body}).intent(
        idempotency_key=None, unique="u", ts=T0, last_price=Decimal(100)
    )
    assert intent.kind is PlanKind.BRACKET
    assert [x.name for x in intent.legs] == ["entry", leg]
    assert intent.legs[1].order_type is order_type and intent.legs[1].side.value == "sell"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**MARKET, "stop_loss": {"stop_price": 105}}, "sl"),
        ({**MARKET, "take_profit": {"limit_price": 95}}, "tp"),
        ({**MARKET, "side": "sell", "stop_loss": {"stop_price": 95}}, "sl"),
    ],
)
def test_an_exit_on_the_wrong_side_of_the_entry_is_refused(body: Any, field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse(body).intent(idempotency_key=None, unique="u", ts=T0, last_price=Decimal(100))
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**MARKET, "stop_loss": "95"}, "stop_loss"),
        ({**MARKET, "take_profit": {}}, "take_profit.limit_price"),
        ({**MARKET, "take_profit": {"limit_price": 1, "x": 1}, "stop_loss": {}}, "take_profit.x"),
        ({**MARKET, "take_profit": {"limit_price": 110}, "stop_loss": {}}, "stop_loss.stop_price"),
        ({**MARKET, "account": "live"}, "account"),
        ({**MARKET, "reference_price": 0}, "reference_price"),
        ("buy AAPL", "body"),
    ],
)
def test_bad_bodies_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse(body)
    assert refused.value.field == field


def test_a_market_order_without_any_price_is_refused() -> None:
    with pytest.raises(ValidationError, match="reference_price"):
        parse(MARKET).intent(idempotency_key=None, unique="u", ts=T0, last_price=None)


def test_idempotency_keys_are_short_and_plain() -> None:
    assert parse_idempotency_key("order-2026.03.02_1") == "order-2026.03.02_1"
    assert parse_idempotency_key(None) is None
    for bad in ("", "has space", "x" * 101, "slash/y"):
        with pytest.raises(ValidationError, match="Idempotency-Key"):
            parse_idempotency_key(bad)
