"""Tick-to-submit latency through devhost: a tick is delivered to the ``ticks`` trigger,
becomes a signal and an intent, starts the trade orchestration, passes the risk entity and
reaches the simulated broker. Reports p50/p99 from the delivery to the broker's submit.

The baseline, measured in the same run, is the floor of that shape
(``bench.latency_floor_app``): a trigger that starts an orchestration per event, which asks
an entity and then calls an activity with retries, with none of the desk's work in any of
them. What the desk adds is the difference. ``--pause-ms 0`` sends the next tick as soon as
the previous order is submitted, while that trade is still finishing. The host's threads
share one core, as ``devhost start`` runs them (``--all-cores`` to spread them).

    python -m bench.latency [--samples N] [--pause-ms MS] [--all-cores]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func

from adapters import bootstrap
from adapters.bootstrap import Services, Settings
from adapters.simulated_broker import SimulatedBroker
from adapters.sqlite_store import SqliteStore
from bench import latency_floor_app
from bench.latency_floor_app import Arrivals
from devhost import affinity, heap, worker_loop
from devhost.durable import DurableEngine, SystemClock
from devhost.durable_api import DurableApi, client_payload
from devhost.host import DevHost, HostConfig
from devhost.http_host import HostKeys
from devhost.measure import INVOCATIONS
from devhost.server import BackgroundServer
from domain.execution import BrokerOrder
from domain.orders import OrderLeg

ROOT = Path(__file__).resolve().parents[1]
TARGET_P99_MS = 2.0
KEY = "bench-master-key"


class TimedBroker(SimulatedBroker):
    """Notes when each order reaches the broker."""

    def __init__(self, arrivals: Arrivals) -> None:
        super().__init__()
        self.arrivals = arrivals

    def submit(self, leg: OrderLeg, client_order_id: str) -> BrokerOrder:
        order = super().submit(leg, client_order_id)
        self.arrivals.note(client_order_id)
        return order


@dataclass
class Subject:
    """An app under measurement, where its submits are noted, and the names of its
    orchestrator and entity functions."""

    app: func.FunctionApp
    arrivals: Arrivals
    close: Callable[[], None]
    orchestrator: str
    entity: str


@dataclass
class Result:
    total_ms: list[float]  # tick to submit
    trigger_ms: list[float]  # the trigger's whole invocation
    missed: int  # ticks without exactly one submit within 5 s
    # Mean time of one episode inside the durable SDK's orchestrator and entity handlers
    # (the SDK's replay and the function it runs). Two orchestrator episodes and one entity
    # episode come before each submit.
    orchestrator_ms: float
    entity_ms: float


def desk(folder: Path) -> Subject:
    """The desk itself: one strategy that signals on every tick, the simulated broker."""
    import function_app

    strategy = {"kind": "sma_cross", "symbol": "AAPL", "fast": 1, "slow": 2, "quantity": 1}
    settings = Settings(books_path=folder / "books.sqlite", strategies=(strategy,))
    arrivals = Arrivals()
    bootstrap.use_services(
        Services(settings, SqliteStore(settings.books_path), TimedBroker(arrivals))
    )
    return Subject(function_app.app, arrivals, bootstrap.reset, "trade", "RiskEntity")


def floor(folder: Path) -> Subject:
    """The same shape with none of the desk's work (``bench.latency_floor_app``)."""
    latency_floor_app.SUBMITTED = arrivals = Arrivals()
    return Subject(latency_floor_app.app, arrivals, lambda: None, "floor_trade", "FloorRisk")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _tallies(subject: Subject) -> list[tuple[int, float]]:
    """Invocations so far and their summed ms, of the orchestrator and of the entity."""
    functions = INVOCATIONS.snapshot()
    empty = {"count": 0, "total_duration_ms": 0.0}
    return [
        (int(tally["count"]), float(tally["total_duration_ms"]))
        for tally in (functions.get(name, empty) for name in (subject.orchestrator, subject.entity))
    ]


def _mean_since(before: tuple[int, float], after: tuple[int, float]) -> float:
    count = after[0] - before[0]
    return (after[1] - before[1]) / count if count else float("nan")


