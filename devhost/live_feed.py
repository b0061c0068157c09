"""A live feed for devhost: the feed bridge publishing into the local event log instead of
Azure Event Hubs, so ``--feed alpaca`` trades on Alpaca's real-time data with the same
bridge that runs beside the app in Azure."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from adapters.feed_bridge.publisher import EventBatch
from devhost.eventhub import EventLog


class EventLogProducer:
    """``Producer`` of the feed bridge over devhost's event log: one batch, one append."""

    def __init__(self, event_log: EventLog) -> None:
        self._log = event_log

    async def send(self, batch: EventBatch) -> None:
        items = [(batch.partition_key, body) for body in batch.bodies]
        await asyncio.to_thread(self._log.publish, batch.hub, items, ts_enqueued=datetime.now(UTC))

    async def close(self) -> None:
        """The event log belongs to the host, which closes it."""
