"""Event Hub triggers: partitions, batches, checkpoints, redelivery, retries, sources."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devhost.app_index import index_app
from devhost.eventhub import EventHubListener, EventLog, RetryPolicy, partition_for
from devhost.sources import FileReplay, SyntheticMarket, pump
from tests.devhost import sample_app

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def event_log(tmp_path: Path) -> Iterator[EventLog]:
    log = EventLog(tmp_path / "hubs.sqlite", partition_count=4)
    yield log
    log.close()


@pytest.fixture(autouse=True)
def clear_received() -> None:
    for bucket in sample_app.received.values():
        bucket.clear()
    sample_app.flaky_failures_left["count"] = 0


def listener(event_log: EventLog, name: str, max_batch: int = 100) -> EventHubListener:
    spec = index_app(sample_app.app).functions[name]
    slept: list[float] = []

    async def no_wait(seconds: float) -> None:
        slept.append(seconds)

    hub_listener = EventHubListener(
        spec,
        event_log,
        max_batch_size=max_batch,
        retry=RetryPolicy.from_settings(spec.retry),
        now=lambda: NOW,
        sleep=no_wait,
    )
    hub_listener.slept = slept  # type: ignore[attr-defined]
    return hub_listener


def publish_ticks(event_log: EventLog, symbols: list[str], per_symbol: int) -> None:
    items = []
    for i in range(per_symbol):
        for symbol in symbols:
            items.append((symbol, json.dumps({"symbol": symbol, "i": i}).encode()))
    event_log.publish("ticks", items, ts_enqueued=NOW)


def test_events_of_one_key_stay_in_one_partition_in_order(event_log: EventLog) -> None:
    publish_ticks(event_log, ["AAPL", "MSFT", "SPY", "QQQ", "IWM"], per_symbol=30)
    hub = listener(event_log, "on_ticks", max_batch=7)
    delivered = asyncio.run(hub.drain())
    assert delivered == 150
    batches = sample_app.received["many"]
    assert all(1 <= len(batch) <= 7 for batch in batches)
    seen: dict[str, list[int]] = {}
    for batch in batches:
        for key, _seq, body in batch:
            seen.setdefault(key, []).append(body["i"])
    assert all(order == list(range(30)) for order in seen.values())
    partitions: dict[str, set[int]] = {}
    for partition in range(4):
        for event in event_log.read("ticks", partition, -1, 1000):
            partitions.setdefault(str(event.partition_key), set()).add(partition)
    assert all(len(p) == 1 for p in partitions.values())
    assert len(set().union(*partitions.values())) > 1  # the keys spread over partitions


def test_unread_events_are_those_after_the_groups_checkpoint(event_log: EventLog) -> None:
    publish_ticks(event_log, ["AAPL"], per_symbol=6)
    partition = partition_for("AAPL", 4, 0)
    assert [e.seq for e in event_log.unread("ticks", "$Default", partition, 4)] == [0, 1, 2, 3]
    event_log.checkpoint("ticks", "$Default", partition, 3)
    assert event_log.unread("ticks", "$Default", partition, 10) == event_log.read(
        "ticks", partition, 3, 10
    )
    assert [e.seq for e in event_log.unread("ticks", "$Default", partition, 10)] == [4, 5]
    assert len(event_log.unread("ticks", "audit", partition, 10)) == 6  # another group's own
    assert event_log.unread("other", "$Default", partition, 10) == []


def test_event_carries_partition_key_sequence_enqueued_time_and_context(
    event_log: EventLog,
) -> None:
    event_log.publish("ticks", [("AAPL", b'{"a":1}')], ts_enqueued=NOW)
    batch = event_log.read("ticks", partition_for("AAPL", 4, 0), -1, 10)
    event = batch[0].to_function_event("$Default")
    assert event.partition_key == "AAPL"
    assert event.sequence_number == 0
    assert event.enqueued_time == NOW
    assert event.get_body() == b'{"a":1}'
    metadata = event.metadata
    assert metadata is not None
    assert metadata["PartitionContext"]["PartitionId"] == str(batch[0].partition)


def test_checkpointed_events_are_not_delivered_again(event_log: EventLog) -> None:
    publish_ticks(event_log, ["AAPL"], per_symbol=5)
    hub = listener(event_log, "on_ticks")
    assert asyncio.run(hub.drain()) == 5
    assert asyncio.run(hub.drain()) == 0
    assert event_log.pending("ticks", "$Default") == 0


def test_a_crash_before_the_checkpoint_redelivers_the_batch(
    event_log: EventLog, tmp_path: Path
) -> None:
    publish_ticks(event_log, ["AAPL"], per_symbol=5)
    partition = partition_for("AAPL", 4, 0)
    # The function ran on the first three events, but the host died before checkpointing.
    event_log.checkpoint("ticks", "$Default", partition, 1)
    event_log.close()
    reopened = EventLog(tmp_path / "hubs.sqlite", partition_count=4)
    try:
        hub = listener(reopened, "on_ticks")
        assert asyncio.run(hub.drain()) == 3
        delivered = [body["i"] for batch in sample_app.received["many"] for _, _, body in batch]
        assert delivered == [2, 3, 4]
    finally:
        reopened.close()


def test_consumer_groups_keep_their_own_checkpoints(event_log: EventLog) -> None:
    publish_ticks(event_log, ["AAPL", "MSFT"], per_symbol=3)
    assert asyncio.run(listener(event_log, "on_ticks").drain()) == 6
    assert asyncio.run(listener(event_log, "on_tick_one").drain()) == 6
    assert len(sample_app.received["one"]) == 6


def test_a_failing_batch_is_retried_by_the_policy_then_succeeds(event_log: EventLog) -> None:
    event_log.publish("orders", [("k", b"{}"), ("k", b"{}")], ts_enqueued=NOW)
    sample_app.flaky_failures_left["count"] = 2
    hub = listener(event_log, "flaky")
    asyncio.run(hub.drain())
    assert sample_app.received["flaky"] == [[0, 1], [0, 1], [0, 1]]
    assert hub.slept == [1.0, 1.0]  # type: ignore[attr-defined]
    assert event_log.failed_batches("orders") == []


def test_a_batch_that_exhausts_its_retries_is_recorded_not_lost(event_log: EventLog) -> None:
    event_log.publish("orders", [("k", b"{}")] * 3, ts_enqueued=NOW)
    sample_app.flaky_failures_left["count"] = 10
    hub = listener(event_log, "flaky")
    asyncio.run(hub.drain())
    assert len(sample_app.received["flaky"]) == 3  # the first attempt and two retries
    failed = event_log.failed_batches("orders")
    assert len(failed) == 1
    assert (failed[0]["first_seq"], failed[0]["last_seq"]) == (0, 2)
    assert "transient" in failed[0]["error"]
    assert event_log.pending("orders", "$Default") == 0


def test_retry_policy_parsing_and_backoff() -> None:
    fixed = RetryPolicy.from_settings(
        {"strategy": "fixed_delay", "max_retry_count": "3", "delay_interval": "00:00:05"}
    )
    assert fixed is not None
    assert fixed.delay_before(1) == fixed.delay_before(3) == timedelta(seconds=5)
    assert fixed.allows(3) and not fixed.allows(4)
    backoff = RetryPolicy.from_settings(
        {
            "strategy": "exponentialBackoff",
            "maxRetryCount": -1,
            "minimumInterval": "00:00:02",
            "maximumInterval": "00:00:10",
        }
    )
    assert backoff is not None
    assert [backoff.delay_before(n).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 8, 10]
    assert backoff.allows(10_000)
    assert backoff.delay_before(10_000) == timedelta(seconds=10)  # retrying for ever is fine
    assert RetryPolicy.from_settings(None) is None


def test_synthetic_market_is_deterministic_and_resumes_by_position(event_log: EventLog) -> None:
    market = SyntheticMarket(["AAPL", "MSFT"], seed=3, limit=50)
    assert list(market.events(0))[10:20] == list(market.events(10))[:10]
    assert pump(market, event_log, "ticks", max_events=30, now=NOW) == 30
    assert pump(market, event_log, "ticks", max_events=30, now=NOW) == 20
    assert pump(market, event_log, "ticks", max_events=30, now=NOW) == 0
    bodies = []
    for partition in range(4):
        bodies += [json.loads(e.body) for e in event_log.read("ticks", partition, -1, 1000)]
    assert sorted(b["id"] for b in bodies) == sorted(f"syn-3-{i}" for i in range(50))
    assert {b["symbol"] for b in bodies} == {"AAPL", "MSFT"}
    assert all(b["price"] > 0 for b in bodies)


def test_file_replay_reads_json_lines_and_csv(event_log: EventLog, tmp_path: Path) -> None:
    jsonl = tmp_path / "ticks.jsonl"
    jsonl.write_text('{"symbol":"AAPL","price":1}\n\nnot json\n{"symbol":"MSFT","price":2}\n')
    events = list(FileReplay(jsonl).events(0))
    assert [key for key, _ in events] == ["AAPL", None, "MSFT"]
    assert events[1][1] == b"not json"
    csv_file = tmp_path / "ticks.csv"
    csv_file.write_text("symbol,price,size,ts\nSPY,500.5,10,2026-03-02T14:30:00Z\n")
    ((key, body),) = list(FileReplay(csv_file).events(0))
    assert key == "SPY"
    assert json.loads(body)["price"] == "500.5"
