from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import IllegalTransition, ValidationError
from domain.fills import Fill
from domain.model import OrderType, Side
from domain.orders import (
    MAX_CLIENT_ORDER_ID,
    TERMINAL,
    TRANSITIONS,
    Order,
    OrderIntent,
    OrderLeg,
    OrderStatus,
    PlanKind,
)

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
D = Decimal


def intent_id(target: int = 1) -> str:
    return OrderIntent.derive_id("sma_cross:AAPL:10:50", "acct-1", ["AAPL"], T0, target)


def bracket(entry_side: Side = Side.BUY, tp: str = "110", sl: str = "95") -> OrderIntent:
    exit_side = entry_side.opposite
    return OrderIntent(
        intent_id=intent_id(),
        account="acct-1",
        source="manual",
        kind=PlanKind.BRACKET,
        legs=(
            OrderLeg("entry", "AAPL", entry_side, D("10"), OrderType.LIMIT, limit_price=D("100")),
            OrderLeg("tp", "AAPL", exit_side, D("10"), OrderType.LIMIT, limit_price=D(tp)),
            OrderLeg("sl", "AAPL", exit_side, D("10"), OrderType.STOP, stop_price=D(sl)),
        ),
        ts_created=T0,
    )


def test_intent_ids_are_deterministic_and_fit_as_instance_and_client_order_ids() -> None:
    assert intent_id() == intent_id()
    assert intent_id(1) != intent_id(0)
    assert OrderIntent.derive_id("s", "acct-1", ["AAPL"], T0 + timedelta(microseconds=1), 1) != (
        OrderIntent.derive_id("s", "acct-1", ["AAPL"], T0, 1)
    )
    plan = bracket()
    ids = [leg.client_order_id(plan.intent_id) for leg in plan.legs]
    assert ids == [f"{plan.intent_id}:entry", f"{plan.intent_id}:tp", f"{plan.intent_id}:sl"]
    assert all(len(i) <= MAX_CLIENT_ORDER_ID for i in ids)
    assert not set(plan.intent_id) & set("/\\#? ")


def test_an_intent_id_that_would_overflow_the_client_order_id_is_refused() -> None:
    with pytest.raises(ValidationError) as error:
        OrderIntent(
            intent_id="x" * (MAX_CLIENT_ORDER_ID - len(":entry") + 1),
            account="a",
            source="s",
            kind=PlanKind.SINGLE,
            legs=(OrderLeg("entry", "AAPL", Side.BUY, D("1")),),
            ts_created=T0,
        )
    assert error.value.field == "intent_id"


