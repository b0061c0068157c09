"""The trade orchestration: one per order intent, its instance id the intent id.

received -> (awaiting approval) -> risk check -> entry -> (exits | unwind) -> done.
Every decision is audited; the custom status shows the stage and each order's state.

A bracket's entry goes with its exits as one order where the broker takes it (a native
bracket, or OTO with one exit): the exits wait at the broker and protect the position the
moment the entry fills. They are sized to the whole entry and wait for it to fill in full,
so an entry that ends part-filled has them cancelled and exits for what did fill placed
in their stead (``-part`` legs). Where the broker will not, the exits are placed once the
entry has filled, sized to what it filled.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from domain.audit import AuditKind
from domain.execution import (
    ENTRY,
    PARTIAL_EXITS,
    STOP_LOSS,
    TAKE_PROFIT,
    LegRequest,
    TradeRequest,
    exit_legs,
    unwind_leg,
)
from domain.orders import OrderIntent, PlanKind
from domain.serde import dec_str
from orchestrators.blueprint import bp
from orchestrators.steps import (
    APPROVAL_EVENT,
    CANCEL_EVENT,
    Ctx,
    Steps,
    Tracker,
    apply_fills,
    audit,
    cancel,
    entry,
    follow,
    now_str,
    retry_options,
    risk_entity,
)


class _Run:
    """The state one execution of the generator carries between steps."""

    def __init__(self, context: Ctx, request: TradeRequest) -> None:
        self.context = context
        self.request = request
        self.intent: OrderIntent = request.intent
        self.account = self.intent.account
        self.tracker = Tracker()
        self.stage = "received"
        self.pending: list[dict[str, Any]] = []
        self.native_exits: list[str] = []  # a native bracket's exits, placed with the entry

    def note(self, kind: AuditKind, suffix: str, payload: dict[str, Any]) -> None:
        """An audit entry, written with the next activity call (one round trip fewer on the
        way to the broker) or by :meth:`flush`."""
        self.pending.append(entry(kind, f"{self.intent.intent_id}:{suffix}", payload, self.corr()))

    def take_pending(self) -> list[dict[str, Any]]:
        taken, self.pending = self.pending, []
        return taken

    def flush(self) -> Steps:
        if self.pending:
            yield from audit(self.context, *self.take_pending())

    def cid(self, leg: str) -> str:
        return f"{self.intent.intent_id}:{leg}"

    def publish(self, stage: str | None = None) -> None:
        if stage is not None:
            self.stage = stage
        self.context.set_custom_status(
            {
                "stage": self.stage,
                "intent_id": self.intent.intent_id,
                "orders": self.tracker.summary(),
            }
        )

    def follow(
        self,
        ids: list[str],
        seconds: int,
        *,
        done: Callable[[Tracker], bool] | None = None,
        cancellable: bool = True,
    ) -> Steps:
        """Follow ``ids`` for at most ``seconds``, publishing each change."""
        deadline = self.context.current_utc_datetime + timedelta(seconds=seconds)
        return (
            yield from follow(
                self.context,
                self.account,
                self.tracker,
                ids,
                deadline,
                self.request.poll_interval_s,
                done=done,
                cancellable=cancellable,
                on_change=self.publish,
            )
        )

    def corr(self) -> dict[str, str]:
        return {"intent_id": self.intent.intent_id}

    def finish(self, outcome: str, detail: dict[str, Any] | None = None) -> Steps:
        self.publish(outcome)
        result = {
            "intent_id": self.intent.intent_id,
            "outcome": outcome,
            "orders": self.tracker.summary(),
            **(detail or {}),
        }
        self.note(AuditKind.INTENT, outcome, result)
        yield from self.flush()
        return result


def _approval(run: _Run) -> Steps:
    """Wait for an approve/reject decision; silence until the timeout rejects, and a cancel
    request withdraws the order."""
    context = run.context
    run.publish("awaiting_approval")
    yield from run.flush()
    deadline = context.current_utc_datetime + timedelta(seconds=run.request.approval_timeout_s)
    timer = context.create_timer(deadline)
    decision = context.wait_for_external_event(APPROVAL_EVENT)
    withdrawn = context.wait_for_external_event(CANCEL_EVENT)
    winner = yield context.task_any([decision, withdrawn, timer])
    if winner is not timer:
        timer.cancel()
    if winner is decision:
        value = decision.result if isinstance(decision.result, dict) else {}
    elif winner is withdrawn:
        value = {"approve": False, "reason": "cancelled before approval", "by": "cancel"}
    else:
        value = {"approve": False, "reason": "approval timed out", "by": "timeout"}
    approved = value.get("approve") is True
    verdict = {
        "approved": approved,
        "by": str(value.get("by") or "unknown"),
        "reason": str(value.get("reason") or ""),
    }
    run.note(AuditKind.MANUAL_ACTION, "approval", verdict)
    return verdict


def _leg_request(run: _Run, leg: Any, *, timed: bool, first: bool) -> dict[str, Any]:
    """What an order activity takes for one leg. ``timed``: an entry a signal asked for
    without an approval wait, so its tick-to-submit time is meaningful. ``first``: it
    carries the audit entries decided so far."""
    return LegRequest(
        intent_id=run.intent.intent_id,
        leg=leg,
        ts=run.context.current_utc_datetime,
        ts_wall_created=run.request.ts_wall_created if timed else None,
        audit=tuple(run.take_pending()) if first else (),
        trace=run.request.trace,
        reference_price=run.intent.reference_prices.get(leg.symbol),
    ).to_dict()


def _submit(run: _Run, legs: list[Any], *, timed: bool = False) -> Steps:
    """Send ``legs`` together."""
    context = run.context
    tasks = [
        context.call_activity_with_retry(
            "submit_order",
            retry_options(),
            _leg_request(run, leg, timed=timed, first=index == 0),
        )
        for index, leg in enumerate(legs)
    ]
    outcomes = yield context.task_all(tasks)
    yield from apply_fills(context, run.account, run.tracker.update(outcomes))
    run.publish()


def _submit_bracket(run: _Run, *, timed: bool) -> Steps:
    """A bracket's entry, with its exits as one order where the broker takes them."""
    intent = run.intent
    exits = [leg for leg in intent.legs if leg.name in (TAKE_PROFIT, STOP_LOSS)]
    placed = yield run.context.call_activity_with_retry(
        "submit_bracket",
        retry_options(),
        {
            "entry": _leg_request(run, intent.leg(ENTRY), timed=timed, first=True),
            "exits": [leg.to_dict() for leg in exits],
        },
    )
    if placed["native"]:
        run.native_exits = [run.cid(leg.name) for leg in exits]
    yield from apply_fills(run.context, run.account, run.tracker.update(placed["orders"]))
    run.publish()


