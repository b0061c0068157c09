"""The desk under devhost, in-process: the real ``function_app``, the durable engine on a
virtual clock, the Durable HTTP API and the HTTP triggers on a loopback port, Event Hub
delivery through devhost's event log, and the simulated broker behind the services."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

import function_app
from adapters import bootstrap
from adapters.bootstrap import Services, Settings
from adapters.simulated_broker import SimulatedBroker, SimulatorConfig
from adapters.sqlite_store import SqliteStore
from devhost.durable import DurableEngine, VirtualClock
from devhost.durable.status import OrchestrationStatus
from devhost.durable_api import DurableApi, client_payload
from devhost.host import DevHost, HostConfig
from devhost.http_host import HostKeys
from devhost.server import BackgroundServer
from domain import audit
from domain.alerts import Alert, AlertKind, Severity
from domain.ports import Books, Broker

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_KEY = "desk-function-key"
MASTER_KEY = "desk-master-key"
HUB = "TradingDeskTest"
T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def trade(symbol: str, price: float, ts: datetime, trade_id: str | None = None) -> bytes:
    record = {"type": "trade", "symbol": symbol, "price": price, "size": 100, "ts": ts.isoformat()}
    if trade_id is not None:
        record["id"] = trade_id
    return json.dumps(record).encode()


@dataclass
class Desk:
    tmp: Path
    settings: Settings
    broker: Broker
    clock: VirtualClock = field(default_factory=lambda: VirtualClock(T0))
    books: Books | None = None

    def __post_init__(self) -> None:
        self.store: Books = self.books or SqliteStore(self.tmp / "books.sqlite")
        self.services = Services(self.settings, self.store, self.broker)
        bootstrap.use_services(self.services)
        self.market_ts = T0
        holder: dict[str, str] = {}

        def payload() -> str:
            return client_payload(holder["url"], HUB, MASTER_KEY)

        self.engine = DurableEngine(
            function_app.app,
            self.tmp / "durable.sqlite",
            clock=self.clock,
            activity_workers=2,
            client_payload=payload,
        )
        api = DurableApi(self.engine, MASTER_KEY, HUB)
        self.host = DevHost(
            HostConfig(ROOT, self.tmp / "state", enable_timers=False, partitions=2),
            function_app.app,
            keys=HostKeys(frozenset({FUNCTION_KEY}), MASTER_KEY),
            client_payload=payload,
            extra_routes=api.add_routes,
        )
        self.server = BackgroundServer(self.host.application()).start()
        holder["url"] = self.server.url
        self.loop = asyncio.new_event_loop()

    # -- driving -----------------------------------------------------------------------------

    def publish(self, events: Sequence[tuple[str | None, bytes]]) -> None:
        self.host.event_log.publish("ticks", events, ts_enqueued=datetime.now(UTC))

    def prices(
        self, symbol: str, prices: list[float], step: timedelta = timedelta(seconds=1)
    ) -> None:
        """Trades at ``prices``, one ``step`` apart in market time."""
        events = []
        for price in prices:
            self.market_ts += step
            events.append((symbol, trade(symbol, price, self.market_ts)))
        self.publish(events)

    def deliver(self) -> int:
        total = 0
        while True:
            delivered = self.loop.run_until_complete(self.host.deliver_once())
            total += delivered
            if delivered == 0:
                return total

    def settle(self, seconds: float = 0) -> None:
        """Deliver pending events and run the durable work, letting virtual time pass
        ``seconds`` (timers due in that span fire)."""
        self.deliver()
        self.engine.run_until_idle(until=self.clock.now() + timedelta(seconds=seconds))
        self.deliver()
        self.engine.run_until_idle(until=self.clock.now())

    def fire(self, timer: str) -> None:
        """Run a timer function now (its durable work runs with the next ``settle``)."""
        self.loop.run_until_complete(self.host.fire_timer(timer))

    def run_out(self) -> None:
        """Everything to its end: every timer fires, however far ahead."""
        self.deliver()
        self.engine.run_until_idle()

    # -- looking -----------------------------------------------------------------------------

    def status(self, instance_id: str) -> OrchestrationStatus:
        found = self.engine.get_status(instance_id)
        assert found is not None, instance_id
        return found

    def trades(self) -> list[OrchestrationStatus]:
        return [s for s in self.engine.query() if s.name == "trade"]

    def url(self, path: str) -> str:
        return f"{self.server.url}/api/{path}"

    def http(
        self, method: str, path: str, *, admin: bool = False, **kwargs: Any
    ) -> requests.Response:
        key = MASTER_KEY if admin else FUNCTION_KEY
        headers = {"x-functions-key": key, **kwargs.pop("headers", {})}
        return requests.request(method, self.url(path), headers=headers, timeout=10, **kwargs)

    def chain_ok(self, partition: str | None = None) -> bool:
        part = partition or self.settings.account
        records = self.store.records(part)
        return (
            bool(records)
            and audit.verify(records) is None
            and (audit.verify(self.store.records("ingest")) is None)
        )

    def close(self) -> None:
        """Stop everything; every scenario ends with its audit chains verified."""
        breaks = {
            partition: audit.verify(self.store.records(partition))
            for partition in (self.settings.account, "ingest")
        }
        self.loop.run_until_complete(self.host.stop())
        self.loop.close()
        self.server.stop()
        self.engine.close()
        bootstrap.reset()
        assert all(at is None for at in breaks.values()), f"audit chain breaks: {breaks}"


def make_desk(
    tmp: Path,
    *,
    strategies: list[dict[str, Any]] | None = None,
    simulator: SimulatorConfig | None = None,
    broker: Broker | None = None,
    books: Books | None = None,
    **overrides: Any,
) -> Desk:
    settings = Settings(
        account="paper",
        books_path=tmp / "books.sqlite",
        strategies=tuple(strategies or []),
        simulator=simulator or SimulatorConfig(),
        poll_interval_s=1,
        entry_timeout_s=30,
        exit_timeout_s=600,
    )
    settings = replace(settings, **overrides)
    return Desk(tmp, settings, broker or SimulatedBroker(settings.simulator), books=books)


ZERO = Decimal(0)


class RecordingSink:
    """An alert notifier that keeps what it is told, for tests to look at."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self._lock = threading.Lock()

    def notify(self, alert: Alert) -> None:
        with self._lock:
            self.alerts.append(alert)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float = 5.0) -> None:
        pass

    def kinds(self) -> list[tuple[AlertKind, Severity]]:
        return [(a.kind, a.severity) for a in self.alerts]
