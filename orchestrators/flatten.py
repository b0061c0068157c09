"""The flatten orchestration: halt the account, cancel its open orders, close its positions
at market, and raise an alert. Started by the kill switch, by a breach of the daily loss
limit, and before the close for intraday positions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from domain.audit import AuditKind
from orchestrators.blueprint import bp
from orchestrators.steps import (
    Ctx,
    Steps,
    Tracker,
    apply_fills,
    audit,
    entry,
    follow,
    now_str,
    retry_options,
    risk_entity,
)

CLOSE_TIMEOUT_S = 120
POLL_S = 2


def run_flatten(context: Ctx) -> Steps:
    payload: dict[str, Any] = context.get_input() or {}
    account = str(payload.get("account") or "")
    reason = str(payload.get("reason") or "flatten")
    keep_running = bool(payload.get("keep_trading"))
    tag = context.instance_id
    tracker = Tracker()
    context.set_custom_status({"stage": "halting", "reason": reason})
    if not keep_running:
        yield context.call_entity(risk_entity(account), "halt", {"reason": reason})
    outcomes = yield context.call_activity_with_retry(
        "flatten_positions",
        retry_options(),
        {"tag": tag, "ts": now_str(context), "reason": reason, "halt": not keep_running},
    )
    yield from apply_fills(context, account, tracker.update(outcomes))
    context.set_custom_status({"stage": "closing", "orders": tracker.summary()})
    closing = [cid for cid in tracker.orders if cid.startswith(f"{tag}.")]
    deadline = context.current_utc_datetime + timedelta(seconds=CLOSE_TIMEOUT_S)
    ended = yield from follow(
        context, account, tracker, closing, deadline, POLL_S, cancellable=False
    )
    result = {
        "account": account,
        "reason": reason,
        "closed": ended == "done",
        "orders": tracker.summary(),
    }
    yield from audit(context, entry(AuditKind.ALERT, f"{tag}:flattened", result))
    context.set_custom_status({"stage": "done", "orders": tracker.summary()})
    return result


@bp.orchestration_trigger(context_name="context")
def flatten(context: Ctx) -> Steps:
    return (yield from run_flatten(context))
