"""Order intents, their legs and plans, and the order state machine.

An intent's id is derived from what caused it (source, account, symbols, signal time and
target), so a replayed signal yields the same intent, the same orchestration instance and
the same ``client_order_id`` per leg: ``<intent_id>:<leg>``, which the broker refuses to
accept twice.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from domain.errors import IllegalTransition, ValidationError
from domain.fills import Fill
from domain.ids import stable_id
from domain.model import OrderType, Side, TimeInForce, parse_symbol
from domain.risk import ExposureLeg, ReserveRequest
from domain.serde import (
    dec_str,
    parse_decimal,
    parse_enum,
    parse_positive_decimal,
    parse_ts,
    require,
    require_str,
    ts_str,
)

MAX_CLIENT_ORDER_ID = 128  # Alpaca's limit
_ID_UNSAFE = frozenset("/\\#?: ")  # what an intent id cannot hold (a leg's id adds ':')
_LEG_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


def _optional_price(data: Mapping[str, Any], name: str) -> Decimal | None:
    value = data.get(name)
    return None if value is None else parse_positive_decimal(value, name)


# Whether each order type needs a (limit price, stop price).
_PRICES_NEEDED = {
    OrderType.MARKET: (False, False),
    OrderType.LIMIT: (True, False),
    OrderType.STOP: (False, True),
    OrderType.STOP_LIMIT: (True, True),
    OrderType.TRAILING_STOP: (False, False),
}


@dataclass(frozen=True, slots=True)
class OrderLeg:
    name: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_percent: Decimal | None = None
    trail_price: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= _LEG_NAME_CHARS or len(self.name) > 16:
            raise ValidationError("name", "a leg name is 1-16 of a-z, 0-9, '_' and '-'")
        parse_symbol(self.symbol)
        if self.quantity <= 0:
            raise ValidationError("quantity", "must be greater than zero")
        needs = _PRICES_NEEDED[self.order_type]
        for present, name in ((self.limit_price, "limit_price"), (self.stop_price, "stop_price")):
            wanted = needs[0] if name == "limit_price" else needs[1]
            if wanted and present is None:
                raise ValidationError(name, f"is required for a {self.order_type.value} order")
            if not wanted and present is not None:
                raise ValidationError(name, f"is not used by a {self.order_type.value} order")
            if present is not None and present <= 0:
                raise ValidationError(name, "must be greater than zero")
        trails = [t for t in (self.trail_percent, self.trail_price) if t is not None]
        if self.order_type is OrderType.TRAILING_STOP:
            if len(trails) != 1:
                raise ValidationError(
                    "trail_percent",
                    "a trailing stop needs exactly one of trail_percent and trail_price",
                )
            if trails[0] <= 0:
                raise ValidationError("trail_percent", "must be greater than zero")
        elif trails:
            raise ValidationError("trail_percent", "is only used by a trailing stop")

    def client_order_id(self, intent_id: str) -> str:
        return f"{intent_id}:{self.name}"

    @property
    def worst_price(self) -> Decimal | None:
        """The price risk should assume: the limit, else the stop, else none known."""
        return self.limit_price or self.stop_price

    def to_dict(self) -> dict[str, Any]:
        def dec(value: Decimal | None) -> str | None:
            return None if value is None else dec_str(value)

        return {
            "name": self.name,
            "symbol": self.symbol,
            "side": self.side.value,
            "quantity": dec_str(self.quantity),
            "order_type": self.order_type.value,
            "time_in_force": self.time_in_force.value,
            "limit_price": dec(self.limit_price),
            "stop_price": dec(self.stop_price),
            "trail_percent": dec(self.trail_percent),
            "trail_price": dec(self.trail_price),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            name=require_str(data, "name", max_len=16),
            symbol=parse_symbol(require(data, "symbol")),
            side=parse_enum(Side, require(data, "side"), "side"),
            quantity=parse_positive_decimal(require(data, "quantity"), "quantity"),
            order_type=parse_enum(OrderType, data.get("order_type", "market"), "order_type"),
            time_in_force=parse_enum(
                TimeInForce, data.get("time_in_force", "day"), "time_in_force"
            ),
            limit_price=_optional_price(data, "limit_price"),
            stop_price=_optional_price(data, "stop_price"),
            trail_percent=_optional_price(data, "trail_percent"),
            trail_price=_optional_price(data, "trail_price"),
        )


class PlanKind(StrEnum):
    SINGLE = "single"
    BRACKET = "bracket"
    PAIR = "pair"


# The leg names each plan may have, in order.
_PLAN_LEGS = {
    PlanKind.SINGLE: [["entry"]],
    PlanKind.BRACKET: [["entry", "tp", "sl"], ["entry", "tp"], ["entry", "sl"]],
    PlanKind.PAIR: [["a", "b"]],
}


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What to trade and how: one plan of legs, for one account.

    ``single``: one ``entry`` leg. ``bracket``: ``entry``, then ``tp`` (take-profit limit)
    and ``sl`` (stop-loss) on the opposite side for the same quantity, or one of the two
    (one-triggers-other: the exit is placed once the entry fills). ``pair``: legs ``a``
    and ``b`` entered together; if one fails or is not filled by ``unwind_after_s``, the
    filled quantity of the other is closed at market.
    """

    intent_id: str
    account: str
    source: str
    kind: PlanKind
    legs: tuple[OrderLeg, ...]
    ts_created: datetime
    reference_prices: Mapping[str, Decimal] = field(default_factory=dict)
    signal_id: str | None = None
    unwind_after_s: int | None = None

    def __post_init__(self) -> None:
        if self.ts_created.tzinfo is None:
            raise ValidationError("ts_created", "must be timezone-aware")
        names = [leg.name for leg in self.legs]
        expected = _PLAN_LEGS[self.kind]
        if names not in expected:
            shown = " or ".join(str(option) for option in expected)
            raise ValidationError("legs", f"a {self.kind.value} plan has legs {shown}")
        longest = max(len(leg.client_order_id(self.intent_id)) for leg in self.legs)
        if longest > MAX_CLIENT_ORDER_ID or not _ID_UNSAFE.isdisjoint(self.intent_id):
            raise ValidationError("intent_id", "too long, or holds a character ids cannot")
        if self.kind is PlanKind.BRACKET:
            self._check_bracket()
        if self.kind is PlanKind.PAIR and self.legs[0].symbol == self.legs[1].symbol:
            raise ValidationError("legs", "the two legs of a pair trade different symbols")

    def _check_bracket(self) -> None:
        entry, *exits = self.legs
        if any(leg.side is entry.side for leg in exits):
            raise ValidationError("legs", "take-profit and stop-loss are on the exit side")
        if any(leg.symbol != entry.symbol for leg in exits):
            raise ValidationError("legs", "a bracket trades one symbol")
        if any(leg.quantity != entry.quantity for leg in exits):
            raise ValidationError("legs", "exit legs close the entry quantity")
        tp = next((leg for leg in exits if leg.name == "tp"), None)
        sl = next((leg for leg in exits if leg.name == "sl"), None)
        if tp is not None and tp.order_type is not OrderType.LIMIT:
            raise ValidationError("tp", "the take-profit is a limit order")
        stops = (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)
        if sl is not None and sl.order_type not in stops:
            raise ValidationError("sl", "the stop-loss is a stop, stop-limit or trailing stop")
        reference = entry.limit_price or self.reference_prices.get(entry.symbol)
        if reference is None:
            return
        up = entry.side is Side.BUY
        take = None if tp is None else tp.limit_price
        if take is not None and (take <= reference if up else take >= reference):
            word = "above" if up else "below"
            raise ValidationError("tp", f"the take-profit is {word} the entry")
        stop = None if sl is None else sl.stop_price
        if stop is not None and (stop >= reference if up else stop <= reference):
            word = "below" if up else "above"
            raise ValidationError("sl", f"the stop-loss is {word} the entry")

    @staticmethod
    def derive_id(
        source: str, account: str, symbols: list[str], ts_signal: datetime, target: Any
    ) -> str:
        return OrderIntent.derive_id_at(source, account, symbols, ts_str(ts_signal), target)

    @staticmethod
    def derive_id_at(
        source: str, account: str, symbols: list[str], ts_signal_text: str, target: Any
    ) -> str:
        """``derive_id`` with the signal time already given as ``ts_str(ts_signal)``."""
        return stable_id("int", source, account, symbols, ts_signal_text, target)

    @property
    def symbols(self) -> list[str]:
        return sorted({leg.symbol for leg in self.legs})

    def leg(self, name: str) -> OrderLeg:
        for leg in self.legs:
            if leg.name == name:
                return leg
        raise KeyError(name)

    @property
    def entry_legs(self) -> tuple[OrderLeg, ...]:
        return tuple(leg for leg in self.legs if leg.name in ("entry", "a", "b"))

    def reserve_request(
        self, last_trades: Mapping[str, Decimal] | None = None, *, no_short: bool = False
    ) -> ReserveRequest:
        """What risk must reserve: the entry legs at their worst known price; ``no_short``
        for an intent of a strategy that never sells short."""
        legs = []
        for leg in self.entry_legs:
            price = leg.worst_price or self.reference_prices.get(leg.symbol)
            if price is None:
                raise ValidationError("reference_prices", f"no price to size {leg.symbol}")
            last = (last_trades or {}).get(leg.symbol) or self.reference_prices.get(leg.symbol)
            legs.append(ExposureLeg(leg.symbol, leg.side, leg.quantity, price, last))
        return ReserveRequest(self.intent_id, tuple(legs), self.ts_created, no_short)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "intent_id": self.intent_id,
            "account": self.account,
            "source": self.source,
            "kind": self.kind.value,
            "legs": [leg.to_dict() for leg in self.legs],
            "ts_created": ts_str(self.ts_created),
            "reference_prices": {k: dec_str(v) for k, v in self.reference_prices.items()},
            "signal_id": self.signal_id,
            "unwind_after_s": self.unwind_after_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        legs = data.get("legs")
        if not isinstance(legs, list) or not legs:
            raise ValidationError("legs", "must be a non-empty list")
        unwind = data.get("unwind_after_s")
        if unwind is not None and (not isinstance(unwind, int) or unwind <= 0):
            raise ValidationError("unwind_after_s", "must be a positive number of seconds")
        prices = data.get("reference_prices") or {}
        if not isinstance(prices, Mapping):
            raise ValidationError("reference_prices", "must be an object")
        return cls(
            intent_id=require_str(data, "intent_id", max_len=100),
            account=require_str(data, "account"),
            source=require_str(data, "source"),
            kind=parse_enum(PlanKind, require(data, "kind"), "kind"),
            legs=tuple(OrderLeg.from_dict(leg) for leg in legs),
            ts_created=parse_ts(require(data, "ts_created"), "ts_created"),
            reference_prices={
                parse_symbol(k, "reference_prices"): parse_positive_decimal(v, "reference_prices")
                for k, v in prices.items()
            },
            signal_id=data.get("signal_id"),
            unwind_after_s=unwind,
        )


