"""Event Hub triggers fed from a local, persistent event log.

A source (a file replay, a synthetic market, a live feed) publishes events into the log;
each event goes to a partition chosen from its partition key, gets the next sequence
number of that partition and an enqueued time. A listener per trigger reads each
partition from its checkpoint in batches of at most ``maxEventBatchSize`` (in order within
a partition), invokes the function, and checkpoints after it returns. If the process dies
before the checkpoint, the batch is delivered again on restart: at-least-once, as in Azure.
A function that raises is retried by its retry policy; when the retries run out the batch
is recorded as failed (and logged) before the listener moves past it, as the Azure host
moves past it too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from azure.functions import EventHubEvent
from azure.functions.meta import Datum

from adapters.sqlite_wal import WalCheckpointer
from devhost.app_index import FunctionSpec
from devhost.invoke import invoke

log = logging.getLogger("devhost.eventhub")

DEFAULT_PARTITIONS = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    hub TEXT NOT NULL, partition INTEGER NOT NULL, seq INTEGER NOT NULL,
    partition_key TEXT, body BLOB NOT NULL, enqueued TEXT NOT NULL,
    PRIMARY KEY (hub, partition, seq)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    hub TEXT NOT NULL, consumer_group TEXT NOT NULL, partition INTEGER NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (hub, consumer_group, partition)
);
CREATE TABLE IF NOT EXISTS source_positions (
    source TEXT PRIMARY KEY, position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS failed_batches (
    hub TEXT NOT NULL, consumer_group TEXT NOT NULL, function TEXT NOT NULL,
    partition INTEGER NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    error TEXT NOT NULL, failed_at TEXT NOT NULL
);
"""


def partition_for(partition_key: str | None, count: int, fallback: int) -> int:
    """A stable partition for a key (every event of a symbol lands in one partition)."""
    if partition_key is None:
        return fallback % count
    return zlib.crc32(partition_key.encode("utf-8")) % count


@dataclass(frozen=True)
class LoggedEvent:
    hub: str
    partition: int
    seq: int
    partition_key: str | None
    body: bytes
    ts_enqueued: datetime

    def to_function_event(self, consumer_group: str) -> EventHubEvent:
        context = {
            "EventHubName": self.hub,
            "ConsumerGroup": consumer_group,
            "PartitionId": str(self.partition),
        }
        return EventHubEvent(
            body=self.body,
            enqueued_time=self.ts_enqueued,
            partition_key=self.partition_key,
            sequence_number=self.seq,
            offset=str(self.seq),
            trigger_metadata={"PartitionContext": Datum(json.dumps(context), "json")},
        )


