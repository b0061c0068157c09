"""Executing an intent: the trade orchestration's input, the broker's view of an order, and
how the books follow the broker.

The books learn about executions from the broker's cumulative view of each order (filled
quantity and average price), whether it arrives as a trade update or from polling. Each
increase of the cumulative quantity becomes one ``Fill`` whose id is
``<client_order_id>@<cumulative quantity>``, so the update and the poll that both report
the same state produce the same fill, and the books apply it once.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Self

from domain.errors import IllegalTransition, ValidationError
from domain.fills import Fill
from domain.model import Side
from domain.orders import Order, OrderIntent, OrderLeg, OrderStatus, PlanKind
from domain.risk import RiskLimits
from domain.serde import dec_str, parse_decimal, parse_ts, require, require_str, ts_str

ZERO = Decimal(0)
_PRICE_CONTEXT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)
_PRICE_QUANTUM = Decimal("0.000001")

OPEN_STATUSES = frozenset(
    {
        OrderStatus.PENDING_NEW,
        OrderStatus.NEW,
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.HELD,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.PENDING_REPLACE,
        OrderStatus.SUSPENDED,
        OrderStatus.STOPPED,
        OrderStatus.CALCULATED,
    }
)


def _status(value: object) -> OrderStatus:
    try:
        return OrderStatus(str(value))
    except ValueError:
        raise ValidationError("status", f"not an order status: {str(value)[:40]!r}") from None


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """The broker's view of one order, as its adapter reports it."""

    broker_order_id: str
    client_order_id: str
    status: str
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    symbol: str | None = None
    side: str | None = None
    quantity: Decimal | None = None
    reject_reason: str | None = None

    @property
    def order_status(self) -> OrderStatus:
        return _status(self.status)

    @property
    def is_open(self) -> bool:
        return self.order_status in OPEN_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return {
            "broker_order_id": self.broker_order_id,
            "client_order_id": self.client_order_id,
            "status": self.status,
            "filled_qty": dec_str(self.filled_qty),
            "avg_fill_price": None if self.avg_fill_price is None else dec_str(self.avg_fill_price),
            "symbol": self.symbol,
            "side": self.side,
            "quantity": None if self.quantity is None else dec_str(self.quantity),
            "reject_reason": self.reject_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        avg = data.get("avg_fill_price")
        quantity = data.get("quantity")
        return cls(
            broker_order_id=require_str(data, "broker_order_id"),
            client_order_id=require_str(data, "client_order_id"),
            status=_status(require(data, "status")).value,
            filled_qty=parse_decimal(data.get("filled_qty", "0"), "filled_qty"),
            avg_fill_price=None if avg is None else parse_decimal(avg, "avg_fill_price"),
            symbol=data.get("symbol"),
            side=data.get("side"),
            quantity=None if quantity is None else parse_decimal(quantity, "quantity"),
            reject_reason=data.get("reject_reason"),
        )


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution as the broker's activity record reports it: its own id, the order it
    belongs to and the order's cumulative filled quantity after it."""

    execution_id: str
    broker_order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    cum_qty: Decimal
    ts_executed: datetime

    def __post_init__(self) -> None:
        if self.quantity <= 0 or self.price <= 0:
            raise ValidationError("execution", "quantity and price must be positive")
        if self.cum_qty < self.quantity:
            raise ValidationError("cum_qty", "is below the execution's own quantity")

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "broker_order_id": self.broker_order_id,
            "client_order_id": self.client_order_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": dec_str(self.quantity),
            "price": dec_str(self.price),
            "cum_qty": dec_str(self.cum_qty),
            "ts_executed": ts_str(self.ts_executed),
        }


def catch_up_snapshots(order: Order, executions: list[Execution]) -> list[BrokerOrder]:
    """The snapshots that bring ``order`` up to the executions the books missed, one per
    execution, oldest first: applied in turn (``fill_from_snapshot``), each books exactly
    that execution's quantity at its price, under the same ``<cid>@<cum qty>`` key the
    polling path uses, so neither path can count an execution the other already booked.
    Executions the order already covers (cumulative quantity at or below what the books
    hold, however the books learnt of it) produce nothing."""
    mine = sorted(
        (e for e in executions if e.client_order_id == order.client_order_id),
        key=lambda e: e.cum_qty,
    )
    booked = order.filled_qty
    notional = (order.avg_fill_price or ZERO) * booked
    snapshots = []
    for execution in mine:
        if execution.cum_qty <= booked:
            continue
        if execution.cum_qty > order.quantity:
            raise ValidationError("cum_qty", f"{execution.execution_id} fills past the order")
        notional += (execution.cum_qty - booked) * execution.price
        booked = execution.cum_qty
        if booked == order.quantity:
            status = OrderStatus.FILLED
        elif order.is_terminal:  # cancelled after part of it filled: it stays cancelled
            status = order.status
        else:
            status = OrderStatus.PARTIALLY_FILLED
        snapshots.append(
            BrokerOrder(
                broker_order_id=execution.broker_order_id,
                client_order_id=order.client_order_id,
                status=status.value,
                filled_qty=booked,
                avg_fill_price=_PRICE_CONTEXT.divide(notional, booked),
                symbol=order.symbol,
                side=order.side.value,
                quantity=order.quantity,
            )
        )
    return snapshots


