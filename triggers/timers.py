"""Timer functions: warm-up, reconciliation with the broker, and the end of the day.
Market hours come from the broker's clock and calendar, never from these schedules: the
schedules only say how often to look."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import azure.functions as func

from activities.service import DEAD_LETTER_PARTITION as INGEST_PARTITION
from adapters.bootstrap import services
from adapters.durable_client import start_once
from triggers.blueprint import bp

log = logging.getLogger("desk.timers")

RISK_ENTITY = "RiskEntity"
FLATTEN_ORCHESTRATOR = "flatten"
RECONCILE_ORCHESTRATOR = "reconcile"


@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=True)
@bp.durable_client_input(client_name="client")
async def warm_up(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Touch the books and the broker; give the risk entity the configured limits."""
    # The housekeeping module loads here, on the warm-up that runs at start-up, rather
    # than in the import the host waits for; no tick or order needs it.
    from activities import operations

    svc = services()
    market = operations.warm_up(svc)
    limits = svc.settings.risk_limits
    if limits is not None:
        entity = df.EntityId(RISK_ENTITY, svc.settings.account)
        current = await client.read_entity_state(entity)
        state = current.entity_state if current.entity_exists else None
        if not isinstance(state, dict) or not state.get("limits_configured"):
            # Only an account never given limits: an operator's PUT stays in force.
            await client.signal_entity(entity, "set_limits", limits.to_dict())
    log.info("warm-up: market open %s", market["market_open"])


@bp.timer_trigger(arg_name="timer", schedule="30 */5 * * * *", run_on_startup=True)
@bp.durable_client_input(client_name="client")
async def reconciliation(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """At start-up and every five minutes: a ``reconcile`` orchestration. Runs never clash
    (the books take concurrent writers), so each gets an instance of its own."""
    account = services().settings.account
    instance_id = f"reconcile-{account}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    await client.start_new(RECONCILE_ORCHESTRATOR, instance_id, {"account": account})


@bp.timer_trigger(arg_name="timer", schedule="15 * * * * *")
@bp.durable_client_input(client_name="client")
async def end_of_day(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Before the close: flatten, and halt new entries for the rest of the session. After
    it: snapshot the day, reset the risk day, and lift the end-of-day halt (a halt for any
    other reason stays until an operator resumes)."""
    from activities import operations

    svc = services()
    account = svc.settings.account
    plan = operations.plan_day(svc, minutes_before_close=svc.settings.flatten_before_close_min)
    if plan.flatten_session is not None:
        instance_id = f"flatten-{account}-{plan.flatten_session:%Y%m%d}-eod"
        await start_once(
            client,
            FLATTEN_ORCHESTRATOR,
            instance_id,
            {"account": account, "reason": operations.END_OF_DAY},
        )
    if plan.close_day is not None:
        entity = df.EntityId(RISK_ENTITY, account)
        risk = await client.read_entity_state(entity)
        operations.close_day(
            svc,
            plan.close_day,
            risk.entity_state if risk.entity_exists else None,
            ts=datetime.now(UTC),
        )
        next_day = (plan.next_day or plan.close_day).isoformat()
        await client.signal_entity(entity, "reset_day", {"day": next_day})
        state = risk.entity_state if risk.entity_exists else {}
        if operations.resume_after_close(svc, state or {}, ts=datetime.now(UTC)):
            await client.signal_entity(entity, "resume", {})


@bp.timer_trigger(arg_name="timer", schedule="0 30 0 * * *")
def archive_audit(timer: func.TimerRequest) -> None:
    """Each night: write yesterday's audit chains (the account's and ingest) to the
    write-once archive, when one is configured."""
    from activities.archive import archive_day  # a nightly job: not a cold start's cost

    svc = services()
    archive = svc.archive()
    if archive is None:
        return
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    for partition in (svc.settings.account, INGEST_PARTITION):
        done = archive_day(svc.store, archive, partition, yesterday)
        log.info("audit archive %s: %d records (new: %s)", done.name, done.records, done.written)