class EventLog:
    """Partitioned, persistent event hubs and their checkpoints, in one SQLite file."""

    def __init__(self, path: Path | str, *, partition_count: int = DEFAULT_PARTITIONS) -> None:
        self.partition_count = partition_count
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._checkpointer = WalCheckpointer(path, self._db)
        self._round_robin = 0

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            self._db.close()

    def publish(
        self,
        hub: str,
        items: Iterable[tuple[str | None, bytes]],
        *,
        ts_enqueued: datetime,
        source: str | None = None,
        source_position: int | None = None,
    ) -> int:
        """Append events; with ``source``, record how far that source has published in the
        same transaction, so a restarted source neither skips nor repeats events."""
        stamp = ts_enqueued.isoformat()
        count = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                next_seq = {
                    p: s + 1
                    for p, s in self._db.execute(
                        "SELECT partition, MAX(seq) FROM events WHERE hub = ? GROUP BY partition",
                        (hub,),
                    )
                }
                rows = []
                for key, body in items:
                    partition = partition_for(key, self.partition_count, self._round_robin)
                    self._round_robin += 1
                    seq = next_seq.get(partition, 0)
                    next_seq[partition] = seq + 1
                    rows.append((hub, partition, seq, key, body, stamp))
                self._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
                count = len(rows)
                if source is not None and source_position is not None:
                    self._db.execute(
                        "INSERT INTO source_positions VALUES (?, ?) "
                        "ON CONFLICT(source) DO UPDATE SET position = excluded.position",
                        (source, source_position),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._checkpointer.note_commit()
        return count

    def read(self, hub: str, partition: int, after_seq: int, limit: int) -> list[LoggedEvent]:
        return self._events(hub, partition, "?", (after_seq,), limit)

    def unread(self, hub: str, group: str, partition: int, limit: int) -> list[LoggedEvent]:
        """The next events after ``group``'s checkpoint of ``partition``: what
        ``read(hub, partition, checkpoint_of(...), limit)`` returns, in one query (a listener
        asks this of every partition on every poll)."""
        checkpoint = (
            "COALESCE((SELECT seq FROM checkpoints "
            "WHERE hub = ? AND consumer_group = ? AND partition = ?), -1)"
        )
        return self._events(hub, partition, checkpoint, (hub, group, partition), limit)

    def _events(
        self, hub: str, partition: int, after: str, params: tuple[Any, ...], limit: int
    ) -> list[LoggedEvent]:
        """The events of ``partition`` with a sequence number above the SQL ``after``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, partition_key, body, enqueued FROM events "
                f"WHERE hub = ? AND partition = ? AND seq > {after} ORDER BY seq LIMIT ?",
                (hub, partition, *params, limit),
            ).fetchall()
        return [
            LoggedEvent(hub, partition, seq, key, bytes(body), datetime.fromisoformat(enq))
            for seq, key, body, enq in rows
        ]

    def checkpoint_of(self, hub: str, group: str, partition: int) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT seq FROM checkpoints "
                "WHERE hub = ? AND consumer_group = ? AND partition = ?",
                (hub, group, partition),
            ).fetchone()
        return -1 if row is None else int(row[0])

    def checkpoint(self, hub: str, group: str, partition: int, seq: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?, ?) ON CONFLICT(hub, consumer_group, "
                "partition) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                (hub, group, partition, seq),
            )
        self._checkpointer.note_commit()

    def count(self, hub: str) -> int:
        """Events ever published to ``hub``."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM events WHERE hub = ?", (hub,)).fetchone()
        return int(row[0])

    def source_position(self, source: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT position FROM source_positions WHERE source = ?", (source,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def record_failure(
        self,
        hub: str,
        group: str,
        function: str,
        batch: list[LoggedEvent],
        error: str,
        failed_at: datetime,
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO failed_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    hub,
                    group,
                    function,
                    batch[0].partition,
                    batch[0].seq,
                    batch[-1].seq,
                    error[:2000],
                    failed_at.isoformat(),
                ),
            )
        self._checkpointer.note_commit()

    def failed_batches(self, hub: str | None = None) -> list[dict[str, Any]]:
        """Batches given up on after their retries, oldest first (of one hub, or all)."""
        with self._lock:
            cursor = self._db.execute(
                "SELECT * FROM failed_batches WHERE ? IS NULL OR hub = ? ORDER BY failed_at",
                (hub, hub),
            )
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def lags(self) -> list[tuple[str, str, int]]:
        """(hub, consumer group, events not yet checkpointed) for every hub with events."""
        with self._lock:
            hubs = [r[0] for r in self._db.execute("SELECT DISTINCT hub FROM events ORDER BY hub")]
            groups = {
                hub: [
                    r[0]
                    for r in self._db.execute(
                        "SELECT DISTINCT consumer_group FROM checkpoints WHERE hub = ?", (hub,)
                    )
                ]
                for hub in hubs
            }
        return [
            (hub, group, self.pending(hub, group))
            for hub in hubs
            for group in (groups[hub] or ["$Default"])
        ]

    def pending(self, hub: str, group: str) -> int:
        """Events published but not yet checkpointed by ``group``: the consumer lag."""
        total = 0
        for partition in range(self.partition_count):
            after = self.checkpoint_of(hub, group, partition)
            with self._lock:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM events WHERE hub = ? AND partition = ? AND seq > ?",
                    (hub, partition, after),
                ).fetchone()
            total += int(row[0])
        return total


def parse_timespan(text: str | None, default: timedelta) -> timedelta:
    """``hh:mm:ss`` (optionally ``d.hh:mm:ss``) as used in host.json and retry policies."""
    if not text:
        return default
    days = 0
    if "." in text.split(":")[0]:
        day_text, text = text.split(".", 1)
        days = int(day_text)
    hours, minutes, seconds = text.split(":")
    return timedelta(days=days, hours=int(hours), minutes=int(minutes), seconds=float(seconds))