@pytest.mark.parametrize("char", list("/\\#?: "))
def test_an_intent_id_holding_a_character_ids_cannot_is_refused(char: str) -> None:
    def intent(intent_id: str) -> OrderIntent:
        return OrderIntent(
            intent_id=intent_id,
            account="a",
            source="s",
            kind=PlanKind.SINGLE,
            legs=(OrderLeg("entry", "AAPL", Side.BUY, D("1")),),
            ts_created=T0,
        )

    assert intent("int-ab_c.d-1").intent_id == "int-ab_c.d-1"
    with pytest.raises(ValidationError) as error:
        intent(f"int-ab{char}cd")
    assert error.value.field == "intent_id"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"order_type": OrderType.LIMIT}, "limit_price"),
        ({"order_type": OrderType.STOP}, "stop_price"),
        ({"order_type": OrderType.STOP_LIMIT, "limit_price": D("1")}, "stop_price"),
        ({"order_type": OrderType.MARKET, "limit_price": D("1")}, "limit_price"),
        ({"order_type": OrderType.TRAILING_STOP}, "trail_percent"),
        (
            {"order_type": OrderType.TRAILING_STOP, "trail_percent": D("1"), "trail_price": D("1")},
            "trail_percent",
        ),
        ({"order_type": OrderType.LIMIT, "limit_price": D("-1")}, "limit_price"),
        ({"quantity": D("0")}, "quantity"),
        ({"name": "Entry!"}, "name"),
    ],
)
def test_leg_prices_must_match_the_order_type(kwargs: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {
        "name": "entry",
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": D("1"),
    }
    arguments.update(kwargs)
    with pytest.raises(ValidationError) as error:
        OrderLeg(**arguments)
    assert error.value.field == field


def test_bracket_price_ordering_for_long_and_short() -> None:
    bracket(Side.BUY, tp="110", sl="95")
    bracket(Side.SELL, tp="90", sl="105")
    with pytest.raises(ValidationError):
        bracket(Side.BUY, tp="95", sl="110")
    with pytest.raises(ValidationError):
        bracket(Side.SELL, tp="110", sl="95")


def test_plans_need_their_legs() -> None:
    with pytest.raises(ValidationError) as error:
        OrderIntent(
            intent_id(), "a", "s", PlanKind.PAIR, (OrderLeg("a", "KO", Side.BUY, D("1")),), T0
        )
    assert error.value.field == "legs"
    with pytest.raises(ValidationError):
        OrderIntent(
            intent_id(),
            "a",
            "s",
            PlanKind.PAIR,
            (OrderLeg("a", "KO", Side.BUY, D("1")), OrderLeg("b", "KO", Side.SELL, D("1"))),
            T0,
        )


def test_reserve_request_uses_entry_legs_at_their_worst_price() -> None:
    plan = OrderIntent(
        intent_id(),
        "acct-1",
        "pairs",
        PlanKind.PAIR,
        (OrderLeg("a", "KO", Side.BUY, D("10")), OrderLeg("b", "PEP", Side.SELL, D("5"))),
        T0,
        reference_prices={"KO": D("60"), "PEP": D("170")},
        unwind_after_s=30,
    )
    request = plan.reserve_request()
    assert [(leg.symbol, leg.price) for leg in request.legs] == [("KO", D("60")), ("PEP", D("170"))]
    assert [leg.symbol for leg in bracket().reserve_request().legs] == ["AAPL"]


def test_intent_round_trips_through_json() -> None:
    plan = bracket()
    assert OrderIntent.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def order() -> Order:
    plan = bracket()
    return Order.for_leg(plan, plan.leg("entry"))


def fill(execution: str, qty: str, price: str) -> Fill:
    return Fill(
        execution, "acct-1", "AAPL", Side.BUY, D(qty), D(price), T0, order().client_order_id
    )


def test_every_pair_outside_the_table_raises() -> None:
    for current, target in itertools.product(OrderStatus, OrderStatus):
        start = Order("c", "i", "entry", "AAPL", Side.BUY, D("1"), status=current)
        if target is OrderStatus.FILLED:
            start = Order(
                "c", "i", "entry", "AAPL", Side.BUY, D("1"), status=current, filled_qty=D("1")
            )
        allowed = target in TRANSITIONS.get(current, frozenset()) or (
            target is current and target is not OrderStatus.PARTIALLY_FILLED
        )
        if allowed:
            assert start.transition(target, ts=T0).status is target
        else:
            with pytest.raises(IllegalTransition):
                start.transition(target, ts=T0)


def test_terminal_statuses_accept_nothing_else() -> None:
    assert {
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.REJECTED,
        OrderStatus.EXPIRED,
        OrderStatus.REPLACED,
    } <= TERMINAL
    for status in TERMINAL:
        for target in set(OrderStatus) - {status}:
            with pytest.raises(IllegalTransition):
                Order("c", "i", "entry", "AAPL", Side.BUY, D("1"), status=status).transition(
                    target, ts=T0
                )


def test_fills_move_quantity_and_average_price_once_each() -> None:
    current = order().transition(OrderStatus.NEW, ts=T0)
    current = current.apply_fill(fill("x1", "4", "100"))
    assert current.status is OrderStatus.PARTIALLY_FILLED
    assert current.apply_fill(fill("x1", "4", "100")) == current
    current = current.apply_fill(fill("x2", "6", "101"))
    assert current.status is OrderStatus.FILLED
    assert current.filled_qty == D("10")
    assert current.avg_fill_price == D("100.6")
    with pytest.raises(ValidationError):
        current.apply_fill(fill("x3", "1", "100"))


def test_filled_requires_the_whole_quantity() -> None:
    with pytest.raises(IllegalTransition):
        order().transition(OrderStatus.NEW, ts=T0).transition(OrderStatus.FILLED, ts=T0)


def test_order_round_trips_through_json() -> None:
    current = order().transition(OrderStatus.NEW, ts=T0).apply_fill(fill("x1", "4", "100"))
    assert Order.from_dict(json.loads(json.dumps(current.to_dict()))) == current


@given(st.lists(st.tuples(st.sampled_from(list(OrderStatus)), st.integers(0, 3)), max_size=30))
def test_any_sequence_of_attempts_stays_on_the_table(
    attempts: list[tuple[OrderStatus, int]],
) -> None:
    current = order()
    executions = itertools.count()
    for status, qty in attempts:
        previous = current
        try:
            if qty and status is OrderStatus.PARTIALLY_FILLED:
                current = current.apply_fill(fill(f"x{next(executions)}", str(qty), "100"))
            else:
                current = current.transition(status, ts=T0)
        except (IllegalTransition, ValidationError):
            assert current == previous
            continue
        assert current.filled_qty >= previous.filled_qty
        assert current.status is previous.status or current.status in TRANSITIONS[previous.status]


def test_an_execution_reported_after_a_cancel_is_still_booked() -> None:
    cancelled = order().transition(OrderStatus.NEW, ts=T0).transition(OrderStatus.CANCELED, ts=T0)
    part = cancelled.apply_fill(fill("x1", "4", "10"))
    assert (part.status, part.filled_qty, part.avg_fill_price) == (
        OrderStatus.CANCELED,
        D(4),
        D(10),
    )
    assert part.version == cancelled.version + 1
    whole = part.apply_fill(fill("x2", str(order().quantity - 4), "12"))
    assert whole.status is OrderStatus.FILLED and whole.filled_qty == order().quantity
    assert whole.apply_fill(fill("x2", "1", "12")) is whole  # the same execution, once