def fill_from_snapshot(
    order: Order, snapshot: BrokerOrder, *, account: str, ts: datetime
) -> Fill | None:
    """The execution the books have not seen yet, if the broker reports more filled
    quantity than the order holds. Its price makes the order's average equal the broker's."""
    if snapshot.client_order_id != order.client_order_id:
        raise ValidationError("client_order_id", "the snapshot belongs to another order")
    cumulative = snapshot.filled_qty
    if cumulative <= order.filled_qty:
        return None
    if cumulative > order.quantity:
        raise ValidationError("filled_qty", "the broker reports more than the order quantity")
    if snapshot.avg_fill_price is None or snapshot.avg_fill_price <= 0:
        raise ValidationError("avg_fill_price", "a filled order needs an average price")
    delta = cumulative - order.filled_qty
    before = (order.avg_fill_price or ZERO) * order.filled_qty
    price = _PRICE_CONTEXT.divide(snapshot.avg_fill_price * cumulative - before, delta)
    if price <= 0:
        # Rounding at the broker can make the implied price of a tiny increment absurd;
        # the broker's average is the best estimate then.
        price = snapshot.avg_fill_price
    return Fill(
        # One spelling per quantity ("10", never "10.0"): the key names the execution.
        execution_id=f"{order.client_order_id}@{dec_str(cumulative.normalize())}",
        account=account,
        symbol=order.symbol,
        side=order.side,
        quantity=delta,
        price=price.quantize(_PRICE_QUANTUM).normalize(),
        ts_filled=ts,
        client_order_id=order.client_order_id,
        order_id=snapshot.broker_order_id,
    )


def follow_status(order: Order, snapshot: BrokerOrder, *, ts: datetime) -> Order:
    """The order moved to the broker's status. The broker is the authority: a change the
    state machine would not allow is still taken (the caller audits it), except that a
    final status is only left for a snapshot that shows more filled: anything else is a
    stale read (an older answer arriving late) and changes nothing."""
    target = snapshot.order_status
    if snapshot.broker_order_id and order.broker_order_id != snapshot.broker_order_id:
        order = replace(order, broker_order_id=snapshot.broker_order_id)
    if target is order.status:
        return order
    if order.is_terminal and snapshot.filled_qty <= order.filled_qty:
        return order
    try:
        return order.transition(target, ts=ts)
    except IllegalTransition:
        return replace(order, status=target, ts_updated=ts, version=order.version + 1)


