"""Tick-to-submit latency through devhost: a tick is delivered to the ``ticks`` trigger,
becomes a signal and an intent, starts the trade orchestration, passes the risk entity and
reaches the simulated broker. Reports p50/p99 from the trigger's invocation to the broker's
submit, beside the whole trigger invocation (parse, signal, audit, the durable client's
start, state snapshot, checkpoint) measured in the same run. ``--pause-ms 0`` sends the
next tick as soon as the previous order is submitted, while that trade is still finishing.

    python -m bench.latency [--samples N] [--pause-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import function_app
from adapters import bootstrap
from adapters.bootstrap import Services, Settings
from adapters.simulated_broker import SimulatedBroker
from adapters.sqlite_store import SqliteStore
from devhost import worker_loop
from devhost.durable import DurableEngine, SystemClock
from devhost.durable_api import DurableApi, client_payload
from devhost.host import DevHost, HostConfig
from devhost.http_host import HostKeys
from devhost.server import BackgroundServer
from domain.execution import BrokerOrder
from domain.orders import OrderLeg

ROOT = Path(__file__).resolve().parents[1]
TARGET_P99_MS = 2.0
KEY = "bench-master-key"


class TimedBroker(SimulatedBroker):
    """Notes when each order reaches the broker."""

    def __init__(self) -> None:
        super().__init__()
        self.submitted: dict[str, float] = {}
        self.arrived = threading.Condition()

    def submit(self, leg: OrderLeg, client_order_id: str) -> BrokerOrder:
        order = super().submit(leg, client_order_id)
        with self.arrived:
            self.submitted.setdefault(client_order_id, time.perf_counter())
            self.arrived.notify_all()
        return order


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(samples: int, pause_s: float) -> tuple[list[float], list[float], int]:
    folder = Path(tempfile.mkdtemp())
    strategy = {"kind": "sma_cross", "symbol": "AAPL", "fast": 1, "slow": 2, "quantity": 1}
    settings = Settings(books_path=folder / "books.sqlite", strategies=(strategy,))
    broker = TimedBroker()
    bootstrap.use_services(Services(settings, SqliteStore(settings.books_path), broker))
    holder: dict[str, str] = {}

    def payload() -> str:
        return client_payload(holder["url"], "BenchHub", KEY)

    engine = DurableEngine(
        function_app.app,
        folder / "durable.sqlite",
        clock=SystemClock(),
        activity_workers=4,
        client_payload=payload,
    )
    api = DurableApi(engine, KEY, "BenchHub")
    os.environ.setdefault("TICKS_EVENTHUB__fullyQualifiedNamespace", "bench.local")
    host = DevHost(
        HostConfig(ROOT, folder / "state", enable_timers=False, partitions=1),
        function_app.app,
        keys=HostKeys(frozenset({"bench-function-key"}), KEY),
        client_payload=payload,
        extra_routes=api.add_routes,
    )
    server = BackgroundServer(host.application()).start()
    holder["url"] = server.url
    engine.start()
    loop = asyncio.new_event_loop()
    total, trigger = [], []
    missed = 0
    ts = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    price = 100.0
    try:
        for index in range(samples + 3):
            price += 1.0 if index % 2 else -1.0  # every tick crosses: one signal each
            ts += timedelta(seconds=1)
            body = {"type": "trade", "symbol": "AAPL", "price": price, "size": 1}
            body["ts"] = ts.isoformat()
            time.sleep(pause_s)
            before = set(broker.submitted)
            host.event_log.publish("ticks", [("AAPL", json.dumps(body).encode())], ts_enqueued=ts)
            started = time.perf_counter()
            loop.run_until_complete(host.deliver_once())
            invoked = time.perf_counter() - started
            with broker.arrived:
                broker.arrived.wait_for(
                    lambda known=before: set(broker.submitted) - known,  # type: ignore[misc]
                    timeout=5,
                )
            new = set(broker.submitted) - before
            if index < 3:  # the first ticks warm the averages up
                continue
            if len(new) != 1:  # none within 5 s (or a late one mixed in): a failure
                missed += 1
                continue
            total.append((broker.submitted[new.pop()] - started) * 1000)
            trigger.append(invoked * 1000)
    finally:
        loop.run_until_complete(host.stop())
        loop.close()
        server.stop()
        engine.close()
        bootstrap.reset()
        worker_loop.shutdown()
    return total, trigger, missed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--pause-ms", type=float, default=50.0, help="idle time between signals (default 50)"
    )
    args = parser.parse_args(argv)
    total, trigger, missed = run(args.samples, args.pause_ms / 1000)
    print(
        f"tick-to-submit through devhost, {len(total)} signals one at a time, "
        f"{args.pause_ms:g} ms apart ({missed} without exactly one order within 5 s)"
    )
    print(
        f"  trigger invocation (baseline): p50 {statistics.median(trigger):7.2f} ms  "
        f"p99 {percentile(trigger, 0.99):7.2f} ms"
    )
    p99 = percentile(total, 0.99)
    print(
        f"  tick to broker submit:         p50 {statistics.median(total):7.2f} ms  "
        f"p99 {p99:7.2f} ms  ({'meets' if p99 < TARGET_P99_MS else 'misses'} the "
        f"p99 < {TARGET_P99_MS} ms target)"
    )


if __name__ == "__main__":
    main()
