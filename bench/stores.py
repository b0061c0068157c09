"""Per-operation latency of the books: the Cosmos DB store against the local Cosmos
protocol server, beside the SQLite store measured in the same run. The local server is not
Cosmos DB: it opens a TLS connection per call, and it has no network between it and the
app, so its figures say what the adapter costs here, not what Azure would.

    python -m bench.stores [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from adapters.cosmos_store import CosmosStore
from adapters.sqlite_store import SqliteStore
from devhost.servers import cosmos_client, cosmos_server
from domain import audit
from domain.audit import AuditKind
from domain.fills import Fill
from domain.model import Side
from domain.orders import Order
from domain.ports import Books

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def operations(store: Books) -> dict[str, Callable[[int], object]]:
    def fill(n: int) -> Fill:
        return Fill(
            f"e{n}", "acct", "AAPL", Side.BUY, Decimal(1), Decimal(100),
            T0 + timedelta(seconds=n), f"int-{n}:entry",
        )  # fmt: skip

    return {
        "audit append": lambda n: audit.append(
            store, partition="acct", ts_recorded=T0, kind=AuditKind.SIGNAL, event_id=f"s{n}"
        ),
        "fill + position": lambda n: store.apply_fill_to_position(fill(n)),
        "order create": lambda n: store.create_order(
            Order(f"int-{n}:entry", f"int-{n}", "entry", "AAPL", Side.BUY, Decimal(1))
        ),
        "order read": lambda n: store.get_order(f"int-{n}:entry"),
        "claim": lambda n: store.claim(f"k{n}", {"n": n}, ts=T0),
        "state save": lambda n: store.save(f"s{n}", {"n": n}, expected_version=None),
        "positions query": lambda n: store.positions("acct"),
    }


def measure(store: Books, repeats: int) -> dict[str, float]:
    medians = {}
    for name, operation in operations(store).items():
        samples = []
        for n in range(repeats):
            started = time.perf_counter()
            operation(n)
            samples.append((time.perf_counter() - started) * 1000)
        medians[name] = statistics.median(samples)
    return medians


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        sqlite = SqliteStore(Path(folder) / "books.sqlite")
        baseline = measure(sqlite, args.repeats)
        sqlite.close()
    with cosmos_server() as endpoint:
        cosmos = CosmosStore(cosmos_client(endpoint), f"bench-{uuid.uuid4().hex[:8]}")
        figures = measure(cosmos, args.repeats)
        cosmos.close()
    print(f"books, median ms per operation over {args.repeats} calls")
    print(f"  {'operation':<18} {'SQLite':>9} {'Cosmos (local server)':>24}")
    for name, value in figures.items():
        print(f"  {name:<18} {baseline[name]:>9.3f} {value:>24.2f}")


if __name__ == "__main__":
    main()