@dataclass(frozen=True)
class RetryPolicy:
    """The function's retry policy (``@app.retry`` or host.json ``retry``); ``max_retries``
    of -1 retries for ever."""

    strategy: str
    max_retries: int
    delay: timedelta
    minimum: timedelta
    maximum: timedelta

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> RetryPolicy | None:
        if not settings:
            return None
        strategy = str(settings.get("strategy", "fixed_delay")).lower()
        count = settings.get("max_retry_count", settings.get("maxRetryCount", 0))
        return cls(
            strategy="exponential_backoff" if "exponential" in strategy else "fixed_delay",
            max_retries=int(count),
            delay=parse_timespan(
                settings.get("delay_interval") or settings.get("delayInterval"),
                timedelta(seconds=1),
            ),
            minimum=parse_timespan(
                settings.get("minimum_interval") or settings.get("minimumInterval"),
                timedelta(seconds=1),
            ),
            maximum=parse_timespan(
                settings.get("maximum_interval") or settings.get("maximumInterval"),
                timedelta(minutes=15),
            ),
        )

    def delay_before(self, retry: int) -> timedelta:
        """Wait before retry number ``retry`` (1-based)."""
        if self.strategy == "fixed_delay":
            return self.delay
        # Doubling stops well before it could overflow a timedelta: retries may go on
        # for ever (max_retry_count -1), the wait never exceeds ``maximum``.
        backoff: timedelta = self.minimum * (2 ** min(retry - 1, 30))
        return min(self.maximum, backoff)

    def allows(self, retry: int) -> bool:
        return self.max_retries < 0 or retry <= self.max_retries


Sleep = Callable[[float], Awaitable[None]]


class EventHubListener:
    """Delivers one hub's events to one Event Hub trigger function."""

    def __init__(
        self,
        spec: FunctionSpec,
        event_log: EventLog,
        *,
        max_batch_size: int,
        retry: RetryPolicy | None,
        now: Callable[[], datetime],
        client_payload: Callable[[], str] | None = None,
        executor: Executor | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.spec = spec
        self.log = event_log
        self.hub = str(spec.trigger["eventHubName"])
        self.group = str(spec.trigger.get("consumerGroup") or "$Default")
        self.many = str(spec.trigger.get("cardinality", "many")).lower() == "many"
        self.max_batch_size = max_batch_size
        self.retry = retry
        self.now = now
        self.client_payload = client_payload
        self.executor = executor
        self.sleep = sleep

    async def poll_once(self) -> int:
        """One batch per partition that has events; returns how many were delivered."""
        delivered = 0
        for partition in range(self.log.partition_count):
            batch = self.log.unread(self.hub, self.group, partition, self.max_batch_size)
            if not batch:
                continue
            if self.many:
                await self._deliver(batch)
            else:
                for event in batch:
                    await self._deliver([event])
            delivered += len(batch)
        return delivered

    async def drain(self, *, max_rounds: int = 1_000_000) -> int:
        """Deliver until every partition is caught up."""
        total = 0
        for _ in range(max_rounds):
            count = await self.poll_once()
            if count == 0:
                return total
            total += count
        return total

    async def _deliver(self, batch: list[LoggedEvent]) -> None:
        events = [e.to_function_event(self.group) for e in batch]
        argument: Any = events if self.many else events[0]
        kwargs: dict[str, Any] = {self.spec.trigger_param: argument}
        if self.spec.client_param is not None and self.client_payload is not None:
            kwargs[self.spec.client_param] = self.client_payload()
        attempt = 0
        while True:
            try:
                await invoke(self.spec, kwargs, self.executor)
                break
            except Exception as error:
                attempt += 1
                if self.retry is None or not self.retry.allows(attempt):
                    log.error(
                        "function %s failed on %s partition %d seq %d..%d after %d attempt(s): %s",
                        self.spec.name,
                        self.hub,
                        batch[0].partition,
                        batch[0].seq,
                        batch[-1].seq,
                        attempt,
                        error,
                        extra={
                            "function": self.spec.name,
                            "hub": self.hub,
                            "partition": batch[0].partition,
                        },
                    )
                    self.log.record_failure(
                        self.hub, self.group, self.spec.name, batch, repr(error), self.now()
                    )
                    break
                await self.sleep(self.retry.delay_before(attempt).total_seconds())
        self.log.checkpoint(self.hub, self.group, batch[0].partition, batch[-1].seq)
