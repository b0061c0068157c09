"""Two batches in one process at once (two partitions): the second is not ingested before
the first has started its trades and saved its state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from activities.signals import RawEvent
from adapters import bootstrap
from adapters.bootstrap import Services, Settings
from adapters.simulated_broker import SimulatedBroker
from adapters.sqlite_store import SqliteStore
from triggers import ticks

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


class SlowClient:
    """Stands in for the durable client: every start takes a while (a slow host)."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal

    async def get_status(self, instance_id: str) -> Any:
        return None

    async def start_new(self, name: str, instance_id: str, payload: Any) -> str:
        self.journal.append(f"start {instance_id}")
        await asyncio.sleep(0.05)
        return instance_id

    async def raise_event(self, instance_id: str, name: str, data: Any) -> None:
        return None


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    strategy = {"kind": "sma_cross", "symbol": "AAPL", "fast": 1, "slow": 2, "quantity": 1}
    other = {"kind": "sma_cross", "symbol": "MSFT", "fast": 1, "slow": 2, "quantity": 1}
    settings = Settings(books_path=tmp_path / "books.sqlite", strategies=(strategy, other))
    made = Services(settings, SqliteStore(settings.books_path), SimulatedBroker())
    bootstrap.use_services(made)
    yield made
    bootstrap.reset()


def batch(partition: str, symbol: str) -> list[RawEvent]:
    prices = [100.0, 99.0, 101.0]  # the last one crosses: one signal
    return [
        RawEvent(
            partition,
            seq,
            json.dumps(
                {
                    "symbol": symbol,
                    "price": price,
                    "size": 1,
                    "ts": (T0 + timedelta(seconds=seq)).isoformat(),
                }
            ).encode(),
        )
        for seq, price in enumerate(prices)
    ]


def test_concurrent_batches_run_one_after_the_other(svc: Services) -> None:
    journal: list[str] = []
    desk = ticks.processor(svc)
    for name in ("ingest", "commit"):
        original = getattr(desk, name)

        def spy(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            journal.append(_name)
            return _original(*args, **kwargs)

        setattr(desk, name, spy)
    client: Any = SlowClient(journal)

    async def both() -> None:
        await asyncio.gather(
            ticks.handle_batch(batch("0", "AAPL"), client),
            ticks.handle_batch(batch("1", "MSFT"), client),
        )

    asyncio.run(both())
    kinds = [entry.split(" ")[0] for entry in journal]
    assert kinds == ["ingest", "start", "commit", "ingest", "start", "commit"]
