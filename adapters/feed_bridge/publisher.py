"""Size-bounded batches to Event Hubs, one partition key per batch, in arrival order.

Events wait at most ``linger_s`` (a few milliseconds: ticks are latency-sensitive) and are
then packed into ``EventDataBatch`` objects of at most ``max_bytes`` each, grouped by hub and
partition key. The SDK's own batch does the size accounting, so what is sent is exactly what
fits. Batches go to a ``Producer``: the Event Hubs client in production, the local event log
under devhost, a list in tests. A send that fails after the client's own retries is retried
with backoff, the batch kept at the head of the queue so per-key order holds; while the hub is
unreachable the queue is bounded, and what overflows is counted and logged, never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from azure.eventhub import EventData, EventDataBatch

if TYPE_CHECKING:
    from azure.eventhub.aio import EventHubProducerClient

log = logging.getLogger("desk.feed_bridge")


def utc_now() -> datetime:
    return datetime.now(UTC)


DEFAULT_MAX_BYTES = 256 * 1024  # every Event Hubs tier takes this much in one send
DEFAULT_LINGER_S = 0.02
DEFAULT_MAX_QUEUED = 200_000
PERMANENT_REFUSALS = frozenset({400, 401, 403, 404, 413})


@dataclass
class EventBatch:
    """One send: the bodies (readable) and the SDK batch built from them."""

    hub: str
    partition_key: str | None
    bodies: list[bytes]
    sdk_batch: EventDataBatch

    @property
    def size_in_bytes(self) -> int:
        return int(self.sdk_batch.size_in_bytes)


class Producer(Protocol):
    async def send(self, batch: EventBatch) -> None:
        """Deliver one batch or raise."""
        ...

    async def close(self) -> None: ...


class EventHubProducer:
    """``Producer`` over one hub's ``EventHubProducerClient``."""

    def __init__(self, client: EventHubProducerClient) -> None:
        self._client = client

    async def send(self, batch: EventBatch) -> None:
        await self._client.send_batch(batch.sdk_batch)

    async def close(self) -> None:
        await self._client.close()


class ByHub:
    """``Producer`` sending each hub's batches to that hub's producer."""

    def __init__(self, producers: Mapping[str, Producer]) -> None:
        self._producers = dict(producers)

    async def send(self, batch: EventBatch) -> None:
        await self._producers[batch.hub].send(batch)

    async def close(self) -> None:
        for producer in self._producers.values():
            await producer.close()


class SignedWebhookProducer:
    """``Producer`` posting each event to an HTTPS webhook of the app, signed (HMAC, with a
    timestamp: ``domain.signing``), instead of publishing it to a hub. A send is signed
    afresh, so a retry is never stale; a 409 (already taken) counts as delivered; an answer
    that a resend cannot change (malformed, refused signature, webhook off, too large) is
    logged and dropped, since the reconciliation closes that gap; anything else is retried."""

    def __init__(self, url: str, key: bytes, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self._key = key
        self._timeout_s = timeout_s
        self._session: Any = None

    async def send(self, batch: EventBatch) -> None:
        import aiohttp

        from domain.signing import sign

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )
        for body in batch.bodies:
            headers = {"Content-Type": "application/json", **sign(self._key, body, utc_now())}
            async with self._session.post(self._url, data=body, headers=headers) as response:
                if response.status in PERMANENT_REFUSALS:
                    log.error(
                        "the webhook refused an update (%d): %s",
                        response.status,
                        (await response.text())[:200],
                    )
                elif response.status != 409 and not 200 <= response.status < 300:
                    raise ConnectionError(f"the webhook answered {response.status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def pack(
    hub: str, partition_key: str | None, bodies: list[bytes], max_bytes: int
) -> tuple[list[EventBatch], list[bytes]]:
    """``bodies`` in order as batches of at most ``max_bytes``; also the bodies too large to
    travel even alone (set aside without closing the batch being filled)."""

    def fresh() -> EventBatch:
        sdk = EventDataBatch(max_size_in_bytes=max_bytes, partition_key=partition_key)
        return EventBatch(hub, partition_key, [], sdk)

    batches: list[EventBatch] = []
    too_large: list[bytes] = []
    current = fresh()
    for body in bodies:
        try:
            current.sdk_batch.add(EventData(body))
        except ValueError:
            alone = fresh()
            try:
                alone.sdk_batch.add(EventData(body))
            except ValueError:
                too_large.append(body)
                continue
            if current.bodies:
                batches.append(current)
            current = alone
        current.bodies.append(body)
    if current.bodies:
        batches.append(current)
    return batches, too_large