def _entry(run: _Run) -> Steps:
    """Submit the entry legs together and follow them; at the deadline or on a cancel
    request what is still open is cancelled. Returns how the entry phase ended."""
    context = run.context
    legs = list(run.intent.entry_legs)
    ids = [run.cid(leg.name) for leg in legs]
    run.publish("entry")
    timed = not run.request.requires_approval
    if run.intent.kind is PlanKind.BRACKET and run.request.native_brackets:
        yield from _submit_bracket(run, timed=timed)
    else:
        yield from _submit(run, legs, timed=timed)
    seconds = run.intent.unwind_after_s or run.request.entry_timeout_s
    ended = yield from run.follow(ids, seconds)
    if ended != "done":
        yield from cancel(context, run.account, run.tracker, ids)
        run.publish()
    if run.native_exits and run.tracker.status(ids[0]) != "filled":
        # The broker drops exits whose entry did not fill in full; make sure of it.
        yield from cancel(context, run.account, run.tracker, run.native_exits)
        run.publish()
    return ended


def _exits(run: _Run, filled: Decimal) -> Steps:
    """Protect the filled entry with its take-profit and stop-loss (or the one it has);
    when one fills the other is cancelled (by the broker for a native bracket or OCO,
    here otherwise). A native bracket's exits are already there when the entry filled in
    full; after a partial fill, exits for what filled stand in for them."""
    context = run.context
    whole = run.tracker.status(run.cid(ENTRY)) == "filled"
    legs = exit_legs(run.intent, filled, partial=bool(run.native_exits) and not whole)
    ids = [run.cid(leg.name) for leg in legs]
    run.publish("exits")
    if not (run.native_exits and whole):
        placed = yield context.call_activity_with_retry(
            "submit_exits",
            retry_options(),
            {
                "intent_id": run.intent.intent_id,
                "exits": [leg.to_dict() for leg in legs],
                "ts": now_str(context),
            },
        )
        yield from apply_fills(context, run.account, run.tracker.update(placed["orders"]))
        run.publish()

    def one_filled(tracker: Tracker) -> bool:
        return any(tracker.status(cid) == "filled" for cid in ids)

    # Not cancellable: a cancel request must not strip a filled position of its stop.
    ended = yield from run.follow(
        ids, run.request.exit_timeout_s, done=one_filled, cancellable=False
    )
    yield from cancel(context, run.account, run.tracker, ids)
    run.publish()
    return ended


def _unwind(run: _Run) -> Steps:
    """A pair that did not fill on both legs: close what did fill, at market."""
    legs = []
    for leg in run.intent.entry_legs:
        filled = Decimal(run.tracker.filled(run.cid(leg.name)))
        if filled > 0:
            legs.append(unwind_leg(leg, filled))
    if not legs:
        return "nothing_filled"
    run.publish("unwinding")
    yield from _submit(run, legs)
    ids = [run.cid(leg.name) for leg in legs]
    ended = yield from run.follow(ids, run.request.entry_timeout_s, cancellable=False)
    return "unwound" if ended == "done" else "unwind_incomplete"


