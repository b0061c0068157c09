"""Trade updates from the broker's stream wake the trade orchestration at once, instead of
at its next poll; bad or foreign updates are dead-lettered or ignored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.functions.desk import Desk, make_desk


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    # Polls ten minutes apart: only an update can explain a fill seen within seconds.
    made = make_desk(tmp_path, poll_interval_s=600, entry_timeout_s=1200)
    made.prices("AAPL", [100.0])
    made.settle()
    yield made
    made.close()


def update(cid: str, event: str = "fill") -> bytes:
    return json.dumps(
        {"stream": "trade_updates", "data": {"event": event, "order": {"client_order_id": cid}}}
    ).encode()


def test_an_update_wakes_the_orchestration_that_owns_the_order(desk: Desk) -> None:
    body = {"symbol": "AAPL", "side": "buy", "quantity": "5", "order_type": "limit",
            "limit_price": "99"}  # fmt: skip
    placed = desk.http("POST", "orders", json=body).json()
    desk.settle(1)
    simulator = desk.services.simulator
    assert simulator is not None
    # The broker fills the order; no tick tells the desk.
    simulator.on_trade("AAPL", Decimal("98.5"), datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    desk.settle(1)
    intent_id = placed["intent_id"]
    assert desk.status(intent_id).custom_status["stage"] == "entry"
    desk.host.event_log.publish(
        "trade-updates", [(intent_id, update(f"{intent_id}:entry"))], ts_enqueued=datetime.now(UTC)
    )
    desk.settle(1)
    final = desk.status(intent_id)
    assert final.output is not None and final.output["outcome"] == "completed"


def test_bad_and_foreign_updates_cost_nothing(desk: Desk) -> None:
    desk.host.event_log.publish(
        "trade-updates",
        [
            (None, b"{not json"),
            (None, json.dumps({"data": {"event": "fill"}}).encode()),
            (None, update("placed-by-hand")),
            (None, update("int-nobody:entry")),
        ],
        ts_enqueued=datetime.now(UTC),
    )
    desk.settle()
    assert desk.host.event_log.failed_batches() == []
    dead = [r for r in desk.store.records("ingest") if r.event_id.startswith("trade-updates:")]
    assert sorted(r.payload["field"] for r in dead) == ["body", "client_order_id", "order"]
