"""Pre-trade risk: limits, and a pure reducer over the account's risk state.

The risk entity (one per account) feeds every operation through :func:`apply_operation`,
JSON in and JSON out, so decisions for an account are serialised. Decisions are values:
``reserve`` answers approved (with a reservation) or denied with every failing reason.
Limits are inclusive: a value exactly at a limit passes, anything beyond is denied.
Payloads are validated in full before the state changes, because durable entities do not
roll back an operation that raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from domain.errors import ValidationError
from domain.fills import Fill
from domain.model import Side, parse_symbol
from domain.portfolio import Position
from domain.serde import (
    dec_str,
    parse_decimal,
    parse_positive_decimal,
    parse_ts,
    require,
    require_str,
    ts_str,
)

ZERO = Decimal(0)
RATE_WINDOW = timedelta(minutes=1)
# The state's timestamps (the order-rate window, the execution days' times) travel as
# text, read and written again by every operation, mostly the same ones: each is
# converted once.
_TIMES_CACHED = 4096


@functools.lru_cache(maxsize=_TIMES_CACHED)
def _state_time(text: str, field: str) -> datetime:
    return parse_ts(text, field)


@functools.lru_cache(maxsize=_TIMES_CACHED)
def _state_time_text(ts: datetime) -> str:
    return ts_str(ts)


HUNDRED = Decimal(100)


class DenialCode(StrEnum):
    HALTED = "halted"
    SYMBOL_BLOCKED = "symbol_blocked"
    SYMBOL_NOT_ALLOWED = "symbol_not_allowed"
    ORDER_QUANTITY = "order_quantity"
    ORDER_NOTIONAL = "order_notional"
    POSITION_NOTIONAL = "position_notional"
    GROSS_EXPOSURE = "gross_exposure"
    OPEN_ORDERS = "open_orders"
    ORDER_RATE = "order_rate"
    DAILY_LOSS = "daily_loss"
    PRICE_BAND = "price_band"
    SHORT_SALE = "short_sale"


@dataclass(frozen=True, slots=True)
class Denial:
    code: DenialCode
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


def _optional_decimal(data: Mapping[str, Any], name: str) -> Decimal | None:
    value = data.get(name)
    return None if value is None else parse_positive_decimal(value, name)


def _optional_int(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError(name, "must be a non-negative integer")
    return value


def _symbols(data: Mapping[str, Any], name: str) -> frozenset[str] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValidationError(name, "must be a list of symbols")
    return frozenset(parse_symbol(s, name) for s in value)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Every limit is optional (None: not checked). ``daily_loss_limit`` is the largest
    realised loss of the day, as a positive amount; ``price_band_pct`` the largest distance
    of an order price from the last trade, in percent."""

    max_order_quantity: Decimal | None = None
    max_order_notional: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_gross_exposure: Decimal | None = None
    max_open_orders: int | None = None
    max_orders_per_minute: int | None = None
    daily_loss_limit: Decimal | None = None
    price_band_pct: Decimal | None = None
    allowed_symbols: frozenset[str] | None = None
    blocked_symbols: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        def dec(value: Decimal | None) -> str | None:
            return None if value is None else dec_str(value)

        return {
            "max_order_quantity": dec(self.max_order_quantity),
            "max_order_notional": dec(self.max_order_notional),
            "max_position_notional": dec(self.max_position_notional),
            "max_gross_exposure": dec(self.max_gross_exposure),
            "max_open_orders": self.max_open_orders,
            "max_orders_per_minute": self.max_orders_per_minute,
            "daily_loss_limit": dec(self.daily_loss_limit),
            "price_band_pct": dec(self.price_band_pct),
            "allowed_symbols": None
            if self.allowed_symbols is None
            else sorted(self.allowed_symbols),
            "blocked_symbols": sorted(self.blocked_symbols),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if not isinstance(data, Mapping):
            raise ValidationError("limits", "must be an object")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValidationError(sorted(unknown)[0], "is not a risk limit")
        return cls(
            max_order_quantity=_optional_decimal(data, "max_order_quantity"),
            max_order_notional=_optional_decimal(data, "max_order_notional"),
            max_position_notional=_optional_decimal(data, "max_position_notional"),
            max_gross_exposure=_optional_decimal(data, "max_gross_exposure"),
            max_open_orders=_optional_int(data, "max_open_orders"),
            max_orders_per_minute=_optional_int(data, "max_orders_per_minute"),
            daily_loss_limit=_optional_decimal(data, "daily_loss_limit"),
            price_band_pct=_optional_decimal(data, "price_band_pct"),
            allowed_symbols=_symbols(data, "allowed_symbols"),
            blocked_symbols=_symbols(data, "blocked_symbols") or frozenset(),
        )


@dataclass(frozen=True, slots=True)
class ExposureLeg:
    """One order an intent will place: its worst-case price (the limit, or the reference
    price for a market order) and the last trade, for the price band."""

    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    last_trade_price: Decimal | None = None

    @property
    def signed_notional(self) -> Decimal:
        return self.quantity * self.price * self.side.sign

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "side": self.side.value,
            "quantity": dec_str(self.quantity),
            "price": dec_str(self.price),
            "last_trade_price": None
            if self.last_trade_price is None
            else dec_str(self.last_trade_price),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        try:
            side = Side(require(data, "side"))
        except ValueError:
            raise ValidationError("side", "must be buy or sell") from None
        last = data.get("last_trade_price")
        return cls(
            symbol=parse_symbol(require(data, "symbol")),
            side=side,
            quantity=parse_positive_decimal(require(data, "quantity"), "quantity"),
            price=parse_positive_decimal(require(data, "price"), "price"),
            last_trade_price=None if last is None else parse_positive_decimal(last, "last"),
        )


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """``no_short``: the intent comes from a strategy that never sells short, so a sell may
    not take the account's position in its symbol (with what open intents still have to
    fill) below flat."""

    intent_id: str
    legs: tuple[ExposureLeg, ...]
    ts_request: datetime
    no_short: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "intent_id": self.intent_id,
            "legs": [leg.to_dict() for leg in self.legs],
            "ts_request": ts_str(self.ts_request),
        }
        if self.no_short:
            data["no_short"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        legs = data.get("legs")
        if not isinstance(legs, list) or not legs:
            raise ValidationError("legs", "must be a non-empty list")
        return cls(
            intent_id=require_str(data, "intent_id"),
            legs=tuple(ExposureLeg.from_dict(leg) for leg in legs),
            ts_request=parse_ts(require(data, "ts_request"), "ts_request"),
            no_short=_flag(data, "no_short"),
        )


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise ValidationError(name, "must be true or false")
    return value


# An execution reaches the risk entity from whoever books it and from whoever sees it in
# the books later: the orchestration that placed its order, a flatten that cancelled
# that order, reconciliation. Each hands on only fills booked within this window of its
# own time (``recent_fills``), so nothing hands a fill again long after it was applied,
# and the entity need not remember every execution of the account's whole history.
FILL_HANDOVER_WINDOW = timedelta(days=1)

# How many risk days (each started by ``reset_day``, once per session) with fills the
# entity keeps the applied execution ids of, at least: older days go only once
# reconciliation has vouched that their fills were all handed on (``ExecutionIds``).
# Within the handover window at most two risk days begin (an early close following a full
# session), so three would do; four leave a margin for clocks that disagree.
EXECUTION_DAYS_KEPT = 4

# The audit event of a fill the entity refused as stale: ``<execution id>`` + this.
STALE_FILL_SUFFIX = ":stale-fill"


def recent_fills(
    fills: Iterable[Fill], ts: datetime, *, since: datetime | None = None
) -> list[Fill]:
    """The fills to hand to the risk entity at ``ts``: those booked within the handover
    window (a fill's ``ts_filled`` is when the books took it in), or since ``since`` when
    that is earlier (reconciliation after an outage)."""
    start = ts - FILL_HANDOVER_WINDOW
    if since is not None and since < start:
        start = since
    return [fill for fill in fills if fill.ts_filled >= start]


class ExecutionIds:
    """The execution ids a risk state has applied, grouped by the risk day they were
    applied on, oldest first; only the newest ``EXECUTION_DAYS_KEPT`` days are kept, and
    of older ones only those that reconciliation has vouched for.

    Each day also keeps the newest ``ts_filled`` among its fills. Reconciliation tells
    the state (``handed_through``) that every fill booked up to a time has been handed to
    it, and a day is forgotten only once its newest fill is at or before that time; its
    newest fill time then becomes ``forgotten_through``. A fill not among the kept ids but
    booked at or before ``forgotten_through`` was handed on before, so it was applied (or
    refused) then: it is stale, and the state refuses it rather than apply it twice. A
    fill that was never handed on is booked after ``handed_through`` and so after
    ``forgotten_through``: it is never refused. While reconciliation does not complete,
    nothing is forgotten. (Ids kept from a state written before these times were
    recorded carry none: they are forgotten as before, and forgetting them moves
    nothing.)

    Every operation reads and writes the whole state, but only a fill asks whether an id
    is among these: the lists pass through the others as they were read, and their set is
    built when a fill first asks."""

    __slots__ = ("_days", "_index", "_newest", "forgotten_through", "handed_through")

    def __init__(
        self,
        days: Iterable[tuple[str, list[str]]] = (),
        newest: Mapping[str, datetime] | None = None,
        forgotten_through: datetime | None = None,
        handed_through: datetime | None = None,
    ) -> None:
        self._days: dict[str, list[str]] = {day: list(ids) for day, ids in days}
        self._index: set[str] | None = None
        self._newest: dict[str, datetime] = {
            day: ts for day, ts in (newest or {}).items() if day in self._days
        }
        self.forgotten_through = forgotten_through
        self.handed_through = handed_through

    @classmethod
    def from_state(
        cls,
        ids: object,
        days: object,
        day: str | None,
        newest: object = None,
        forgotten_through: object = None,
        handed_through: object = None,
    ) -> ExecutionIds:
        """``ids``, ``days``, ``newest``, ``forgotten_through`` and ``handed_through`` as
        ``to_state`` writes them. Without ``days`` (a state written before ids were
        grouped, or by that code since) all the ids are taken as applied on the state's
        current day."""
        if ids is None:
            ids = []
        if not isinstance(ids, list):
            raise ValidationError("executions", "must be a list of execution ids")
        times = _newest_times(newest)
        through = _optional_time(forgotten_through, "executions_forgotten_through")
        handed = _optional_time(handed_through, "fills_handed_through")
        if days is None:
            return cls([(str(day) if day else "", ids)] if ids else [], times, through, handed)
        if (
            not isinstance(days, list)
            or not all(
                isinstance(entry, list)
                and len(entry) == 2
                and isinstance(entry[0], str)
                and type(entry[1]) is int
                and entry[1] >= 0
                for entry in days
            )
            or sum(entry[1] for entry in days) != len(ids)
        ):
            raise ValidationError(
                "execution_days", "must be [day, count] pairs counting every execution id"
            )
        groups = []
        offset = 0
        for name, count in days:
            groups.append((name, ids[offset : offset + count]))
            offset += count
        return cls(groups, times, through, handed)

    def _ids_set(self) -> set[str]:
        if self._index is None:
            for day, ids in self._days.items():
                # Stored by this code as strings; anything else read back is normalised.
                if not all(type(e) is str for e in ids):
                    self._days[day] = [str(e) for e in ids]
            self._index = {e for ids in self._days.values() for e in ids}
        return self._index

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._ids_set()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionIds):
            return NotImplemented
        return self.to_state() == other.to_state()

    def is_stale(self, ts_filled: datetime) -> bool:
        """Whether an unknown fill booked at ``ts_filled`` may be one already forgotten."""
        return self.forgotten_through is not None and ts_filled <= self.forgotten_through

    def add(self, execution_id: str, day: str | None, ts_filled: datetime) -> None:
        """Remember an id applied on ``day`` (the risk day; ``None`` before the first)
        whose fill was booked at ``ts_filled``."""
        index = self._ids_set()
        if execution_id in index:
            return
        key = day or ""
        ids = self._days.get(key)
        if ids is None or next(reversed(self._days)) != key:
            # A day not seen last: it becomes the newest, so its ids are kept the longest.
            self._days[key] = ids = self._days.pop(key, [])
            self._forget_old()
        ids.append(execution_id)
        index.add(execution_id)
        newest = self._newest.get(key)
        if newest is None or ts_filled > newest:
            self._newest[key] = ts_filled

    def handed(self, through: datetime) -> None:
        """Every fill booked up to ``through`` has been handed to this state (the time only
        moves forward); days older than the kept ones that it covers are forgotten."""
        if self.handed_through is None or through > self.handed_through:
            self.handed_through = through
        self._forget_old()

    def _forget_old(self) -> None:
        while len(self._days) > EXECUTION_DAYS_KEPT:
            oldest = next(iter(self._days))
            newest = self._newest.get(oldest)
            if newest is not None and (self.handed_through is None or newest > self.handed_through):
                return  # a fill of that day may not have been handed on yet: keep it
            for forgotten in self._days.pop(oldest):
                if self._index is not None:
                    self._index.discard(forgotten)
            self._newest.pop(oldest, None)
            if newest is not None and not self.is_stale(newest):
                self.forgotten_through = newest

    def to_state(
        self,
    ) -> tuple[list[str], list[list[Any]], list[list[str]], str | None, str | None]:
        """All the ids, oldest day first, as one list (what code before the grouping reads,
        so it still takes each execution once), each day with its count of them, each
        day's newest fill time, the newest time forgotten and the time handed through."""
        return (
            [e for ids in self._days.values() for e in ids],
            [[day, len(ids)] for day, ids in self._days.items()],
            [[day, _state_time_text(ts)] for day, ts in self._newest.items()],
            _optional_text(self.forgotten_through),
            _optional_text(self.handed_through),
        )


