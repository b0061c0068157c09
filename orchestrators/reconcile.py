"""The reconcile orchestration: compare the books with the broker, book what the broker
proves, and hand the fills it booked to the account's risk entity. Started by the
``reconciliation`` timer (every five minutes, and at start-up); durable so that a broker
outage retries instead of skipping a run, and so each run can be looked up afterwards."""

from __future__ import annotations

from typing import Any

from domain.risk import FILL_HANDOVER_WINDOW
from domain.serde import ts_str
from orchestrators.blueprint import bp
from orchestrators.steps import Ctx, Steps, apply_fills, now_str, retry_options, risk_entity


def run_reconcile(context: Ctx) -> Steps:
    payload: dict[str, Any] = context.get_input() or {}
    account = str(payload.get("account") or "")
    context.set_custom_status({"stage": "comparing"})
    found = yield context.call_activity_with_retry(
        "reconcile_books", retry_options(), {"ts": now_str(context), "run_id": context.instance_id}
    )
    yield from apply_fills(context, account, list(found["fills"]))
    # Every fill booked up to a day before this run has reached the entity now: through
    # this run, or an earlier one (each hands on the last day's, and everything since the
    # last run that completed). The entity may forget the ids of days older than that.
    handed_through = context.current_utc_datetime - FILL_HANDOVER_WINDOW
    yield context.call_entity(
        risk_entity(account), "fills_handed", {"through": ts_str(handed_through)}
    )
    result = {
        "account": account,
        "fixed": found["fixed"],
        "alerts": found["alerts"],
        "fills": len(found["fills"]),
    }
    context.set_custom_status(
        {"stage": "done", "fixed": len(found["fixed"]), "alerts": len(found["alerts"])}
    )
    return result


@bp.orchestration_trigger(context_name="context")
def reconcile(context: Ctx) -> Steps:
    return (yield from run_reconcile(context))
