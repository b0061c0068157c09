"""Ticks in through the Event Hub trigger, orders out through the trade orchestration, on
the simulated broker: each plan type end to end, under devhost with a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from devhost.durable import RuntimeStatus
from tests.functions.desk import Desk, make_desk

SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}
RISING = [100.0, 100.0, 100.0, 101.0, 102.0]


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    made = make_desk(tmp_path, strategies=[SMA])
    yield made
    made.close()


def test_a_crossover_signal_becomes_a_filled_market_order(desk: Desk) -> None:
    desk.prices("AAPL", RISING)
    desk.settle(5)
    trades = desk.trades()
    assert len(trades) == 1
    final = trades[0]
    assert final.runtime_status is RuntimeStatus.COMPLETED, final.output
    assert final.output["outcome"] == "completed"
    [order] = desk.store.orders_for_intent(final.instance_id)
    assert order.status.value == "filled"
    assert order.filled_qty == Decimal(10)
    [position] = desk.store.positions("paper")
    assert position.quantity == Decimal(10)
    assert desk.chain_ok()