def _optional_time(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, "must be a timestamp")
    return _state_time(value, field)


def _optional_text(ts: datetime | None) -> str | None:
    return None if ts is None else _state_time_text(ts)


def _newest_times(value: object) -> dict[str, datetime]:
    if value is None:
        return {}
    if not isinstance(value, list) or not all(
        isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], str)
        for entry in value
    ):
        raise ValidationError("execution_newest", "must be [day, timestamp] pairs")
    return {day: _state_time(text, "execution_newest") for day, text in value}


@dataclass(slots=True)
class RiskState:
    account: str
    limits: RiskLimits = field(default_factory=RiskLimits)
    halted: bool = False
    halt_reason: str | None = None
    day: str | None = None
    realized_today: Decimal = ZERO
    positions: dict[str, Position] = field(default_factory=dict)
    last_price: dict[str, Decimal] = field(default_factory=dict)
    reservations: dict[str, ReserveRequest] = field(default_factory=dict)
    remaining: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    order_times: list[datetime] = field(default_factory=list)
    executions: ExecutionIds = field(default_factory=ExecutionIds)
    limits_configured: bool = False

    # -- views -----------------------------------------------------------------------------

    def open_orders(self) -> int:
        return sum(1 for legs in self.remaining.values() for q in legs.values() if q > 0)

    def _open_legs(self) -> Iterator[tuple[ExposureLeg, Decimal]]:
        """Every reserved leg with the quantity it has still to fill."""
        for intent_id, request in self.reservations.items():
            left = self.remaining.get(intent_id, {})
            for index, leg in enumerate(request.legs):
                yield leg, left.get(str(index), ZERO)

    def _pending(self) -> dict[str, Decimal]:
        """Signed notional still reserved per symbol (unfilled quantity of open intents)."""
        pending: dict[str, Decimal] = {}
        for leg, quantity in self._open_legs():
            pending[leg.symbol] = (
                pending.get(leg.symbol, ZERO) + quantity * leg.price * leg.side.sign
            )
        return pending

    def _short_sales(self, request: ReserveRequest) -> list[Denial]:
        """The sells of a strategy that never sells short which would take the account's
        position below flat, counting what open intents still have to fill (an entry
        still on its way makes its exit good)."""
        denials = []
        for leg in request.legs:
            if leg.side is not Side.SELL:
                continue
            position = self.positions.get(leg.symbol)
            held = ZERO if position is None else position.quantity
            held += sum(
                (
                    q * open_leg.side.sign
                    for open_leg, q in self._open_legs()
                    if open_leg.symbol == leg.symbol
                ),
                ZERO,
            )
            if leg.quantity > held:
                denials.append(
                    Denial(
                        DenialCode.SHORT_SALE,
                        f"{leg.symbol}: selling {dec_str(leg.quantity)} would go short "
                        f"(held and on its way: {dec_str(held)}), and the strategy does not "
                        "sell short",
                    )
                )
        return denials

    def _position_notional(self, symbol: str, mark: Decimal) -> Decimal:
        position = self.positions.get(symbol)
        return ZERO if position is None else position.quantity * mark

    def pending_notional(self) -> dict[str, Decimal]:
        """Signed notional still reserved per symbol (what open intents have not filled)."""
        return self._pending()

    def limit_uses(self, now: datetime) -> list[LimitUse]:
        """Use of every configured limit, measured the way ``check`` measures it."""
        return limit_uses(self, now=now)

    def utilisation(self, now: datetime) -> dict[str, Decimal]:
        """The fraction of each limit with a standing use (1 = at the limit)."""
        return {use.name: ratio for use in self.limit_uses(now) if (ratio := use.ratio) is not None}

    # -- operations ------------------------------------------------------------------------

    def check(self, request: ReserveRequest) -> list[Denial]:
        limits = self.limits
        reasons: list[Denial] = []
        if self.halted:
            reasons.append(Denial(DenialCode.HALTED, f"trading is halted: {self.halt_reason}"))
        if limits.daily_loss_limit is not None and -self.realized_today > limits.daily_loss_limit:
            reasons.append(
                Denial(
                    DenialCode.DAILY_LOSS,
                    f"realised loss today {dec_str(-self.realized_today)} is beyond the "
                    f"limit {dec_str(limits.daily_loss_limit)}",
                )
            )
        if request.no_short:
            reasons.extend(self._short_sales(request))
        pending = self._pending()
        new_by_symbol: dict[str, Decimal] = {}
        for leg in request.legs:
            notional = leg.quantity * leg.price
            new_by_symbol[leg.symbol] = new_by_symbol.get(leg.symbol, ZERO) + leg.signed_notional
            if leg.symbol in limits.blocked_symbols:
                reasons.append(Denial(DenialCode.SYMBOL_BLOCKED, f"{leg.symbol} is blocked"))
            if limits.allowed_symbols is not None and leg.symbol not in limits.allowed_symbols:
                reasons.append(
                    Denial(DenialCode.SYMBOL_NOT_ALLOWED, f"{leg.symbol} is not allowed")
                )
            if limits.max_order_quantity is not None and leg.quantity > limits.max_order_quantity:
                reasons.append(
                    Denial(
                        DenialCode.ORDER_QUANTITY,
                        f"{leg.symbol}: quantity {dec_str(leg.quantity)} exceeds "
                        f"{dec_str(limits.max_order_quantity)}",
                    )
                )
            if limits.max_order_notional is not None and notional > limits.max_order_notional:
                reasons.append(
                    Denial(
                        DenialCode.ORDER_NOTIONAL,
                        f"{leg.symbol}: notional {dec_str(notional)} exceeds "
                        f"{dec_str(limits.max_order_notional)}",
                    )
                )
            last = leg.last_trade_price or self.last_price.get(leg.symbol)
            if limits.price_band_pct is not None and last is not None:
                distance = abs(leg.price - last) / last * HUNDRED
                if distance > limits.price_band_pct:
                    reasons.append(
                        Denial(
                            DenialCode.PRICE_BAND,
                            f"{leg.symbol}: price {dec_str(leg.price)} is {distance:.2f}% "
                            f"from the last trade {dec_str(last)} "
                            f"(band {dec_str(limits.price_band_pct)}%)",
                        )
                    )
        marks = {leg.symbol: leg.price for leg in request.legs}
        if limits.max_position_notional is not None:
            for symbol, added in new_by_symbol.items():
                total = abs(
                    self._position_notional(symbol, marks[symbol])
                    + pending.get(symbol, ZERO)
                    + added
                )
                if total > limits.max_position_notional:
                    reasons.append(
                        Denial(
                            DenialCode.POSITION_NOTIONAL,
                            f"{symbol}: position would reach {dec_str(total)}, limit "
                            f"{dec_str(limits.max_position_notional)}",
                        )
                    )
        if limits.max_gross_exposure is not None:
            gross = sum(
                (
                    abs(
                        self._position_notional(
                            s, marks.get(s, self.last_price.get(s, p.avg_price))
                        )
                    )
                    for s, p in self.positions.items()
                ),
                ZERO,
            )
            gross += sum((abs(v) for v in pending.values()), ZERO)
            gross += sum((leg.quantity * leg.price for leg in request.legs), ZERO)
            if gross > limits.max_gross_exposure:
                reasons.append(
                    Denial(
                        DenialCode.GROSS_EXPOSURE,
                        f"gross exposure would reach {dec_str(gross)}, limit "
                        f"{dec_str(limits.max_gross_exposure)}",
                    )
                )
        if (
            limits.max_open_orders is not None
            and self.open_orders() + len(request.legs) > limits.max_open_orders
        ):
            reasons.append(
                Denial(
                    DenialCode.OPEN_ORDERS,
                    f"{self.open_orders()} open orders + {len(request.legs)} would exceed "
                    f"{limits.max_open_orders}",
                )
            )
        if limits.max_orders_per_minute is not None:
            since = request.ts_request - RATE_WINDOW
            recent = sum(1 for t in self.order_times if t > since)
            if recent + len(request.legs) > limits.max_orders_per_minute:
                reasons.append(
                    Denial(
                        DenialCode.ORDER_RATE,
                        f"{recent} orders in the last minute + {len(request.legs)} would exceed "
                        f"{limits.max_orders_per_minute}",
                    )
                )
        return reasons

    def reserve(self, request: ReserveRequest) -> dict[str, Any]:
        if request.intent_id in self.reservations:
            return {"approved": True, "intent_id": request.intent_id, "existing": True}
        reasons = self.check(request)
        if reasons:
            return {
                "approved": False,
                "intent_id": request.intent_id,
                "reasons": [r.to_dict() for r in reasons],
            }
        self.reservations[request.intent_id] = request
        self.remaining[request.intent_id] = {
            str(i): leg.quantity for i, leg in enumerate(request.legs)
        }
        since = request.ts_request - RATE_WINDOW
        self.order_times = [t for t in self.order_times if t > since]
        self.order_times.extend([request.ts_request] * len(request.legs))
        return {"approved": True, "intent_id": request.intent_id, "existing": False}

    def release(self, intent_id: str) -> dict[str, Any]:
        released = self.reservations.pop(intent_id, None) is not None
        self.remaining.pop(intent_id, None)
        return {"released": released, "intent_id": intent_id}

    def apply_fill(self, fill: Fill) -> dict[str, Any]:
        if fill.account != self.account:
            raise ValidationError("account", f"fill is for {fill.account}, not {self.account}")
        if fill.execution_id in self.executions:
            return {"applied": False, "halted": self.halted, "flatten": False}
        if self.executions.is_stale(fill.ts_filled):
            # Booked before fills this state has forgotten, it was handed on and applied
            # before then: applying it again would count it twice.
            forgotten = self.executions.forgotten_through
            return {
                "applied": False,
                "stale": True,
                "forgotten_through": _optional_text(forgotten),
                "halted": self.halted,
                "flatten": False,
            }
        position = self.positions.get(fill.symbol) or Position(self.account, fill.symbol)
        after = position.apply(fill)
        self.realized_today += (after.realized_pnl - position.realized_pnl) - fill.fee
        self.positions[fill.symbol] = after
        self.last_price[fill.symbol] = fill.price
        self.executions.add(fill.execution_id, self.day, fill.ts_filled)
        intent_id = fill.client_order_id.split(":", 1)[0]
        request = self.reservations.get(intent_id)
        if request is not None:
            left = self.remaining[intent_id]
            for index, leg in enumerate(request.legs):
                key = str(index)
                if leg.symbol == fill.symbol and leg.side == fill.side and left[key] > 0:
                    left[key] = max(ZERO, left[key] - fill.quantity)
                    break
        tripped = False
        limit = self.limits.daily_loss_limit
        if limit is not None and not self.halted and -self.realized_today > limit:
            self.halted = True
            self.halt_reason = (
                f"daily loss limit: realised {dec_str(self.realized_today)} "
                f"against a limit of {dec_str(limit)}"
            )
            tripped = True
        return {"applied": True, "halted": self.halted, "flatten": tripped}

    def halt(self, reason: str) -> dict[str, Any]:
        self.halted = True
        self.halt_reason = reason
        return {"halted": True, "reason": reason}

    def resume(self) -> dict[str, Any]:
        self.halted = False
        self.halt_reason = None
        return {"halted": False}

    def reset_day(self, day: str) -> dict[str, Any]:
        """A new trading day: the day's P&L and the order-rate window start again. Positions,
        reservations and a halt stay: resuming after a halt is an operator's decision."""
        self.day = day
        self.realized_today = ZERO
        self.order_times = []
        return {"day": day, "halted": self.halted}

    def fills_handed(self, through: datetime) -> dict[str, Any]:
        """Reconciliation has handed on every fill the books took in up to ``through``."""
        self.executions.handed(through)
        return {"handed_through": _optional_text(self.executions.handed_through)}

    def set_limits(self, limits: RiskLimits) -> dict[str, Any]:
        self.limits = limits
        self.limits_configured = True
        return {"limits": limits.to_dict()}

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        executions, execution_days, execution_newest, forgotten, handed = self.executions.to_state()
        return {
            "v": 1,
            "account": self.account,
            "limits": self.limits.to_dict(),
            "limits_configured": self.limits_configured,
            "halted": self.halted,
            "halt_reason": self.halt_reason,
            "day": self.day,
            "realized_today": dec_str(self.realized_today),
            "positions": [p.to_dict() for p in self.positions.values()],
            "last_price": {k: dec_str(v) for k, v in self.last_price.items()},
            "reservations": [r.to_dict() for r in self.reservations.values()],
            "remaining": {
                k: {i: dec_str(q) for i, q in v.items()} for k, v in self.remaining.items()
            },
            "order_times": [_state_time_text(t) for t in self.order_times],
            "executions": executions,
            "execution_days": execution_days,
            "execution_newest": execution_newest,
            "executions_forgotten_through": forgotten,
            "fills_handed_through": handed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            account=require_str(data, "account"),
            limits=RiskLimits.from_dict(
                {k: v for k, v in (data.get("limits") or {}).items() if v is not None}
            ),
            halted=bool(data.get("halted", False)),
            halt_reason=data.get("halt_reason"),
            day=data.get("day"),
            realized_today=parse_decimal(data.get("realized_today", "0"), "realized_today"),
            positions={p["symbol"]: Position.from_dict(p) for p in data.get("positions") or []},
            last_price={
                k: parse_decimal(v, "last_price") for k, v in (data.get("last_price") or {}).items()
            },
            reservations={
                r["intent_id"]: ReserveRequest.from_dict(r) for r in data.get("reservations") or []
            },
            remaining={
                k: {i: parse_decimal(q, "remaining") for i, q in v.items()}
                for k, v in (data.get("remaining") or {}).items()
            },
            order_times=[
                _state_time(t, "order_times") if isinstance(t, str) else parse_ts(t, "order_times")
                for t in data.get("order_times") or []
            ],
            executions=ExecutionIds.from_state(
                data.get("executions"),
                data.get("execution_days"),
                data.get("day"),
                data.get("execution_newest"),
                data.get("executions_forgotten_through"),
                data.get("fills_handed_through"),
            ),
            # State written before this flag existed: limits other than none were set.
            limits_configured=bool(
                data.get("limits_configured", any(v for v in (data.get("limits") or {}).values()))
            ),
        )