@dataclass
class PublisherStats:
    queued: int = 0
    published: int = 0
    batches: int = 0
    send_failures: int = 0
    too_large: int = 0
    overflowed: int = 0


@dataclass
class BatchingPublisher:
    producer: Producer
    max_bytes: int = DEFAULT_MAX_BYTES
    linger_s: float = DEFAULT_LINGER_S
    max_queued: int = DEFAULT_MAX_QUEUED
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0
    drain_timeout_s: float = 10.0
    sleep: Callable[[float], object] = field(default=asyncio.sleep, repr=False)
    stats: PublisherStats = field(default_factory=PublisherStats)
    # (hub, key) -> bodies not yet packed, in arrival order; then, per hub, batches not yet
    # sent: a hub that is not taking events holds back its own queue, never another's.
    _waiting: OrderedDict[tuple[str, str | None], list[bytes]] = field(
        default_factory=OrderedDict, repr=False
    )
    _unsent: dict[str, deque[EventBatch]] = field(default_factory=dict, repr=False)
    _failures: dict[str, int] = field(default_factory=dict, repr=False)
    _retry_at: dict[str, float] = field(default_factory=dict, repr=False)
    _queued_now: int = 0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def add(self, hub: str, partition_key: str | None, body: bytes) -> None:
        if self._queued_now >= self.max_queued:
            self.stats.overflowed += 1
            if self.stats.overflowed == 1 or self.stats.overflowed % 10_000 == 0:
                log.error(
                    "the hubs are not taking events: %d dropped so far (queue bound %d)",
                    self.stats.overflowed,
                    self.max_queued,
                )
            return
        self._waiting.setdefault((hub, partition_key), []).append(body)
        self._queued_now += 1
        self.stats.queued += 1

    @property
    def pending(self) -> int:
        return self._queued_now

    def _pack_waiting(self) -> None:
        waiting, self._waiting = self._waiting, OrderedDict()
        for (hub, key), bodies in waiting.items():
            batches, too_large = pack(hub, key, bodies, self.max_bytes)
            self._unsent.setdefault(hub, deque()).extend(batches)
            if too_large:
                self.stats.too_large += len(too_large)
                self._queued_now -= len(too_large)
                log.error(
                    "%d events for %s over %d bytes each: not sent",
                    len(too_large),
                    hub,
                    self.max_bytes,
                )

    async def flush(self) -> float | None:
        """One pass: each hub sends what it has queued, in order, unless it is waiting out a
        failure; a send that fails (after the client's own retries) keeps its batch at the
        head of that hub's queue and schedules the hub's next try with backoff and jitter.
        Returns the seconds until the earliest hub's next try, or None when nothing waits."""
        self._pack_waiting()
        for hub, queue in self._unsent.items():
            if not queue or self.clock() < self._retry_at.get(hub, 0.0):
                continue
            while queue:
                batch = queue[0]
                try:
                    await self.producer.send(batch)
                except Exception as error:
                    failures = self._failures[hub] = self._failures.get(hub, 0) + 1
                    self.stats.send_failures += 1
                    delay = min(self.retry_max_s, self.retry_min_s * 2 ** (failures - 1))
                    delay = delay / 2 + random.uniform(0, delay / 2)
                    self._retry_at[hub] = self.clock() + delay
                    log.warning("send to %s failed (%s); retrying in %.1fs", hub, error, delay)
                    break
                self._failures[hub] = 0
                queue.popleft()
                self._queued_now -= len(batch.bodies)
                self.stats.published += len(batch.bodies)
                self.stats.batches += 1
        waits = [
            max(0.0, self._retry_at.get(hub, 0.0) - self.clock())
            for hub, queue in self._unsent.items()
            if queue
        ]
        return min(waits) if waits else None

    async def _pause(self, seconds: float) -> None:
        result = self.sleep(seconds)
        if asyncio.iscoroutine(result):
            await result

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``linger_s`` (or when a hub's retry is due) until ``stop``; then keep
        flushing for at most ``drain_timeout_s`` while anything is left."""
        while not stop.is_set():
            wait = self.linger_s
            if self._queued_now:
                retry_in = await self.flush()
                if retry_in is not None:
                    wait = max(self.linger_s, retry_in)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
        deadline = self.clock() + self.drain_timeout_s
        while self._queued_now and self.clock() < deadline:
            retry_in = await self.flush()
            if retry_in is None:
                break
            await self._pause(min(retry_in, max(0.0, deadline - self.clock())) or 0.01)
        if self._queued_now:
            log.error("stopped with %d events not delivered", self._queued_now)
