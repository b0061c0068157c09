"""Starting orchestrations exactly once through the durable client.

An instance id derived from what caused the work (an intent, an account and day) makes a
second start a no-op: the existing instance, running or finished, is left alone.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df

from domain.ports import IdempotencyStore

log = logging.getLogger("desk.durable")


async def instance_exists(client: df.DurableOrchestrationClient, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    return status is not None and status.runtime_status is not None


async def start_once(
    client: df.DurableOrchestrationClient, orchestrator: str, instance_id: str, payload: Any
) -> bool:
    """Start ``orchestrator`` as ``instance_id`` unless that instance exists; True when
    this call started it."""
    if await instance_exists(client, instance_id):
        return False
    try:
        await client.start_new(orchestrator, instance_id, payload)
    except Exception:
        # Another caller may have started it between the two calls; anything else is real.
        if await instance_exists(client, instance_id):
            return False
        raise
    return True


async def start_claimed(
    client: df.DurableOrchestrationClient,
    claims: IdempotencyStore,
    orchestrator: str,
    instance_id: str,
    payload: Any,
) -> bool:
    """:func:`start_once` with one round trip fewer on the common path: the first caller
    claims the instance id in the books and starts it straight away; only a caller that
    finds the claim taken (a redelivery, a crash after the claim) asks the host whether
    the instance exists."""
    claim = claims.claim(
        f"start:{instance_id}", {"orchestrator": orchestrator}, ts=datetime.now(UTC)
    )
    if not claim.created:
        return await start_once(client, orchestrator, instance_id, payload)
    try:
        await client.start_new(orchestrator, instance_id, payload)
    except Exception:
        if await instance_exists(client, instance_id):
            return False
        raise
    return True