def _payload_str(payload: Mapping[str, Any], name: str) -> str:
    return require_str(payload, name)


Operation = Callable[[RiskState, Mapping[str, Any]], dict[str, Any]]


def _op_reserve(state: RiskState, payload: Mapping[str, Any]) -> dict[str, Any]:
    """``initial_limits`` (optional) are the configured limits, applied only to an account
    that has never been given any, so its first order is not checked against none."""
    initial = payload.get("initial_limits")
    request = ReserveRequest.from_dict(payload)
    if initial is not None and not state.limits_configured:
        if not isinstance(initial, Mapping):
            raise ValidationError("initial_limits", "must be an object")
        state.set_limits(RiskLimits.from_dict({k: v for k, v in initial.items() if v is not None}))
    return state.reserve(request)


def _op_release(state: RiskState, payload: Mapping[str, Any]) -> dict[str, Any]:
    return state.release(_payload_str(payload, "intent_id"))


def _op_apply_fill(state: RiskState, payload: Mapping[str, Any]) -> dict[str, Any]:
    fill = Fill.from_dict(payload)
    if fill.account != state.account:
        raise ValidationError("account", f"fill is for {fill.account}, not {state.account}")
    return state.apply_fill(fill)


def _op_halt(state: RiskState, payload: Mapping[str, Any]) -> dict[str, Any]:
    return state.halt(_payload_str(payload, "reason"))


