"""Where local Event Hub events come from: a replay of a file, or a synthetic market.

Each source is deterministic and addressed by position, so after a restart it continues
from the position the event log recorded instead of publishing anything twice.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from devhost.eventhub import EventLog


class EventSource(Protocol):
    @property
    def name(self) -> str:
        """Identifies the source's position in the event log."""
        ...

    def events(self, start: int) -> Iterator[tuple[str | None, bytes]]:
        """(partition key, body) pairs from position ``start`` on."""
        ...


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode("utf-8")


@dataclass
class SyntheticMarket:
    """Trades following a seeded geometric Brownian motion per symbol, round-robin over the
    symbols, one every ``step`` of market time from ``ts_start``."""

    symbols: Sequence[str]
    seed: int = 1
    ts_start: datetime = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    step: timedelta = timedelta(milliseconds=100)
    start_price: float = 100.0
    volatility: float = 0.0008
    limit: int | None = None

    @property
    def name(self) -> str:
        return f"synthetic:{','.join(self.symbols)}:{self.seed}"

    def events(self, start: int) -> Iterator[tuple[str | None, bytes]]:
        return islice(self._all(), start, self.limit)

    def _all(self) -> Iterator[tuple[str | None, bytes]]:
        rng = random.Random(self.seed)
        prices = {s: self.start_price * (1.0 + 0.25 * i) for i, s in enumerate(self.symbols)}
        index = 0
        while True:
            symbol = self.symbols[index % len(self.symbols)]
            prices[symbol] *= math.exp(rng.gauss(0.0, self.volatility))
            ts = self.ts_start + self.step * index
            record = {
                "type": "trade",
                "symbol": symbol,
                "price": round(prices[symbol], 2),
                "size": rng.randint(1, 300),
                "ts": ts.isoformat().replace("+00:00", "Z"),
                "id": f"syn-{self.seed}-{index}",
            }
            yield symbol, _encode(record)
            index += 1


@dataclass
class FileReplay:
    """Events from a JSON-lines file (one object per line) or a CSV file with a header row;
    the partition key is the ``partition_key_field`` of each record."""

    path: Path
    partition_key_field: str = "symbol"

    @property
    def name(self) -> str:
        return f"file:{self.path.resolve()}"

    def events(self, start: int) -> Iterator[tuple[str | None, bytes]]:
        return islice(self._all(), start, None)

    def _all(self) -> Iterator[tuple[str | None, bytes]]:
        with self.path.open(encoding="utf-8", newline="") as handle:
            if self.path.suffix.lower() == ".csv":
                for row in csv.DictReader(handle):
                    yield row.get(self.partition_key_field), _encode(dict(row))
                return
            for line in handle:
                text = line.strip()
                if not text:
                    continue
                key: str | None = None
                try:
                    record = json.loads(text)
                    if isinstance(record, dict) and isinstance(
                        record.get(self.partition_key_field), str
                    ):
                        key = record[self.partition_key_field]
                except json.JSONDecodeError:
                    # A malformed line still travels: rejecting input is the app's job.
                    pass
                yield key, text.encode("utf-8")


def pump(
    source: EventSource, event_log: EventLog, hub: str, *, max_events: int, now: datetime
) -> int:
    """Publish up to ``max_events`` more events of ``source``; returns how many."""
    start = event_log.source_position(source.name)
    items = list(islice(source.events(start), max_events))
    if items:
        event_log.publish(
            hub, items, ts_enqueued=now, source=source.name, source_position=start + len(items)
        )
    return len(items)