@dataclass(frozen=True, slots=True)
class TradeRequest:
    """The trade orchestration's input: the intent and how to run it.

    ``entry_timeout_s``: entry orders still open after this are cancelled (and a pair's
    filled leg unwound). ``exit_timeout_s``: a bracket's exits still open after this are
    cancelled. ``poll_interval_s``: how often the broker is asked when no update arrives.
    ``ts_wall_created``: when the request was made, on the wall clock, for latency figures.
    ``initial_limits``: the configured limits, for an account that has never been given any.
    ``trace``: the trace context of the work that made the request (W3C ``traceparent``),
    so the orders it leads to join that trace. ``native_brackets``: a bracket's entry may
    go with its exits as one order; requests made before that existed lack the field and
    replay as they ran (entry first, exits after). ``long_only``: the intent's strategy
    never sells short, so the risk check refuses a sell that would.
    """

    intent: OrderIntent
    requires_approval: bool = False
    approval_timeout_s: int = 300
    entry_timeout_s: int = 60
    exit_timeout_s: int = 23_400
    poll_interval_s: int = 2
    ts_wall_created: float | None = None
    initial_limits: RiskLimits | None = None
    trace: Mapping[str, str] | None = None
    native_brackets: bool = True
    long_only: bool = False

    def __post_init__(self) -> None:
        for name in ("approval_timeout_s", "entry_timeout_s", "exit_timeout_s", "poll_interval_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValidationError(name, "must be a positive whole number of seconds")

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "intent": self.intent.to_dict(),
            "requires_approval": self.requires_approval,
            "approval_timeout_s": self.approval_timeout_s,
            "entry_timeout_s": self.entry_timeout_s,
            "exit_timeout_s": self.exit_timeout_s,
            "poll_interval_s": self.poll_interval_s,
            "ts_wall_created": self.ts_wall_created,
            "initial_limits": None
            if self.initial_limits is None
            else self.initial_limits.to_dict(),
            "trace": None if self.trace is None else dict(self.trace),
            "native_brackets": self.native_brackets,
            "long_only": self.long_only,
        }

    def reserve_payload(self) -> dict[str, Any]:
        """What the risk entity's ``reserve`` takes for this intent."""
        payload = self.intent.reserve_request(no_short=self.long_only).to_dict()
        if self.initial_limits is not None:
            payload["initial_limits"] = self.initial_limits.to_dict()
        return payload

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        intent = require(data, "intent")
        if not isinstance(intent, Mapping):
            raise ValidationError("intent", "must be an object")
        wall = data.get("ts_wall_created")
        limits = data.get("initial_limits")
        if limits is not None and not isinstance(limits, Mapping):
            raise ValidationError("initial_limits", "must be an object")
        return cls(
            intent=OrderIntent.from_dict(intent),
            requires_approval=bool(data.get("requires_approval", False)),
            approval_timeout_s=data.get("approval_timeout_s", 300),
            entry_timeout_s=data.get("entry_timeout_s", 60),
            exit_timeout_s=data.get("exit_timeout_s", 23_400),
            poll_interval_s=data.get("poll_interval_s", 2),
            ts_wall_created=None if wall is None else float(wall),
            initial_limits=(
                None
                if limits is None
                else RiskLimits.from_dict({k: v for k, v in limits.items() if v is not None})
            ),
            trace=_trace(data.get("trace")),
            native_brackets=data.get("native_brackets") is True,
            long_only=data.get("long_only") is True,
        )


def slippage_bps(side: Side, price: Decimal, reference: Decimal) -> Decimal:
    """How much worse than ``reference`` a fill at ``price`` is, in basis points (negative:
    better). A buy is worse above the reference, a sell below it."""
    if reference <= 0:
        raise ValidationError("reference_price", "must be positive")
    return (price - reference) * side.sign / reference * 10_000


def _trace(value: object) -> dict[str, str] | None:
    """A trace carrier: a few short string headers, or nothing (a bad one is dropped, not
    refused: tracing never stops a trade)."""
    if not isinstance(value, Mapping) or len(value) > 4:
        return None
    carrier = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return carrier if carrier and all(len(v) <= 512 for v in carrier.values()) else None


MISSING = "missing"  # the broker does not know the order (yet)