def _op_resume(state: RiskState, payload: Mapping[str, Any]) -> dict[str, Any]:
    return state.resume()


def _op_reset_day(state: RiskState, payload: Mapping[str, Any]) -> dict[str, Any]:
    return state.reset_day(_payload_str(payload, "day"))


def _op_fills_handed(state: RiskState, payload: Mapping[str, Any]) -> dict[str, Any]:
    return state.fills_handed(parse_ts(require(payload, "through"), "through"))


def _op_set_limits(state: RiskState, payload: Mapping[str, Any]) -> dict[str, Any]:
    return state.set_limits(RiskLimits.from_dict(payload))


def _op_get(state: RiskState, payload: Mapping[str, Any]) -> dict[str, Any]:
    return state.to_dict()


OPERATIONS: dict[str, Operation] = {
    "reserve": _op_reserve,
    "release": _op_release,
    "apply_fill": _op_apply_fill,
    "halt": _op_halt,
    "resume": _op_resume,
    "reset_day": _op_reset_day,
    "set_limits": _op_set_limits,
    "fills_handed": _op_fills_handed,
    "get": _op_get,
}


def apply_operation(
    state: Mapping[str, Any] | None, operation: str, payload: Any, *, account: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The risk entity's reducer: (state, operation, payload) -> (new state, result).

    An unknown operation or a bad payload leaves the state as it was and answers
    ``{"error": {"field", "reason"}}``; decisions (approvals, denials) are results too.
    """
    # The operation works on a state read from ``state``, never on ``state`` itself: a
    # payload refused halfway leaves no half-applied change, and the state goes back as
    # it came (normalised).
    working = RiskState(account) if state is None else RiskState.from_dict(state)
    handler = OPERATIONS.get(operation)
    if handler is None:
        error = {"field": "operation", "reason": f"unknown: {operation!r}"}
        return working.to_dict(), {"error": error}
    if not isinstance(payload, Mapping):
        payload = {} if payload is None else {"value": payload}
    try:
        result = handler(working, payload)
    except ValidationError as error:
        unchanged = RiskState(account) if state is None else RiskState.from_dict(state)
        return unchanged.to_dict(), {"error": error.to_dict()}
    return working.to_dict(), result


RATIO_PLACES = Decimal("0.0001")
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class LimitUse:
    """One limit and how much of it is used now; ``used`` is None for limits that are
    checked against each order on its own and have no standing use."""

    name: str
    limit: Decimal
    used: Decimal | None
    scope: str  # account, symbol or order
    detail: str | None = None

    @property
    def ratio(self) -> Decimal | None:
        if self.used is None or self.limit == 0:
            return None
        return (self.used / self.limit).quantize(RATIO_PLACES)

    def to_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "limit": self.name,
            "scope": self.scope,
            "value": dec_str(self.limit),
            "used": (None if self.used is None else dec_str(self.used.quantize(CENT).normalize())),
            "ratio": None if ratio is None else dec_str(ratio),
            "detail": self.detail,
        }


def _notional(state: RiskState, symbol: str) -> Decimal:
    """A held position's signed notional at the entity's last price for the symbol."""
    position = state.positions[symbol]
    return position.quantity * state.last_price.get(symbol, position.avg_price)


def limit_uses(state: RiskState, *, now: datetime) -> list[LimitUse]:
    """Use of every configured limit, measured the way the risk check measures it: open
    positions at the entity's last prices plus the exposure still reserved for open
    intents, orders placed in the minute before ``now``, the day's realised loss."""
    limits = state.limits
    pending = state.pending_notional()
    uses = []
    if limits.max_position_notional is not None:
        symbol, largest = max(
            ((s, abs(_notional(state, s) + pending.get(s, ZERO))) for s in state.positions),
            key=lambda item: (item[1], item[0]),
            default=(None, ZERO),
        )
        for other, reserved in pending.items():  # reserved for a symbol not held yet
            if other not in state.positions and abs(reserved) > largest:
                symbol, largest = other, abs(reserved)
        uses.append(
            LimitUse(
                "max_position_notional", limits.max_position_notional, largest, "symbol", symbol
            )
        )
    if limits.max_gross_exposure is not None:
        gross = sum((abs(_notional(state, s)) for s in state.positions), ZERO)
        gross += sum((abs(v) for v in pending.values()), ZERO)
        uses.append(LimitUse("max_gross_exposure", limits.max_gross_exposure, gross, "account"))
    if limits.max_open_orders is not None:
        uses.append(
            LimitUse(
                "max_open_orders",
                Decimal(limits.max_open_orders),
                Decimal(state.open_orders()),
                "account",
            )
        )
    if limits.max_orders_per_minute is not None:
        since = now - RATE_WINDOW
        recent = sum(1 for t in state.order_times if t > since)
        uses.append(
            LimitUse(
                "max_orders_per_minute",
                Decimal(limits.max_orders_per_minute),
                Decimal(recent),
                "account",
            )
        )
    if limits.daily_loss_limit is not None:
        uses.append(
            LimitUse(
                "daily_loss_limit",
                limits.daily_loss_limit,
                max(ZERO, -state.realized_today),
                "account",
                state.day,
            )
        )
    per_order = (
        ("max_order_quantity", limits.max_order_quantity),
        ("max_order_notional", limits.max_order_notional),
        ("price_band_pct", limits.price_band_pct),
    )
    uses.extend(
        LimitUse(name, value, None, "order") for name, value in per_order if value is not None
    )
    return uses
