"""The feed bridge through alpaca-py's real stream clients, against local servers that speak
Alpaca's streaming protocols, publishing through the Event Hubs SDK's own batches into an
in-memory producer."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgpack
import orjson
import pytest

from adapters.bootstrap import AlpacaSettings
from adapters.feed_bridge.bridge import BridgeSettings, Channel, ExitCode, FeedBridge
from adapters.feed_bridge.publisher import ByHub, EventBatch, Producer, SignedWebhookProducer
from devhost.live_feed import EventLogProducer
from devhost.server import BackgroundServer
from domain.market import Bar, Quote, Tick, parse_market_event
from tests.alpaca.streams import DROP, FakeAlpacaStreams, bar, quote, trade, trade_update
from tests.functions.desk import make_desk

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@dataclass
class MemoryProducer:
    """Records what would have gone to Event Hubs; ``failures`` sends fail first."""

    failures: int = 0
    batches: list[EventBatch] = field(default_factory=list)
    closed: bool = False

    async def send(self, batch: EventBatch) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the hub is unreachable")
        self.batches.append(batch)

    async def close(self) -> None:
        self.closed = True

    def events(self, hub: str) -> list[tuple[str | None, dict[str, object]]]:
        return [
            (batch.partition_key, orjson.loads(body))
            for batch in self.batches
            if batch.hub == hub
            for body in batch.bodies
        ]


@pytest.fixture
def streams() -> Iterator[tuple[FakeAlpacaStreams, str]]:
    fake = FakeAlpacaStreams()
    with BackgroundServer(fake.app()) as server:
        yield fake, server.url.replace("http://", "ws://")


def settings(ws_url: str, key: str = "key", **changes: object) -> BridgeSettings:
    base = BridgeSettings(
        alpaca=AlpacaSettings(key, "secret"),
        symbols=("AAPL", "MSFT"),
        channels=frozenset(Channel),
        stock_url=f"{ws_url}/v2/iex",
        crypto_url=f"{ws_url}/v1beta3/crypto/us",
        trading_url=f"{ws_url}/stream",
        trade_updates=False,
        silence_s=None,
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        linger_s=0.005,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def run_bridge(bridge: FeedBridge, until: Callable[[], bool], timeout: float = 15.0) -> ExitCode:
    """Run the bridge until ``until()`` holds (then stop it) or it ends by itself."""

    async def go() -> ExitCode:
        stop = asyncio.Event()
        running = asyncio.create_task(bridge.run(stop))
        deadline = asyncio.get_running_loop().time() + timeout
        while not running.done() and not until():
            if asyncio.get_running_loop().time() > deadline:
                stop.set()
                await running
                raise AssertionError(f"condition not met in {timeout}s: {bridge.status()}")
            await asyncio.sleep(0.01)
        stop.set()
        return await running

    return asyncio.run(go())


def published(producer: MemoryProducer, hub: str = "ticks") -> int:
    return len(producer.events(hub))


def test_trades_quotes_and_bars_become_the_desks_events_keyed_by_symbol(
    streams: tuple[FakeAlpacaStreams, str],
) -> None:
    fake, url = streams
    fake.market_scripts = [
        [
            [trade("AAPL", 187.25, 100, T0, 11), quote("AAPL", 187.2, 187.3, T0)],
            [bar("MSFT", 410.0, 411.5, 409.0, 411.0, T0)],
            [trade("MSFT", 411.1, 5, T0 + timedelta(seconds=1), 12)],
        ]
    ]
    producer = MemoryProducer()
    bridge = FeedBridge(settings(url), producer)
    assert run_bridge(bridge, lambda: published(producer) == 4) is ExitCode.STOPPED

    assert fake.subscriptions == [
        {
            "action": "subscribe",
            "trades": ["AAPL", "MSFT"],
            "quotes": ["AAPL", "MSFT"],
            "bars": ["AAPL", "MSFT"],
        }
    ]
    events = producer.events("ticks")
    parsed = [(key, parse_market_event(body, now=None)) for key, body in events]
    assert parsed == [
        ("AAPL", Tick("AAPL", 187.25, 100.0, T0, "11")),
        ("AAPL", Quote("AAPL", 187.2, 2.0, 187.3, 3.0, T0)),
        ("MSFT", Bar("MSFT", 410.0, 411.5, 409.0, 411.0, 1200.0, T0)),
        ("MSFT", Tick("MSFT", 411.1, 5.0, T0 + timedelta(seconds=1), "12")),
    ]
    for batch in producer.batches:  # one key per batch, and the SDK batch holds them all
        keys = {orjson.loads(body)["symbol"] for body in batch.bodies}
        assert keys == {batch.partition_key}
        assert len(batch.sdk_batch) == len(batch.bodies)
    assert producer.closed


def test_batches_stay_under_the_size_bound_and_keep_each_symbols_order(
    streams: tuple[FakeAlpacaStreams, str],
) -> None:
    fake, url = streams
    prints = [
        trade("AAPL", 100.0 + i / 100, 1, T0 + timedelta(milliseconds=i), i) for i in range(300)
    ]
    fake.market_scripts = [[prints]]  # one frame: all reach the bridge within one linger
    producer = MemoryProducer()
    bridge = FeedBridge(settings(url, max_bytes=2048, linger_s=0.2), producer)
    assert run_bridge(bridge, lambda: published(producer) == 300) is ExitCode.STOPPED

    assert len(producer.batches) > 1
    assert all(batch.size_in_bytes <= 2048 for batch in producer.batches)
    ids = [body["id"] for _key, body in producer.events("ticks")]
    assert ids == [str(i) for i in range(300)]


def test_a_dropped_socket_reconnects_and_logs_the_gap(
    streams: tuple[FakeAlpacaStreams, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = streams
    fake.market_scripts = [
        [[trade("AAPL", 100.0, 1, T0, 1)], [trade("AAPL", 100.1, 1, T0, 2)], DROP],
        [[trade("AAPL", 100.2, 1, T0 + timedelta(seconds=5), 3)]],
    ]
    producer = MemoryProducer()
    bridge = FeedBridge(settings(url), producer)
    with caplog.at_level(logging.WARNING, logger="desk.feed_bridge"):
        assert run_bridge(bridge, lambda: published(producer) == 3) is ExitCode.STOPPED

    assert fake.market_connections == 2
    assert len(fake.subscriptions) == 2  # subscribed again on the new connection
    assert [body["id"] for _k, body in producer.events("ticks")] == ["1", "2", "3"]
    assert bridge.status()["streams"]["stocks"]["connections"] == 2
    assert any("gap" in record.getMessage() for record in caplog.records)


def test_a_silent_socket_is_abandoned_for_a_new_connection(
    streams: tuple[FakeAlpacaStreams, str],
) -> None:
    fake, url = streams
    fake.market_scripts = [
        [[trade("AAPL", 100.0, 1, T0, 1)]],  # then nothing, connection kept open
        [[trade("AAPL", 100.1, 1, T0 + timedelta(seconds=1), 2)]],
    ]
    producer = MemoryProducer()
    bridge = FeedBridge(settings(url, silence_s=0.3), producer)
    assert run_bridge(bridge, lambda: published(producer) == 2) is ExitCode.STOPPED
    assert fake.market_connections == 2


def test_bad_frames_and_bad_messages_are_skipped_and_counted(
    streams: tuple[FakeAlpacaStreams, str],
) -> None:
    fake, url = streams
    negative = trade("AAPL", -5.0, 1, T0, 1)
    no_symbol = {k: v for k, v in trade("AAPL", 5.0, 1, T0, 2).items() if k != "S"}
    fake.market_scripts = [
        [
            b"\xc1 not msgpack",
            msgpack.packb({"T": "t"}),  # a map, not the list Alpaca always sends
            [negative, no_symbol],
            [trade("AAPL", 101.0, 1, T0, 3)],
        ]
    ]
    producer = MemoryProducer()
    bridge = FeedBridge(settings(url), producer)
    assert run_bridge(bridge, lambda: published(producer) == 1) is ExitCode.STOPPED

    assert [body["id"] for _k, body in producer.events("ticks")] == ["3"]
    status = bridge.status()
    assert status["streams"]["stocks"]["bad_frames"] == 2
    assert status["refused"] == {"stocks:price": 1}
    assert fake.market_connections == 1  # nothing bad enough to reconnect for


def test_crypto_symbols_go_through_the_crypto_stream(
    streams: tuple[FakeAlpacaStreams, str],
) -> None:
    fake, url = streams
    fake.market_scripts = [[[trade("BTC/USD", 65000.5, 0.25, T0, 7)]]]
    producer = MemoryProducer()
    bridge = FeedBridge(
        settings(url, symbols=("BTC/USD",), channels=frozenset({Channel.TRADES})), producer
    )
    assert run_bridge(bridge, lambda: published(producer) == 1) is ExitCode.STOPPED
    assert producer.events("ticks") == [
        (
            "BTC/USD",
            {
                "type": "trade",
                "symbol": "BTC/USD",
                "price": 65000.5,
                "size": 0.25,
                "ts": "2026-03-02T15:00:00+00:00",
                "id": "7",
            },
        )
    ]
    assert fake.subscriptions == [{"action": "subscribe", "trades": ["BTC/USD"]}]


@pytest.mark.parametrize("stream", ["market data", "trade updates"])
def test_a_refused_login_stops_the_bridge_with_its_own_exit_code(
    streams: tuple[FakeAlpacaStreams, str], stream: str
) -> None:
    fake, url = streams
    changes: dict[str, object] = {"key": "wrong"}
    if stream == "trade updates":
        changes.update(symbols=("AAPL",), trade_updates=True, stock_url=f"{url}/v2/iex")
    bridge = FeedBridge(settings(url, **changes), MemoryProducer())  # type: ignore[arg-type]
    assert run_bridge(bridge, lambda: False, timeout=10) is ExitCode.LOGIN_REFUSED
    assert 1 <= fake.refused_logins <= 2  # not retried: at most each stream once


def test_the_publisher_keeps_a_batch_through_failed_sends(
    streams: tuple[FakeAlpacaStreams, str],
) -> None:
    fake, url = streams
    fake.market_scripts = [[[trade("AAPL", 100.0 + i, 1, T0, i)] for i in range(5)]]
    producer = MemoryProducer(failures=3)
    bridge = FeedBridge(settings(url), producer)
    bridge.publisher.retry_min_s = 0.01
    assert run_bridge(bridge, lambda: published(producer) == 5) is ExitCode.STOPPED
    assert [body["id"] for _k, body in producer.events("ticks")] == [str(i) for i in range(5)]
    assert bridge.status()["send_failures"] == 3


def test_trade_updates_go_to_their_hub_keyed_by_intent(
    streams: tuple[FakeAlpacaStreams, str],
) -> None:
    fake, url = streams
    fake.market_scripts = []
    fake.trading_scripts = [
        [
            trade_update("new", "intent-1:entry", status="new"),
            trade_update("fill", "intent-1:entry", status="filled", filled_qty="10"),
            trade_update("fill", "placed-by-hand", status="filled"),
            b"{ not json",
            trade_update("partial_fill", "intent-2:long", status="partially_filled"),
        ]
    ]
    producer = MemoryProducer()
    bridge = FeedBridge(settings(url, trade_updates=True), producer)
    assert run_bridge(bridge, lambda: published(producer, "trade-updates") == 3) is ExitCode.STOPPED

    updates = producer.events("trade-updates")
    assert [(key, body["data"]["event"]) for key, body in updates] == [  # type: ignore[index]
        ("intent-1", "new"),
        ("intent-1", "fill"),
        ("intent-2", "partial_fill"),
    ]
    assert fake.listens == 1
    status = bridge.status()
    assert status["foreign_updates"] == 1
    assert status["streams"]["trade-updates"]["bad_frames"] == 1


def _bridge_env(url: str, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "FEED_"))}
    env.update(
        ALPACA_KEY_ID=key,
        ALPACA_SECRET_KEY="secret",
        FEED_SYMBOLS="AAPL",
        FEED_STOCK_URL=f"{url}/v2/iex",
        FEED_TRADING_URL=f"{url}/stream",
        TICKS_EVENTHUB="Endpoint=sb://127.0.0.1/;SharedAccessKeyName=k;SharedAccessKey=a2V5",
        TRADE_UPDATES_EVENTHUB="Endpoint=sb://127.0.0.1/;SharedAccessKeyName=k;SharedAccessKey=a2V5",
    )
    return env


def test_the_command_exits_non_zero_on_a_refused_login(
    streams: tuple[FakeAlpacaStreams, str],
) -> None:
    _fake, url = streams
    done = subprocess.run(
        [sys.executable, "-m", "adapters.feed_bridge"],
        cwd=ROOT,
        env=_bridge_env(url, "wrong"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == ExitCode.LOGIN_REFUSED, done.stderr
    assert "login refused" in done.stderr
    assert "secret" not in done.stderr.replace("ALPACA_SECRET_KEY", "")


def test_the_command_names_a_bad_setting(streams: tuple[FakeAlpacaStreams, str]) -> None:
    _fake, url = streams
    env = _bridge_env(url, "key")
    env["FEED_CHANNELS"] = "trades,level2"
    done = subprocess.run(
        [sys.executable, "-m", "adapters.feed_bridge"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == ExitCode.BAD_SETTINGS
    assert "FEED_CHANNELS" in done.stderr


WEBHOOK_KEY = b"a-webhook-secret-of-at-least-32-bytes!"


@pytest.mark.parametrize("transport", ["hub", "signed webhook"])
def test_the_bridge_feeds_the_desk_under_devhost_end_to_end(
    streams: tuple[FakeAlpacaStreams, str], tmp_path: Path, transport: str
) -> None:
    """Prints reach the ticks trigger, and a fill update wakes the orchestration owning the
    order, which polls only every ten minutes: only the update explains a fill in seconds.
    The update travels through the trade-updates hub, or is posted to the app's webhook."""
    fake, url = streams
    desk = make_desk(tmp_path, poll_interval_s=600, entry_timeout_s=1200, webhook_key=WEBHOOK_KEY)
    try:
        desk.prices("AAPL", [100.0])
        desk.settle()
        body = {"symbol": "AAPL", "side": "buy", "quantity": "5", "order_type": "limit",
                "limit_price": "99"}  # fmt: skip
        intent_id = desk.http("POST", "orders", json=body).json()["intent_id"]
        desk.settle(1)
        simulator = desk.services.simulator
        assert simulator is not None
        simulator.on_trade("AAPL", Decimal("98.5"), T0)  # filled; nobody told the desk
        desk.settle(1)
        assert desk.status(intent_id).custom_status["stage"] == "entry"

        fake.market_scripts = [[[trade("AAPL", 120.0, 10, T0 + timedelta(seconds=5), 1)]]]
        fake.trading_scripts = [[trade_update("fill", f"{intent_id}:entry", status="filled")]]
        local = EventLogProducer(desk.host.event_log)
        producer: Producer = local
        if transport == "signed webhook":
            webhook = SignedWebhookProducer(desk.url("webhooks/trade-updates"), WEBHOOK_KEY)
            producer = ByHub({"ticks": local, "trade-updates": webhook})
        bridge = FeedBridge(settings(url, symbols=("AAPL",), trade_updates=True), producer)
        stop = threading.Event()
        outcome: list[ExitCode] = []

        async def bridge_until_stopped() -> None:
            halt = asyncio.Event()
            running = asyncio.create_task(bridge.run(halt))
            while not stop.is_set():
                await asyncio.sleep(0.01)
            halt.set()
            outcome.append(await running)

        thread = threading.Thread(target=lambda: asyncio.run(bridge_until_stopped()))
        thread.start()
        try:
            deadline = time.monotonic() + 15
            while bridge.status()["published"] < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            stop.set()
            thread.join(timeout=20)
        assert outcome == [ExitCode.STOPPED]
        desk.settle(1)

        assert simulator.last_price("AAPL") == Decimal("120.0")  # the print went through ticks
        final = desk.status(intent_id)
        assert final.output is not None and final.output["outcome"] == "completed"
    finally:
        desk.close()
