"""``ticks``: the Event Hub trigger that turns market data into trades.

Per batch: parse and validate every event (bad ones are dead-lettered), update the
strategies, start one trade orchestration per new intent (instance id = intent id, never
twice), tell running orchestrations about order updates, then save the strategies' state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import weakref
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from activities import alerting
from activities.signals import PLAN_CLAIM_PREFIX, PLAN_CLAIMS_KEPT, RawEvent, SignalProcessor
from adapters.bootstrap import Services, services
from adapters.durable_client import start_claimed
from adapters.observability import Telemetry, correlated, telemetry
from triggers.blueprint import bp

log = logging.getLogger("desk.ticks")

TRADE_ORCHESTRATOR = "trade"
ORDER_UPDATE_EVENT = "order_update"

_lock = threading.Lock()
_processors: dict[int, SignalProcessor] = {}
_batch_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def processor(svc: Services | None = None) -> SignalProcessor:
    """The warm processor for the current services (one per process)."""
    svc = svc or services()
    with _lock:
        found = _processors.get(id(svc))
        if found is None or found.svc is not svc:
            _processors.clear()
            found = _processors[id(svc)] = SignalProcessor(svc)
        return found


def raw_event(event: func.EventHubEvent) -> RawEvent:
    partition = "0"
    context = (event.metadata or {}).get("PartitionContext")
    if isinstance(context, str):
        context = json.loads(context)
    if isinstance(context, dict) and context.get("PartitionId") is not None:
        partition = str(context["PartitionId"])
    return RawEvent(partition, int(event.sequence_number or 0), event.get_body())


# A batch only fails for a reason outside it (the books or the host unreachable, state
# saved elsewhere first): bad events are dead-lettered, not raised. So a failed batch is
# retried until it goes through rather than skipped, which would lose its signals.
@bp.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",
    minimum_interval="00:00:01",
    maximum_interval="00:01:00",
)
@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="ticks",
    connection="TICKS_EVENTHUB",
    cardinality="many",
)
@bp.durable_client_input(client_name="client")
async def ticks(
    events: list[func.EventHubEvent], client: df.DurableOrchestrationClient, context: func.Context
) -> None:
    with correlated(invocation_id=context.invocation_id):
        await handle_batch([raw_event(e) for e in events], client)


async def handle_batch(events: list[RawEvent], client: df.DurableOrchestrationClient) -> None:
    """One batch at a time per process, from ingest to commit: a strategy may span
    partitions (pairs), and its saved state must never include ticks of another batch
    whose trades have not been started yet."""
    async with _batch_lock():
        await _process(events, client)


def _batch_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _batch_locks.get(loop)
    if lock is None:
        lock = _batch_locks[loop] = asyncio.Lock()
    return lock


async def _process(events: list[RawEvent], client: df.DurableOrchestrationClient) -> None:
    tel = telemetry()
    with tel.span("ticks", events=str(len(events))):
        await _process_traced(events, client, tel)


async def _process_traced(
    events: list[RawEvent], client: df.DurableOrchestrationClient, tel: Telemetry
) -> None:
    desk = processor()
    now = datetime.now(UTC)
    batch = desk.ingest(events, now=now)
    carrier = tel.carrier()
    try:
        desk.audit_signals(batch, now=now)
        for request in batch.requests:
            with correlated(intent_id=request.intent.intent_id, account=request.intent.account):
                await start_claimed(
                    client,
                    desk.svc.store,
                    TRADE_ORCHESTRATOR,
                    request.intent.intent_id,
                    {**request.to_dict(), "trace": carrier},
                )
    except Exception:
        desk.abandon(batch)
        raise
    tel.count("desk.ticks", batch.ticks)
    tel.count("desk.dead_letters", batch.dead_letters)
    tel.count("desk.duplicates", batch.duplicates)
    tel.count("desk.signals", len(batch.signals))
    tel.count("desk.stale_signals", len(batch.stale))
    tel.count("desk.intents", len(batch.requests))
    if events:
        alerting.observe(desk.svc, alerting.ERROR_METRIC, batch.dead_letters / len(events), ts=now)
    for update in batch.order_updates:
        instance_id = update.client_order_id.split(":", 1)[0]
        try:
            await client.raise_event(instance_id, ORDER_UPDATE_EVENT, update.to_dict())
        except Exception as error:  # the poll catches up; an update is only a wake-up call
            log.info("order update for %s not delivered: %s", instance_id, error)
    desk.commit(batch)
    if batch.dead_letters:
        log.warning("ticks: %d malformed events dead-lettered", batch.dead_letters)
    if batch.stale:
        log.warning(
            "ticks: %d signals older than TRADING_MAX_SIGNAL_AGE_S not traded (oldest %.0f s)",
            len(batch.stale),
            max(age for _, age in batch.stale),
        )


@bp.timer_trigger(arg_name="timer", schedule="0 50 0 * * *")
def forget_signal_decisions(timer: func.TimerRequest) -> None:
    """Each night: drop the stale-or-fresh decisions of signals older than any batch that
    could still be delivered again."""
    before = datetime.now(UTC) - PLAN_CLAIMS_KEPT
    forgotten = services().store.forget_claims(PLAN_CLAIM_PREFIX, before=before)
    log.info("ticks: %d signal decisions from before %s forgotten", forgotten, before)
