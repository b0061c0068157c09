"""Steps the trade and flatten orchestrations share: audit, waiting for order updates,
following orders to a final state, and telling the risk entity about fills.

Everything here is deterministic: time is the orchestration's, ids come from the input.
Generators are composed with ``yield from``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import azure.durable_functions as df

from domain.audit import AuditKind, Entry
from domain.execution import MISSING, OPEN_STATUSES, LegOutcome
from domain.risk import STALE_FILL_SUFFIX
from domain.serde import dec_str, ts_str

RISK_ENTITY = "RiskEntity"
ORDER_UPDATE_EVENT = "order_update"
CANCEL_EVENT = "cancel"
APPROVAL_EVENT = "approval"
FLATTEN_INSTANCE_PREFIX = "flatten-"

Ctx: TypeAlias = df.DurableOrchestrationContext
Steps: TypeAlias = Generator[Any, Any, Any]
OPEN = frozenset(status.value for status in OPEN_STATUSES) | {MISSING}


def retry_options() -> df.RetryOptions:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=500, max_number_of_attempts=6)
    options.backoff_coefficient = 2.0
    options.max_retry_interval_in_milliseconds = 10_000
    return options


def risk_entity(account: str) -> df.EntityId:
    return df.EntityId(RISK_ENTITY, account)


def now_str(context: Ctx) -> str:
    return ts_str(context.current_utc_datetime)


def entry(
    kind: AuditKind,
    event_id: str,
    payload: Mapping[str, Any],
    correlation: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return Entry(kind, event_id, correlation, payload).to_dict()


def audit(context: Ctx, *entries: dict[str, Any]) -> Steps:
    yield context.call_activity_with_retry(
        "record_audit", retry_options(), {"ts": now_str(context), "entries": list(entries)}
    )


class Tracker:
    """The orchestration's view of its orders: status and filled quantity per client
    order id, as the activities last reported them."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.executions: set[str] = set()

    def update(self, outcomes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Take the outcomes in; returns the fills not seen before. Activities report every
        fill the books took in for an order lately (``domain.risk.recent_fills``), so one
        booked by a call whose answer was lost still reaches the risk entity."""
        fills: list[dict[str, Any]] = []
        for data in outcomes:
            outcome = LegOutcome.from_dict(data)
            self.orders[outcome.client_order_id] = {
                "status": outcome.status,
                "filled_qty": dec_str(outcome.filled_qty),
                "reject_reason": outcome.reject_reason,
            }
            for fill in outcome.fills:
                if fill.execution_id not in self.executions:
                    self.executions.add(fill.execution_id)
                    fills.append(fill.to_dict())
        return fills

    def open_ids(self, ids: Iterable[str] | None = None) -> list[str]:
        chosen = self.orders if ids is None else ids
        return [cid for cid in chosen if self.orders.get(cid, {}).get("status") in OPEN]

    def status(self, cid: str) -> str:
        return str(self.orders.get(cid, {}).get("status", "unknown"))

    def filled(self, cid: str) -> str:
        return str(self.orders.get(cid, {}).get("filled_qty", "0"))

    def summary(self) -> dict[str, dict[str, Any]]:
        return {cid: dict(view) for cid, view in self.orders.items()}


def apply_fills(context: Ctx, account: str, fills: list[dict[str, Any]]) -> Steps:
    """Each new fill goes to the risk entity; a breach of the daily loss limit starts the
    account's flatten orchestration (once a day). A fill the entity refuses as stale
    (applied long ago, its id forgotten since) is audited, which raises an alert."""
    for fill in fills:
        result = yield context.call_entity(risk_entity(account), "apply_fill", fill)
        if isinstance(result, Mapping) and result.get("stale"):
            execution_id = str(fill.get("execution_id"))
            refused = {
                "execution_id": execution_id,
                "client_order_id": fill.get("client_order_id"),
                "ts_filled": fill.get("ts_filled"),
                "forgotten_through": result.get("forgotten_through"),
            }
            correlation = {"client_order_id": str(fill.get("client_order_id"))}
            yield from audit(
                context,
                entry(AuditKind.ALERT, execution_id + STALE_FILL_SUFFIX, refused, correlation),
            )
        if isinstance(result, Mapping) and result.get("flatten"):
            day = context.current_utc_datetime.strftime("%Y%m%d")
            instance_id = f"{FLATTEN_INSTANCE_PREFIX}{account}-{day}-loss"
            yield context.call_activity_with_retry(
                "start_flatten",
                retry_options(),
                {"instance_id": instance_id, "account": account, "reason": "daily loss limit"},
            )


def wait(context: Ctx, deadline: datetime, poll_s: int, *, cancellable: bool = True) -> Steps:
    """Sleep until an order update, a cancel request, the next poll or the deadline;
    returns "cancel", "deadline" or "poll"."""
    now = context.current_utc_datetime
    wake = min(deadline, now + timedelta(seconds=poll_s))
    timer = context.create_timer(wake)
    tasks = [timer, context.wait_for_external_event(ORDER_UPDATE_EVENT)]
    if cancellable:
        tasks.append(context.wait_for_external_event(CANCEL_EVENT))
    winner = yield context.task_any(tasks)
    if winner is not timer:
        timer.cancel()
    if cancellable and winner is tasks[2]:
        return "cancel"
    if winner is timer and wake >= deadline:
        return "deadline"
    return "poll"


def follow(
    context: Ctx,
    account: str,
    tracker: Tracker,
    ids: list[str],
    deadline: datetime,
    poll_s: int,
    *,
    done: Callable[[Tracker], bool] | None = None,
    cancellable: bool = True,
    on_change: Callable[[], None] | None = None,
) -> Steps:
    """Follow ``ids`` until none is open (or ``done`` says so), a cancel request, or the
    deadline; each wake-up asks the broker. Returns "done", "cancel" or "deadline"."""
    while True:
        open_ids = tracker.open_ids(ids)
        if not open_ids or (done is not None and done(tracker)):
            return "done"
        woke = yield from wait(context, deadline, poll_s, cancellable=cancellable)
        outcomes = yield context.call_activity_with_retry(
            "sync_orders", retry_options(), {"client_order_ids": open_ids, "ts": now_str(context)}
        )
        yield from apply_fills(context, account, tracker.update(outcomes))
        if on_change is not None:
            on_change()
        if woke != "poll":
            return str(woke)


def cancel(context: Ctx, account: str, tracker: Tracker, ids: list[str]) -> Steps:
    """Cancel whatever of ``ids`` is still open, and take in the final fills."""
    open_ids = tracker.open_ids(ids)
    if not open_ids:
        return
    outcomes = yield context.call_activity_with_retry(
        "cancel_orders", retry_options(), {"client_order_ids": open_ids, "ts": now_str(context)}
    )
    yield from apply_fills(context, account, tracker.update(outcomes))