def run(samples: int, pause_s: float, make: Callable[[Path], Subject] = desk) -> Result:
    """``samples`` ticks one at a time, each to be submitted before the next is sent."""
    folder = Path(tempfile.mkdtemp())
    subject = make(folder)
    arrivals = subject.arrivals
    holder: dict[str, str] = {}

    def payload() -> str:
        return client_payload(holder["url"], "BenchHub", KEY)

    engine = DurableEngine(
        subject.app,
        folder / "durable.sqlite",
        clock=SystemClock(),
        activity_workers=4,
        client_payload=payload,
    )
    api = DurableApi(engine, KEY, "BenchHub")
    os.environ.setdefault("TICKS_EVENTHUB__fullyQualifiedNamespace", "bench.local")
    host = DevHost(
        HostConfig(ROOT, folder / "state", enable_timers=False, partitions=1),
        subject.app,
        keys=HostKeys(frozenset({"bench-function-key"}), KEY),
        client_payload=payload,
        extra_routes=api.add_routes,
    )
    server = BackgroundServer(host.application()).start()
    holder["url"] = server.url
    heap.freeze_startup_heap()  # as devhost start does once the app is loaded
    engine.start()
    tallies_before = _tallies(subject)
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
            before = set(arrivals.at)
            host.event_log.publish("ticks", [("AAPL", json.dumps(body).encode())], ts_enqueued=ts)
            started = time.perf_counter()
            loop.run_until_complete(host.deliver_once())
            invoked = time.perf_counter() - started
            with arrivals.arrived:
                arrivals.arrived.wait_for(
                    lambda known=before: set(arrivals.at) - known,  # type: ignore[misc]
                    timeout=5,
                )
            new = set(arrivals.at) - before
            if index < 3:  # the first ticks warm the averages up
                continue
            if len(new) != 1:  # none within 5 s (or a late one mixed in): a failure
                missed += 1
                continue
            total.append((arrivals.at[new.pop()] - started) * 1000)
            trigger.append(invoked * 1000)
        tallies = _tallies(subject)
    finally:
        loop.run_until_complete(host.stop())
        loop.close()
        server.stop()
        engine.close()
        subject.close()
        worker_loop.shutdown()
    orchestrator, entity = (
        _mean_since(*pair) for pair in zip(tallies_before, tallies, strict=True)
    )
    return Result(total, trigger, missed, orchestrator, entity)


def _line(name: str, values: list[float]) -> str:
    return (
        f"  {name:<34} p50 {statistics.median(values):6.2f} ms  "
        f"p99 {percentile(values, 0.99):6.2f} ms"
    )


def _episodes(result: Result) -> str:
    return (
        f"  {'one episode in the durable SDK':<34} orchestrator {result.orchestrator_ms:.2f} ms, "
        f"entity {result.entity_ms:.2f} ms (means; two and one come before a submit)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--pause-ms", type=float, default=50.0, help="idle time between signals (default 50)"
    )
    parser.add_argument("--all-cores", action="store_true", help="leave the threads on every core")
    args = parser.parse_args(argv)
    core = None if args.all_cores else affinity.pin_to_one_core()
    pause = args.pause_ms / 1000
    base = run(args.samples, pause, floor)
    ours = run(args.samples, pause, desk)
    print(
        f"tick-to-submit through devhost, {len(ours.total_ms)} ticks one at a time, "
        f"{args.pause_ms:g} ms apart ({ours.missed + base.missed} without exactly one submit "
        f"within 5 s); threads on {'every core' if core is None else f'core {core}'}"
    )
    print("baseline: the same shape with none of the desk's work (the host's and SDK's floor)")
    print(_line("trigger invocation", base.trigger_ms))
    print(_line("tick to activity", base.total_ms))
    print(_episodes(base))
    print("the desk")
    print(_line("trigger invocation", ours.trigger_ms))
    p99 = percentile(ours.total_ms, 0.99)
    print(
        _line("tick to broker submit", ours.total_ms)
        + f"  ({'meets' if p99 < TARGET_P99_MS else 'misses'} the p99 < {TARGET_P99_MS} ms "
        f"target; {statistics.median(ours.total_ms) / statistics.median(base.total_ms):.1f}x "
        "the floor at p50)"
    )
    print(_episodes(ours))


if __name__ == "__main__":
    main()
