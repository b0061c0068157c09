"""Shared helpers for the benchmark scripts: seeded data and a median-of-runs timer."""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


def synthetic_trades(
    n: int, symbols: list[str], *, seed: int = 7, start: datetime | None = None
) -> list[dict[str, Any]]:
    """``n`` trade events as the ``ticks`` hub carries them (already JSON-decoded), prices
    following a geometric Brownian motion per symbol, interleaved round-robin."""
    rng = random.Random(seed)
    ts = start or datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    prices = {s: 50.0 + 10.0 * i for i, s in enumerate(symbols)}
    events = []
    step = timedelta(milliseconds=10)
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        prices[symbol] *= math.exp(rng.gauss(0.0, 0.0005))
        events.append(
            {
                "symbol": symbol,
                "price": round(prices[symbol], 2),
                "size": rng.randint(1, 500),
                "ts": (ts + step * i).isoformat().replace("+00:00", "Z"),
                "id": i,
            }
        )
    return events


def median_ns_per_item(run: Callable[[], int], *, repeats: int = 7) -> float:
    """Median over ``repeats`` runs of wall time per item; ``run`` returns its item count."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        count = run()
        samples.append((time.perf_counter_ns() - started) / count)
    return statistics.median(samples)
