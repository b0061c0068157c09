"""Starting orchestrations exactly once through the durable client.

An instance id derived from what caused the work (an intent, an account and day) makes a
second start a no-op: the existing instance, running or finished, is left alone.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df

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
