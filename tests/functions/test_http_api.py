"""The HTTP API over a real socket: manual orders with idempotency keys, cancellation,
approvals, the kill switch, positions and risk, and bad requests that must be 400s."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.simulated_broker import SimulatorConfig
from tests.functions.desk import Desk, make_desk

SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}
MARKET = {"symbol": "AAPL", "side": "buy", "quantity": "5"}


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    made = make_desk(tmp_path, strategies=[SMA])
    made.prices("AAPL", [100.0])
    made.settle()
    yield made
    made.close()


def place(desk: Desk, body: Any, key: str | None = None) -> dict[str, Any]:
    headers = {} if key is None else {"Idempotency-Key": key}
    response = desk.http("POST", "orders", json=body, headers=headers)
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


def test_a_manual_market_order_runs_to_a_fill(desk: Desk) -> None:
    placed = place(desk, MARKET)
    assert placed["links"]["statusQueryGetUri"]
    desk.settle(2)
    shown = desk.http("GET", f"orders/{placed['intent_id']}").json()
    assert shown["runtime_status"] == "Completed"
    assert shown["output"]["outcome"] == "completed"
    assert [o["status"] for o in shown["orders"]] == ["filled"]
    positions = desk.http("GET", "positions").json()["positions"]
    assert positions == [
        {
            "symbol": "AAPL",
            "quantity": "5",
            "avg_price": "100",
            "realized_pnl": "0",
            "fees": "0",
        }
    ]
    assert desk.chain_ok()


def test_a_retried_post_with_the_same_key_returns_the_same_order(desk: Desk) -> None:
    first = place(desk, MARKET, key="retry-1")
    second = place(desk, MARKET, key="retry-1")
    assert first["intent_id"] == second["intent_id"]
    assert first["created"] and not second["created"]
    desk.settle(2)
    assert desk.services.simulator is not None
    assert desk.services.simulator.submissions == 1
    reused = desk.http(
        "POST", "orders", json={**MARKET, "quantity": "6"}, headers={"Idempotency-Key": "retry-1"}
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["field"] == "Idempotency-Key"


def test_a_manual_bracket_places_its_exits(desk: Desk) -> None:
    body = {**MARKET, "take_profit": {"limit_price": "103"}, "stop_loss": {"stop_price": "98"}}
    placed = place(desk, body)
    desk.settle(2)
    desk.prices("AAPL", [103.5])
    desk.settle(2)
    orders = {
        o["leg"]: o["status"]
        for o in desk.http("GET", f"orders/{placed['intent_id']}").json()["orders"]
    }
    assert orders == {"entry": "filled", "tp": "filled", "sl": "canceled"}


def test_delete_cancels_a_resting_order(desk: Desk) -> None:
    placed = place(desk, {**MARKET, "order_type": "limit", "limit_price": "90"})
    desk.settle(2)
    response = desk.http("DELETE", f"orders/{placed['intent_id']}")
    assert response.status_code == 202
    desk.settle(2)
    shown = desk.http("GET", f"orders/{placed['intent_id']}").json()
    assert shown["output"]["outcome"] == "canceled"
    assert [o["status"] for o in shown["orders"]] == ["canceled"]
    again = desk.http("DELETE", f"orders/{placed['intent_id']}")
    assert again.status_code == 409


def test_unknown_orders_are_404(desk: Desk) -> None:
    assert desk.http("GET", "orders/int-nope").status_code == 404
    assert desk.http("DELETE", "orders/int-nope").status_code == 404


@pytest.fixture
def approving(tmp_path: Path) -> Iterator[Desk]:
    made = make_desk(tmp_path, strategies=[SMA], manual_approval=True, approval_timeout_s=120)
    made.prices("AAPL", [100.0])
    made.settle()
    yield made
    made.close()


@pytest.mark.parametrize(
    ("decision", "outcome", "orders"),
    [(True, "completed", ["filled"]), (False, "rejected", [])],
    ids=["approve", "reject"],
)
def test_an_order_waiting_for_approval_follows_the_decision(
    approving: Desk, decision: bool, outcome: str, orders: list[str]
) -> None:
    placed = place(approving, MARKET)
    assert placed["requires_approval"]
    approving.settle(1)
    intent_id = placed["intent_id"]
    assert approving.http("GET", f"orders/{intent_id}").json()["stage"] == "awaiting_approval"
    function_key = approving.http("POST", f"orders/{intent_id}/approval", json={"approve": True})
    assert function_key.status_code == 401  # approvals need the admin key
    response = approving.http(
        "POST",
        f"orders/{intent_id}/approval",
        admin=True,
        json={"approve": decision, "by": "risk-desk", "reason": "checked"},
    )
    assert response.status_code == 202
    approving.settle(2)
    shown = approving.http("GET", f"orders/{intent_id}").json()
    assert shown["output"]["outcome"] == outcome
    assert [o["status"] for o in shown["orders"]] == orders
    approvals = [r for r in approving.store.records("paper") if r.event_id.endswith(":approval")]
    assert approvals[0].payload["by"] == "risk-desk"


def test_an_approval_that_never_comes_rejects_at_the_timeout(approving: Desk) -> None:
    placed = place(approving, MARKET)
    approving.settle(121)
    shown = approving.http("GET", f"orders/{placed['intent_id']}").json()
    assert shown["output"]["outcome"] == "rejected"
    assert shown["output"]["approval"]["by"] == "timeout"
    assert approving.services.simulator is not None
    assert approving.services.simulator.submissions == 0


def test_cancelling_an_order_waiting_for_approval_withdraws_it(approving: Desk) -> None:
    placed = place(approving, MARKET)
    approving.settle(1)
    assert approving.http("DELETE", f"orders/{placed['intent_id']}").status_code == 202
    approving.settle(1)
    shown = approving.http("GET", f"orders/{placed['intent_id']}").json()
    assert shown["output"]["outcome"] == "canceled"
    assert shown["orders"] == []


def test_large_signals_wait_for_approval(tmp_path: Path) -> None:
    desk = make_desk(tmp_path, strategies=[SMA], approval_notional=Decimal(500))
    try:
        desk.prices("AAPL", [100.0, 100.0, 100.0, 101.0])
        desk.settle(2)
        [trade] = desk.trades()
        assert trade.custom_status["stage"] == "awaiting_approval"
    finally:
        desk.close()


def test_the_kill_switch_flattens_and_nothing_is_submitted_after_it(desk: Desk) -> None:
    place(desk, MARKET)
    resting = place(desk, {**MARKET, "order_type": "limit", "limit_price": "90"})
    desk.settle(2)
    assert (
        desk.http("POST", "killswitch", json={"action": "halt", "reason": "x"}).status_code == 401
    )
    response = desk.http(
        "POST", "killswitch", admin=True, json={"action": "halt", "reason": "drill"}
    )
    assert response.status_code == 202
    desk.settle(5)
    flatten = desk.status(response.json()["flatten_instance_id"]).output
    assert flatten["closed"] is True
    assert all(p.quantity == 0 for p in desk.store.positions("paper"))
    shown = desk.http("GET", f"orders/{resting['intent_id']}").json()
    assert [o["status"] for o in shown["orders"]] == ["canceled"]
    assert shown["output"]["outcome"] == "canceled"  # by the flatten, not at a deadline
    simulator = desk.services.simulator
    assert simulator is not None
    sent = simulator.submissions
    late = place(desk, MARKET)
    desk.prices("AAPL", [100.0, 100.0, 101.0, 102.0])  # a strategy signal too
    desk.settle(5)
    assert simulator.submissions == sent
    assert desk.http("GET", f"orders/{late['intent_id']}").json()["output"]["outcome"] == "denied"
    risk = desk.http("GET", "risk/paper").json()
    assert risk["halted"] is True
    resumed = desk.http("POST", "killswitch", admin=True, json={"action": "resume", "reason": "ok"})
    assert resumed.status_code == 200
    desk.settle()
    after = place(desk, MARKET)
    desk.settle(2)
    assert (
        desk.http("GET", f"orders/{after['intent_id']}").json()["output"]["outcome"] == "completed"
    )
    assert desk.chain_ok()


def test_the_kill_switch_leaves_no_exit_of_a_resting_bracket_behind(desk: Desk) -> None:
    bracket = {
        **MARKET,
        "order_type": "limit",
        "limit_price": "90",
        "take_profit": {"limit_price": "95"},
        "stop_loss": {"stop_price": "85"},
    }
    resting = place(desk, bracket)
    desk.settle(2)
    shown = desk.http("GET", f"orders/{resting['intent_id']}").json()
    assert {o["leg"]: o["status"] for o in shown["orders"]} == {
        "entry": "new", "tp": "held", "sl": "held"}  # fmt: skip
    response = desk.http(
        "POST", "killswitch", admin=True, json={"action": "halt", "reason": "drill"}
    )
    assert response.status_code == 202
    desk.settle(5)
    shown = desk.http("GET", f"orders/{resting['intent_id']}").json()
    assert {o["leg"]: o["status"] for o in shown["orders"]} == {
        "entry": "canceled", "tp": "canceled", "sl": "canceled"}  # fmt: skip
    assert shown["output"]["outcome"] == "canceled"
    simulator = desk.services.simulator
    assert simulator is not None and simulator.open_orders() == []
    assert desk.chain_ok()


def test_a_daily_loss_breach_halts_and_flattens_by_itself(desk: Desk) -> None:
    limits = desk.http("PUT", "risk/paper/limits", admin=True, json={"daily_loss_limit": "40"})
    assert limits.status_code == 202
    place(desk, {**MARKET, "quantity": "10"})
    desk.settle(2)
    desk.prices("AAPL", [95.0])
    place(desk, {**MARKET, "side": "sell", "quantity": "10"})  # realises -50
    desk.settle(5)
    risk = desk.http("GET", "risk/paper").json()
    assert risk["halted"] is True
    flattens = [s for s in desk.engine.query() if s.name == "flatten"]
    assert len(flattens) == 1
    assert flattens[0].instance_id.endswith("-loss")
    alerts = [r for r in desk.store.records("paper") if r.kind.value == "alert"]
    assert alerts
    after = place(desk, MARKET)
    desk.settle(2)
    reasons = desk.http("GET", f"orders/{after['intent_id']}").json()["output"]["reasons"]
    assert {r["code"] for r in reasons} == {"halted", "daily_loss"}


def test_a_limit_far_from_the_last_trade_is_denied_by_the_price_band(desk: Desk) -> None:
    desk.http("PUT", "risk/paper/limits", admin=True, json={"price_band_pct": "5"})
    far = place(desk, {**MARKET, "order_type": "limit", "limit_price": "90"})
    near = place(desk, {**MARKET, "order_type": "limit", "limit_price": "99"})
    desk.settle(2)
    far_output = desk.http("GET", f"orders/{far['intent_id']}").json()["output"]
    assert [r["code"] for r in far_output["reasons"]] == ["price_band"]
    assert desk.http("GET", f"orders/{near['intent_id']}").json()["stage"] == "entry"


BAD_BODIES: list[tuple[Any, str]] = [
    ({}, "symbol"),
    ({**MARKET, "side": "hold"}, "side"),
    ({**MARKET, "quantity": "-1"}, "quantity"),
    ({**MARKET, "quantity": "ten"}, "quantity"),
    ({**MARKET, "order_type": "limit"}, "limit_price"),
    ({**MARKET, "symbol": "not a symbol"}, "symbol"),
    ({**MARKET, "stop_loss": {"stop_price": "101"}, "reference_price": "100"}, "sl"),
    ({**MARKET, "stop_loss": {"limit_price": "99"}}, "stop_loss.stop_price"),
    ({**MARKET, "take_profit": {"limit_price": "99"}, "stop_loss": {"stop_price": "98"}}, "tp"),
    ({**MARKET, "colour": "red"}, "colour"),
    ({**MARKET, "account": "someone-else"}, "account"),
    ({"symbol": "ZZZZ", "side": "buy", "quantity": 1}, "reference_price"),
    ([1, 2], "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_order_bodies_are_400_naming_the_field(desk: Desk, body: Any, field: str) -> None:
    response = desk.http("POST", "orders", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_a_body_that_is_not_json_is_400(desk: Desk) -> None:
    response = desk.http(
        "POST", "orders", data=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": {"field": "body", "reason": "is not valid JSON"}}


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
ORDERISH = st.fixed_dictionaries(
    {},
    optional={
        "symbol": st.sampled_from(["AAPL", "aapl", "", "A" * 40]) | JSONISH,
        "side": st.sampled_from(["buy", "sell", "BUY"]) | JSONISH,
        "quantity": st.sampled_from(["1", "0", "-3", "1e9", "NaN"]) | JSONISH,
        "order_type": st.sampled_from(["market", "limit", "stop", "trailing_stop"]) | JSONISH,
        "limit_price": JSONISH,
        "stop_price": JSONISH,
        "take_profit": JSONISH,
        "stop_loss": JSONISH,
    },
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=ORDERISH | JSONISH)
def test_generated_bodies_never_cause_a_500(desk: Desk, body: Any) -> None:
    response = desk.http("POST", "orders", json=body)
    assert response.status_code in (202, 400), response.text
    if response.status_code == 400:
        assert set(response.json()["error"]) == {"field", "reason"}


def test_health_reports_its_dependencies_without_a_key(desk: Desk) -> None:
    import requests

    response = requests.get(desk.url("health"), timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["books"] == "ok"
    assert body["checks"]["ingest"]["ticks"] >= 1


def test_simulated_rejections_are_reported_not_retried(tmp_path: Path) -> None:
    desk = make_desk(tmp_path, simulator=SimulatorConfig(reject_symbols=frozenset({"AAPL"})))
    try:
        desk.prices("AAPL", [100.0])
        desk.settle()
        placed = place(desk, MARKET)
        desk.settle(2)
        output = desk.http("GET", f"orders/{placed['intent_id']}").json()["output"]
        assert output["outcome"] == "rejected"
        assert output["reasons"] == ["AAPL is not tradable"]
    finally:
        desk.close()


def test_a_cancel_cannot_strip_a_filled_bracket_of_its_exits(desk: Desk) -> None:
    body = {**MARKET, "take_profit": {"limit_price": "103"}, "stop_loss": {"stop_price": "98"}}
    placed = place(desk, body)
    desk.settle(2)
    refused = desk.http("DELETE", f"orders/{placed['intent_id']}")
    assert refused.status_code == 409
    assert "exits stay" in refused.json()["error"]["reason"]
    desk.settle(2)
    orders = desk.http("GET", f"orders/{placed['intent_id']}").json()["orders"]
    assert {o["leg"]: o["status"] for o in orders} == {"entry": "filled", "tp": "new", "sl": "new"}


def test_no_exits_are_placed_for_a_halted_account(desk: Desk) -> None:
    import function_app
    from activities import service
    from devhost.app_index import index_app
    from domain.model import OrderType, Side
    from domain.orders import OrderLeg

    service.set_halt(desk.services, True, "drill", ts=datetime.now(UTC))
    exits = index_app(function_app.app).functions["submit_exits"]
    tp = OrderLeg("tp", "AAPL", Side.SELL, Decimal(5), OrderType.LIMIT, limit_price=Decimal(103))
    sl = OrderLeg("sl", "AAPL", Side.SELL, Decimal(5), OrderType.STOP, stop_price=Decimal(98))
    result = exits.call(
        payload={
            "intent_id": "int-halted",
            "exits": [tp.to_dict(), sl.to_dict()],
            "ts": datetime.now(UTC).isoformat(),
        }
    )
    assert [o["status"] for o in result["orders"]] == ["rejected", "rejected"]
    # The shape trades scheduled before one-exit plans used is still taken.
    older = exits.call(
        payload={
            "intent_id": "int-halted",
            "take_profit": tp.to_dict(),
            "stop_loss": sl.to_dict(),
            "ts": datetime.now(UTC).isoformat(),
        }
    )
    assert [o["status"] for o in older["orders"]] == ["rejected", "rejected"]
    # Nor a bracket: its entry is refused, and its exits are never sent.
    bracket = index_app(function_app.app).functions["submit_bracket"]
    entry = OrderLeg("entry", "AAPL", Side.BUY, Decimal(5))
    result = bracket.call(
        payload={
            "entry": {
                "intent_id": "int-halted-2",
                "leg": entry.to_dict(),
                "ts": "2026-03-02T15:00:00Z",
            },
            "exits": [tp.to_dict(), sl.to_dict()],
        }
    )
    assert result["native"] is False
    assert [o["status"] for o in result["orders"]] == ["rejected"]
    assert desk.services.simulator is not None
    assert desk.services.simulator.open_orders() == []
    assert desk.services.simulator.submissions == 0


def test_the_order_history_pages_with_continuation_tokens(desk: Desk) -> None:
    for n in range(3):
        place(desk, {**MARKET, "quantity": str(n + 1)})
    desk.settle(2)
    window = {"from": "2026-03-01T00:00:00Z", "to": "2026-03-03T00:00:00Z"}  # desk time
    first = desk.http("GET", "orders", params={**window, "limit": "2"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert len(body["orders"]) == 2 and body["continuation"]
    more = {**window, "limit": "2", "continuation": body["continuation"]}
    rest = desk.http("GET", "orders", params=more)
    # One creation time (the desk's clock stood still), so the order is by client order id.
    every = body["orders"] + rest.json()["orders"]
    assert sorted(o["quantity"] for o in every) == ["1", "2", "3"]
    assert [o["client_order_id"] for o in every] == sorted(o["client_order_id"] for o in every)
    assert rest.json()["continuation"] is None
    bad = desk.http("GET", "orders", params={"limit": "0"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "limit"
    forged = desk.http("GET", "orders", params={"continuation": "%%%"})
    assert forged.status_code == 400 and forged.json()["error"]["field"] == "continuation"
