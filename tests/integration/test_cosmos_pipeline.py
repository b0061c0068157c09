"""The pipeline end to end with Cosmos DB as the books: a signal from the Event Hub, a
manual bracket over HTTP, and the kill switch, against the local Cosmos protocol server."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.cosmos_store import CosmosStore
from domain import audit
from tests.functions.desk import Desk, make_desk
from tests.integration.conftest import cosmos_client

SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}


@pytest.fixture
def desk(tmp_path: Path, cosmos_endpoint: str, cosmos_database: str) -> Iterator[Desk]:
    books = CosmosStore(cosmos_client(cosmos_endpoint), cosmos_database)
    made = make_desk(tmp_path, strategies=[SMA], books=books)
    yield made
    made.close()


def test_signals_manual_orders_and_the_kill_switch_on_cosmos_books(desk: Desk) -> None:
    desk.prices("AAPL", [100.0, 100.0, 100.0, 101.0])
    desk.settle(5)
    [trade] = desk.trades()
    assert trade.output["outcome"] == "completed"
    body = {
        "symbol": "AAPL",
        "side": "buy",
        "quantity": "5",
        "take_profit": {"limit_price": "103"},
        "stop_loss": {"stop_price": "98"},
    }
    placed = desk.http("POST", "orders", json=body, headers={"Idempotency-Key": "cosmos-1"})
    again = desk.http("POST", "orders", json=body, headers={"Idempotency-Key": "cosmos-1"})
    assert placed.json()["intent_id"] == again.json()["intent_id"]
    desk.settle(2)
    desk.prices("AAPL", [103.5])
    desk.settle(2)
    legs = {o.leg: o.status.value for o in desk.store.orders_for_intent(placed.json()["intent_id"])}
    assert legs == {"entry": "filled", "tp": "filled", "sl": "canceled"}
    [position] = desk.store.positions("paper")
    assert position.quantity == Decimal(10)
    halted = desk.http("POST", "killswitch", admin=True, json={"action": "halt", "reason": "x"})
    assert halted.status_code == 202
    desk.settle(5)
    assert all(p.quantity == 0 for p in desk.store.positions("paper"))
    assert audit.verify(desk.store.records("paper")) is None