@dataclass(frozen=True, slots=True)
class LegOutcome:
    """What an order activity reports about one order: the broker's status and filled
    quantity, a rejection's reason, and the fills the books took in this call."""

    client_order_id: str
    status: str
    filled_qty: Decimal = ZERO
    reject_reason: str | None = None
    fills: tuple[Fill, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status == MISSING or _status(self.status) in OPEN_STATUSES

    @classmethod
    def missing(cls, client_order_id: str) -> Self:
        return cls(client_order_id, MISSING)

    @classmethod
    def of(cls, snapshot: BrokerOrder, fills: tuple[Fill, ...]) -> Self:
        return cls(
            snapshot.client_order_id,
            snapshot.status,
            snapshot.filled_qty,
            snapshot.reject_reason,
            fills,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "status": self.status,
            "filled_qty": dec_str(self.filled_qty),
            "reject_reason": self.reject_reason,
            "fills": [fill.to_dict() for fill in self.fills],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        status = require_str(data, "status")
        if status != MISSING:
            _status(status)
        fills = data.get("fills") or []
        if not isinstance(fills, list):
            raise ValidationError("fills", "must be a list")
        return cls(
            client_order_id=require_str(data, "client_order_id"),
            status=status,
            filled_qty=parse_decimal(data.get("filled_qty", "0"), "filled_qty"),
            reject_reason=data.get("reject_reason"),
            fills=tuple(Fill.from_dict(fill) for fill in fills),
        )


@dataclass(frozen=True, slots=True)
class LegRequest:
    """The ``submit_order`` activity's input: one leg of an intent, the orchestration's
    time, and the audit entries it decided on the way (written with the order)."""

    intent_id: str
    leg: OrderLeg
    ts: datetime
    ts_wall_created: float | None = None
    audit: tuple[Mapping[str, Any], ...] = ()
    trace: Mapping[str, str] | None = None
    reference_price: Decimal | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_price": (
                None if self.reference_price is None else dec_str(self.reference_price)
            ),
            "intent_id": self.intent_id,
            "leg": self.leg.to_dict(),
            "ts": ts_str(self.ts),
            "ts_wall_created": self.ts_wall_created,
            "audit": [dict(entry) for entry in self.audit],
            "trace": None if self.trace is None else dict(self.trace),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        leg = require(data, "leg")
        entries = data.get("audit") or []
        if not isinstance(leg, Mapping):
            raise ValidationError("leg", "must be an object")
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise ValidationError("audit", "must be a list of objects")
        wall = data.get("ts_wall_created")
        reference = data.get("reference_price")
        return cls(
            intent_id=require_str(data, "intent_id"),
            leg=OrderLeg.from_dict(leg),
            ts=parse_ts(require(data, "ts"), "ts"),
            ts_wall_created=None if wall is None else float(wall),
            audit=tuple(entries),
            trace=_trace(data.get("trace")),
            reference_price=(
                None if reference is None else parse_decimal(reference, "reference_price")
            ),
        )


TAKE_PROFIT, STOP_LOSS = "tp", "sl"
ENTRY = "entry"
# Exits placed for what a partly filled entry did fill, after a native bracket's own exits
# went with the entry: new orders, so new names (the first ones keep theirs in the books).
PARTIAL_EXITS = "-part"


def exit_legs(
    intent: OrderIntent, filled: Decimal, *, partial: bool = False
) -> tuple[OrderLeg, ...]:
    """A bracket's exits (take-profit, then stop-loss, whichever it has), sized to what the
    entry actually filled; ``partial`` names them as exits replacing a native bracket's."""
    if intent.kind is not PlanKind.BRACKET:
        raise ValidationError("kind", "only a bracket has exit legs")
    if filled <= 0:
        raise ValidationError("filled", "exits protect a filled quantity")
    suffix = PARTIAL_EXITS if partial else ""
    return tuple(
        replace(leg, name=f"{leg.name}{suffix}", quantity=filled)
        for leg in intent.legs
        if leg.name in (TAKE_PROFIT, STOP_LOSS)
    )


def _swap_exit(client_order_id: str, have: str, want: str) -> str | None:
    intent_id, _, leg = client_order_id.rpartition(":")
    if not intent_id or leg not in (have, have + PARTIAL_EXITS):
        return None
    return f"{intent_id}:{want}{leg[len(have) :]}"


def oco_stop_loss_id(take_profit_id: str) -> str | None:
    """The stop-loss client order id paired with a take-profit's in an OCO, for brokers that
    let only the parent (the take-profit) carry the desk's id."""
    return _swap_exit(take_profit_id, TAKE_PROFIT, STOP_LOSS)


def oco_take_profit_id(stop_loss_id: str) -> str | None:
    """The inverse of ``oco_stop_loss_id``."""
    return _swap_exit(stop_loss_id, STOP_LOSS, TAKE_PROFIT)


def bracket_entry_id(exit_id: str) -> str | None:
    """The entry a native bracket's exit hangs from (``<intent>:tp`` -> ``<intent>:entry``),
    for brokers that give the desk's id to the entry alone."""
    intent_id, _, leg = exit_id.rpartition(":")
    return f"{intent_id}:{ENTRY}" if intent_id and leg in (TAKE_PROFIT, STOP_LOSS) else None


def bracket_exit_ids(entry_id: str) -> tuple[str, str] | None:
    """The desk's ids of a native bracket's take-profit and stop-loss, from its entry's."""
    intent_id, _, leg = entry_id.rpartition(":")
    if not intent_id or leg != ENTRY:
        return None
    return f"{intent_id}:{TAKE_PROFIT}", f"{intent_id}:{STOP_LOSS}"


def unwind_leg(leg: OrderLeg, filled: Decimal) -> OrderLeg:
    """A market order closing what ``leg`` filled (a pair whose other leg failed)."""
    return OrderLeg(
        name=f"unwind-{leg.name}",
        symbol=leg.symbol,
        side=leg.side.opposite,
        quantity=filled,
    )


def close_leg(symbol: str, quantity: Decimal, name: str = "close") -> OrderLeg:
    """A market order taking a signed position to flat."""
    side = Side.SELL if quantity > 0 else Side.BUY
    return OrderLeg(name=name, symbol=symbol, side=side, quantity=abs(quantity))