class OrderStatus(StrEnum):
    """Alpaca's order statuses."""

    PENDING_NEW = "pending_new"
    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    DONE_FOR_DAY = "done_for_day"
    PENDING_CANCEL = "pending_cancel"
    CANCELED = "canceled"
    PENDING_REPLACE = "pending_replace"
    REPLACED = "replaced"
    REJECTED = "rejected"
    EXPIRED = "expired"
    STOPPED = "stopped"
    SUSPENDED = "suspended"
    CALCULATED = "calculated"
    HELD = "held"


S = OrderStatus

# Which status may follow which. A status not listed as a key accepts nothing: it is final.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_NEW: frozenset(
        {S.NEW, S.ACCEPTED, S.REJECTED, S.CANCELED, S.FILLED, S.PARTIALLY_FILLED, S.HELD}
    ),
    S.HELD: frozenset({S.NEW, S.ACCEPTED, S.CANCELED, S.EXPIRED, S.FILLED, S.PARTIALLY_FILLED}),
    S.ACCEPTED: frozenset(
        {
            S.NEW,
            S.REJECTED,
            S.CANCELED,
            S.FILLED,
            S.PARTIALLY_FILLED,
            S.PENDING_CANCEL,
            S.PENDING_REPLACE,
            S.EXPIRED,
            S.SUSPENDED,
        }
    ),
    S.NEW: frozenset(
        {
            S.PARTIALLY_FILLED,
            S.FILLED,
            S.PENDING_CANCEL,
            S.CANCELED,
            S.PENDING_REPLACE,
            S.REPLACED,
            S.EXPIRED,
            S.REJECTED,
            S.DONE_FOR_DAY,
            S.STOPPED,
            S.SUSPENDED,
            S.CALCULATED,
        }
    ),
    S.PARTIALLY_FILLED: frozenset(
        {
            S.PARTIALLY_FILLED,
            S.FILLED,
            S.PENDING_CANCEL,
            S.CANCELED,
            S.PENDING_REPLACE,
            S.REPLACED,
            S.EXPIRED,
            S.DONE_FOR_DAY,
            S.STOPPED,
            S.CALCULATED,
        }
    ),
    S.PENDING_CANCEL: frozenset({S.CANCELED, S.FILLED, S.PARTIALLY_FILLED, S.NEW}),
    S.PENDING_REPLACE: frozenset({S.REPLACED, S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED}),
    S.STOPPED: frozenset({S.FILLED, S.PARTIALLY_FILLED, S.CANCELED}),
    S.SUSPENDED: frozenset({S.NEW, S.ACCEPTED, S.CANCELED, S.EXPIRED}),
    S.CALCULATED: frozenset({S.FILLED, S.DONE_FOR_DAY}),
}
TERMINAL: frozenset[OrderStatus] = frozenset(set(OrderStatus) - set(TRANSITIONS))


