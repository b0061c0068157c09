"""The ``ticks`` trigger body alone: batches of 1,000 encoded ticks over 50 symbols through
the signal processor (decode, validate, de-duplicate, 50 SMA crossovers, the simulated
broker's view of the market, signal audit, state snapshot), in ticks/s on one core,
beside a baseline in the same run: the trigger's own decode + validate of each event
(``read_event``) and nothing else.

Starting orchestrations is not in the body measured here: it is the durable client's
round trip to the host (see ``bench.latency``).

    python -m bench.trigger [--batches N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from activities.signals import RawEvent, SignalProcessor, read_event
from adapters.bootstrap import Services, Settings
from adapters.simulated_broker import SimulatedBroker
from adapters.sqlite_store import SqliteStore
from bench.common import synthetic_trades

SYMBOLS = [f"S{i:02d}" for i in range(50)]
BATCH = 1_000
TARGET_TICKS_PER_S = 300_000


def batches(count: int) -> list[list[RawEvent]]:
    events = synthetic_trades(count * BATCH, SYMBOLS, seed=11)
    encoded = [json.dumps(e).encode() for e in events]
    return [
        [RawEvent("0", b * BATCH + i, encoded[b * BATCH + i]) for i in range(BATCH)]
        for b in range(count)
    ]


# Busy: SMA 10/40 crossovers on every symbol; about 3% of ticks become signals (each one
# planned, audited and handed over). Quiet: a 40-tick z-score whose entry band is never
# reached: the per-tick path alone, with state of the same size.
CONFIGS: dict[str, dict[str, object]] = {
    "busy": {"kind": "sma_cross", "fast": 10, "slow": 40},
    "quiet": {"kind": "zscore", "window": 40, "entry_z": 50.0, "exit_z": 0.5},
}


def processor(folder: Path, config: dict[str, object]) -> SignalProcessor:
    strategies = tuple({**config, "symbol": s, "quantity": 10} for s in SYMBOLS)
    settings = Settings(books_path=folder / "books.sqlite", strategies=strategies)
    svc = Services(settings, SqliteStore(settings.books_path), SimulatedBroker())
    return SignalProcessor(svc)


def run_processor(data: list[list[RawEvent]], config: dict[str, object]) -> tuple[float, int]:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        desk = processor(Path(folder), config)
        signals = 0
        started = time.perf_counter()
        for batch in data:
            result = desk.ingest(batch, now=now)
            desk.audit_signals(result, now=now)
            desk.commit(result)
            signals += len(result.signals)
        elapsed = time.perf_counter() - started
        desk.svc.store.close()
    return sum(len(b) for b in data) / elapsed, signals


def run_baseline(data: list[list[RawEvent]]) -> float:
    now = datetime.now(UTC)
    started = time.perf_counter()
    for batch in data:
        for event in batch:
            read_event(event, now)
    return sum(len(b) for b in data) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    data = batches(args.batches)
    baselines = [run_baseline(data) for _ in range(args.repeats)]
    baseline = statistics.median(baselines)
    print(f"ticks trigger body, {args.batches} batches of {BATCH} over {len(SYMBOLS)} symbols")
    print(f"  baseline (decode + validate):   {baseline:>10,.0f} ticks/s")
    for name, config in CONFIGS.items():
        runs = [run_processor(data, config) for _ in range(args.repeats)]
        rate = statistics.median(r[0] for r in runs)
        signals = runs[0][1]
        verdict = "meets" if rate >= TARGET_TICKS_PER_S else "misses"
        print(
            f"  trigger body, {name:<5} {signals:>5} signals: {rate:>10,.0f} ticks/s "
            f"({rate / baseline:.2f} of baseline; {verdict} the {TARGET_TICKS_PER_S:,} target)"
        )


if __name__ == "__main__":
    main()