def run_trade(context: Ctx) -> Steps:
    request = TradeRequest.from_dict(context.get_input())
    run = _Run(context, request)
    intent = run.intent
    run.publish()
    run.note(AuditKind.INTENT, "received", request.to_dict())
    if request.requires_approval:
        verdict = yield from _approval(run)
        if not verdict["approved"]:
            outcome = "canceled" if verdict["by"] == "cancel" else "rejected"
            return (yield from run.finish(outcome, {"approval": verdict}))

    run.publish("risk_check")
    decision = yield context.call_entity(
        risk_entity(run.account), "reserve", request.reserve_payload()
    )
    run.note(AuditKind.RISK_DECISION, "reserve", decision)
    if not decision.get("approved"):
        return (yield from run.finish("denied", {"reasons": decision.get("reasons") or []}))

    ended = yield from _entry(run)
    entry_ids = [run.cid(leg.name) for leg in intent.entry_legs]
    filled = {cid: Decimal(run.tracker.filled(cid)) for cid in entry_ids}
    complete = all(run.tracker.status(cid) == "filled" for cid in entry_ids)
    yield context.call_entity(risk_entity(run.account), "release", {"intent_id": intent.intent_id})

    detail: dict[str, Any] = {"entry": ended, "filled": {k: dec_str(v) for k, v in filled.items()}}
    if intent.kind is PlanKind.PAIR and not complete and any(filled.values()):
        unwound = yield from _unwind(run)
        return (yield from run.finish(unwound, detail))
    if intent.kind is PlanKind.BRACKET and filled[entry_ids[0]] > 0:
        detail["exits"] = yield from _exits(run, filled[entry_ids[0]])
        return (yield from run.finish("completed", detail))
    if complete:
        return (yield from run.finish("completed", detail))
    if any(filled.values()):
        return (yield from run.finish("partially_filled", detail))
    if all(run.tracker.status(cid) == "rejected" for cid in entry_ids):
        reasons = [run.tracker.orders[cid].get("reject_reason") for cid in entry_ids]
        return (yield from run.finish("rejected", {**detail, "reasons": reasons}))
    # Cancelled on request, or at the broker (a flatten, the broker itself) before the
    # deadline; otherwise the deadline (or the broker's day) ran out.
    cancelled = ended == "cancel" or (
        ended == "done" and all(run.tracker.status(cid) == "canceled" for cid in entry_ids)
    )
    return (yield from run.finish("canceled" if cancelled else "expired", detail))


def _fail(context: Ctx, error: Exception) -> Steps:
    """What a trade that cannot go on owes the desk: nothing left open at the broker, no
    exposure still reserved, and a record of why. Each step is best effort: the failure
    may be the broker's or the books' own."""
    try:
        request = TradeRequest.from_dict(context.get_input())
    except Exception:
        return  # an input that never parsed reserved and sent nothing
    intent = request.intent
    names = [leg.name for leg in intent.legs]
    names += [f"{n}{PARTIAL_EXITS}" for n in names if n in (TAKE_PROFIT, STOP_LOSS)]
    names += [unwind_leg(leg, Decimal(1)).name for leg in intent.entry_legs]
    ids = [f"{intent.intent_id}:{name}" for name in names]
    audit_failure = entry(
        AuditKind.INTENT,
        f"{intent.intent_id}:failed",
        {"error": str(error)[:500]},
        {"intent_id": intent.intent_id},
    )

    def cancel_what_is_left() -> Steps:
        outcomes = yield context.call_activity(
            "cancel_orders", {"client_order_ids": ids, "ts": now_str(context)}
        )
        # What the broker filled before the cancels took effect is on the books now, and
        # its exposure belongs to the risk entity too (which skips fills it has applied).
        # Each fill on its own: one the entity cannot take does not hold back the others.
        for fill in Tracker().update(outcomes):
            try:
                yield from apply_fills(context, intent.account, [fill])
            except Exception:
                continue

    def release() -> Steps:
        yield context.call_entity(
            risk_entity(intent.account), "release", {"intent_id": intent.intent_id}
        )

    def record() -> Steps:
        yield context.call_activity(
            "record_audit", {"ts": now_str(context), "entries": [audit_failure]}
        )

    for step in (cancel_what_is_left, release, record):
        try:
            yield from step()
        except Exception:
            continue


@bp.orchestration_trigger(context_name="context")
def trade(context: Ctx) -> Steps:
    try:
        return (yield from run_trade(context))
    except Exception as error:
        yield from _fail(context, error)
        raise