@dataclass(frozen=True, slots=True)
class Order:
    """The books' view of one leg's order at the broker."""

    client_order_id: str
    intent_id: str
    leg: str
    symbol: str
    side: Side
    quantity: Decimal
    status: OrderStatus = OrderStatus.PENDING_NEW
    broker_order_id: str | None = None
    filled_qty: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    executions: frozenset[str] = frozenset()
    ts_updated: datetime | None = None
    version: int = 0
    account: str | None = None
    ts_created: datetime | None = None
    # The price the order was decided at (the signal's, or a manual order's reference):
    # what its fills are measured against for slippage.
    reference_price: Decimal | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def transition(self, status: OrderStatus, *, ts: datetime) -> Order:
        """The order in ``status``; a change the table does not allow raises. Reporting
        the current status again is accepted and changes nothing but the time."""
        if status is self.status and status is not OrderStatus.PARTIALLY_FILLED:
            return replace(self, ts_updated=ts)
        if status not in TRANSITIONS.get(self.status, frozenset()):
            raise IllegalTransition(
                f"order {self.client_order_id}: {self.status.value} -> {status.value} "
                "is not allowed"
            )
        if status is OrderStatus.FILLED and self.filled_qty != self.quantity:
            raise IllegalTransition(
                f"order {self.client_order_id}: filled with {dec_str(self.filled_qty)} of "
                f"{dec_str(self.quantity)}"
            )
        return replace(self, status=status, ts_updated=ts, version=self.version + 1)

    def apply_fill(self, fill: Fill) -> Order:
        """Add an execution (once, by id): filled quantity and the volume-weighted average
        price move, and the status becomes partially filled or filled."""
        if fill.execution_id in self.executions:
            return self
        if fill.client_order_id != self.client_order_id or fill.side is not self.side:
            raise ValidationError("fill", "belongs to another order")
        filled = self.filled_qty + fill.quantity
        if filled > self.quantity:
            raise ValidationError("quantity", "fills exceed the order quantity")
        previous = (self.avg_fill_price or Decimal(0)) * self.filled_qty
        average = (previous + fill.quantity * fill.price) / filled
        updated = replace(
            self,
            filled_qty=filled,
            avg_fill_price=average,
            executions=self.executions | {fill.execution_id},
        )
        target = OrderStatus.FILLED if filled == self.quantity else OrderStatus.PARTIALLY_FILLED
        if self.is_terminal:
            # An execution the broker made before the order ended (a cancel that crossed a
            # fill): the books take it, and the order stays ended, filled if it all was.
            final = OrderStatus.FILLED if filled == self.quantity else self.status
            return replace(
                updated, status=final, ts_updated=fill.ts_filled, version=self.version + 1
            )
        return updated.transition(target, ts=fill.ts_filled)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "client_order_id": self.client_order_id,
            "intent_id": self.intent_id,
            "leg": self.leg,
            "symbol": self.symbol,
            "side": self.side.value,
            "quantity": dec_str(self.quantity),
            "status": self.status.value,
            "broker_order_id": self.broker_order_id,
            "filled_qty": dec_str(self.filled_qty),
            "avg_fill_price": None if self.avg_fill_price is None else dec_str(self.avg_fill_price),
            "executions": sorted(self.executions),
            "ts_updated": None if self.ts_updated is None else ts_str(self.ts_updated),
            "version": self.version,
            "account": self.account,
            "ts_created": None if self.ts_created is None else ts_str(self.ts_created),
            "reference_price": (
                None if self.reference_price is None else dec_str(self.reference_price)
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        avg = data.get("avg_fill_price")
        ts = data.get("ts_updated")
        created = data.get("ts_created")
        reference = data.get("reference_price")
        return cls(
            client_order_id=require_str(data, "client_order_id", max_len=MAX_CLIENT_ORDER_ID),
            intent_id=require_str(data, "intent_id"),
            leg=require_str(data, "leg"),
            symbol=parse_symbol(require(data, "symbol")),
            side=parse_enum(Side, require(data, "side"), "side"),
            quantity=parse_positive_decimal(require(data, "quantity"), "quantity"),
            status=parse_enum(OrderStatus, data.get("status", "pending_new"), "status"),
            broker_order_id=data.get("broker_order_id"),
            filled_qty=parse_decimal(data.get("filled_qty", "0"), "filled_qty"),
            avg_fill_price=None if avg is None else parse_decimal(avg, "avg_fill_price"),
            executions=frozenset(str(e) for e in data.get("executions") or []),
            ts_updated=None if ts is None else parse_ts(ts, "ts_updated"),
            version=int(data.get("version", 0)),
            account=data.get("account"),
            ts_created=None if created is None else parse_ts(created, "ts_created"),
            reference_price=(
                None if reference is None else parse_positive_decimal(reference, "reference_price")
            ),
        )

    @classmethod
    def for_leg(
        cls, intent: OrderIntent, leg: OrderLeg, *, ts_created: datetime | None = None
    ) -> Self:
        return cls(
            client_order_id=leg.client_order_id(intent.intent_id),
            intent_id=intent.intent_id,
            leg=leg.name,
            symbol=leg.symbol,
            side=leg.side,
            quantity=leg.quantity,
            account=intent.account,
            ts_created=ts_created,
        )


@dataclass(frozen=True, slots=True)
class OrderPage:
    """One page of an account's order history; ``continuation`` asks for the next (None:
    this was the last)."""

    orders: tuple[Order, ...]
    continuation: str | None


def encode_continuation(order: Order) -> str:
    """An opaque token for "after this order" in (creation time, client order id) order."""
    created = "" if order.ts_created is None else ts_str(order.ts_created)
    raw = json.dumps([created, order.client_order_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def page_after(continuation: str | None) -> tuple[str, str]:
    """(creation time, client order id) a page starts after; the start for None."""
    return ("", "") if continuation is None else decode_continuation(continuation)


def page_of(orders: list[Order], limit: int) -> OrderPage:
    """``limit`` orders from a query that asked for ``limit + 1``: a continuation when the
    extra one came back."""
    if len(orders) > limit:
        return OrderPage(tuple(orders[:limit]), encode_continuation(orders[limit - 1]))
    return OrderPage(tuple(orders), None)


def decode_continuation(token: str) -> tuple[str, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        created, cid = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ValidationError("continuation", "not a token this API gave out") from None
    if not isinstance(created, str) or not isinstance(cid, str):
        raise ValidationError("continuation", "not a token this API gave out")
    return created, cid
