"""What ``GET /api/dashboard`` shows: positions, the realised P&L curve, open orders, risk
utilisation per limit, the kill switch, tick-to-submit latency and slippage, built from the
desk's own books and the account's risk entity state.

A page refreshes this every few seconds, so every read is bounded: the audit trail is read
from its head back a fixed number of records, charts carry at most ``MAX_POINTS`` points and
the P&L curve covers a recent window. Fills are the exception: realised P&L at any moment
depends on every fill before it, so the curve replays the account's fills in full (one
indexed read; a session holds a few thousand).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from activities import service
from activities.report import percentile
from adapters.bootstrap import Services
from domain.audit import AuditKind, AuditRecord
from domain.errors import ValidationError
from domain.execution import slippage_bps
from domain.fills import Fill
from domain.orders import Order
from domain.portfolio import Position
from domain.ports import Books
from domain.risk import RiskLimits, RiskState
from domain.serde import dec_str, parse_decimal, ts_str

DATA_VERSION = 1
RECENT_RECORDS = 4000  # audit records read per refresh, from the head of the chain back
MAX_POINTS = 240  # per chart: more than a chart this size can show apart
MAX_OPEN_ORDERS = 100
SLIPPAGE_FILLS = 120  # the most recent fills measured for slippage
PNL_WINDOW = timedelta(hours=24)  # of fills, ending at the latest one

ZERO = Decimal(0)
CENT = Decimal("0.01")
PRICE_PLACES = Decimal("0.000001")
BPS = Decimal(10_000)
ENTRY_LEGS = frozenset({"entry", "a", "b"})


def _money(amount: Decimal) -> str:
    return dec_str(amount.quantize(CENT))


def _price(amount: Decimal) -> str:
    """Averages carry long fractions in the books; six places are plenty to show."""
    return dec_str(amount.quantize(PRICE_PLACES).normalize())


def _optional_price(amount: Decimal | None) -> str | None:
    return None if amount is None else _price(amount)


# -- the audit window -------------------------------------------------------------------------


def recent_records(store: Books, partition: str, count: int = RECENT_RECORDS) -> list[AuditRecord]:
    """The last ``count`` records of the partition's chain, oldest first."""
    head = store.head(partition)
    if head is None:
        return []
    return store.records(partition, from_seq=max(0, head.seq + 1 - count))


class AuditLookup:
    """Audit records by event id: from the recent window first, from the store when the
    record is older than the window (each asked for once per refresh)."""

    def __init__(self, store: Books, partition: str, records: Iterable[AuditRecord]) -> None:
        self._store = store
        self._partition = partition
        self._found: dict[str, AuditRecord | None] = {
            r.event_id: r
            for r in records
            if r.kind in (AuditKind.INTENT, AuditKind.ORDER_EVENT)
            and r.event_id.endswith((":received", ":submitted"))
        }

    def get(self, event_id: str) -> AuditRecord | None:
        if event_id not in self._found:
            self._found[event_id] = self._store.find_event(self._partition, event_id)
        return self._found[event_id]

    def submitted_leg(self, client_order_id: str) -> Mapping[str, Any]:
        """The leg as it was sent (type, limit and stop price); empty before it is sent."""
        record = self.get(f"{client_order_id}:submitted")
        leg = None if record is None else record.payload.get("leg")
        return leg if isinstance(leg, Mapping) else {}

    def intent(self, intent_id: str) -> Mapping[str, Any]:
        """The intent as the trade orchestration received it."""
        record = self.get(f"{intent_id}:received")
        intent = None if record is None else record.payload.get("intent")
        return intent if isinstance(intent, Mapping) else {}


def _leg_price(leg: Mapping[str, Any], name: str) -> Decimal | None:
    value = leg.get(name)
    return None if value is None else parse_decimal(value, name)


# -- positions and P&L ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PositionRow:
    symbol: str
    quantity: Decimal
    avg_price: Decimal
    mark: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "quantity": dec_str(self.quantity),
            "avg_price": _price(self.avg_price),
            "mark": _price(self.mark),
            "market_value": _money(self.quantity * self.mark),
            "realized_pnl": _money(self.realized_pnl),
            "unrealized_pnl": _money(self.unrealized_pnl),
            "fees": _money(self.fees),
        }


def position_rows(svc: Services) -> list[PositionRow]:
    """Every position of the account, flat ones too (they hold realised P&L), marked at the
    broker's last trade, or at the average price when the broker has none (the session
    report marks them the same way)."""
    rows = []
    for position in sorted(svc.store.positions(svc.settings.account), key=lambda p: p.symbol):
        mark = svc.broker.last_price(position.symbol) or position.avg_price
        rows.append(
            PositionRow(
                symbol=position.symbol,
                quantity=position.quantity,
                avg_price=position.avg_price,
                mark=mark,
                realized_pnl=position.realized_pnl,
                unrealized_pnl=position.unrealized_pnl(mark),
                fees=position.fees,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class PnlPoint:
    ts: datetime
    realized: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {"ts": ts_str(self.ts), "realized": _money(self.realized)}


def downsample(points: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` points, evenly spread by index, the first and last always kept."""
    if limit < 2:
        raise ValidationError("limit", "a chart needs at least two points")
    if len(points) <= limit:
        return list(points)
    last = len(points) - 1
    picked = sorted({round(i * last / (limit - 1)) for i in range(limit)})
    return [points[i] for i in picked]


def pnl_curve(
    fills: Sequence[Fill], *, window: timedelta = PNL_WINDOW, limit: int = MAX_POINTS
) -> list[PnlPoint]:
    """Realised P&L net of fees after each fill, for the fills within ``window`` of the
    latest one. The running total starts at the first fill ever, so the curve's level is
    the account's, not the window's."""
    positions: dict[str, Position] = {}
    total = ZERO
    points = []
    for fill in fills:
        before = positions.get(fill.symbol) or Position(fill.account, fill.symbol)
        after = before.apply(fill)
        positions[fill.symbol] = after
        total += after.realized_pnl - before.realized_pnl - fill.fee
        points.append(PnlPoint(fill.ts_filled, total))
    if not points:
        return []
    start = points[-1].ts - window
    return downsample([p for p in points if p.ts >= start], limit)


# -- open orders ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenOrderRow:
    order: Order
    order_type: str | None
    limit_price: Decimal | None
    stop_price: Decimal | None

    def to_dict(self) -> dict[str, Any]:
        order = self.order
        return {
            "client_order_id": order.client_order_id,
            "intent_id": order.intent_id,
            "leg": order.leg,
            "symbol": order.symbol,
            "side": order.side.value,
            "quantity": dec_str(order.quantity),
            "filled_qty": dec_str(order.filled_qty),
            "status": order.status.value,
            "order_type": self.order_type,
            "limit_price": _optional_price(self.limit_price),
            "stop_price": _optional_price(self.stop_price),
            "ts_created": None if order.ts_created is None else ts_str(order.ts_created),
        }


def open_order_rows(
    svc: Services, lookup: AuditLookup, limit: int = MAX_OPEN_ORDERS
) -> tuple[list[OpenOrderRow], int]:
    """The account's newest open orders (at most ``limit``) and how many are open in all."""
    account = svc.settings.account
    orders = [o for o in svc.store.open_orders() if o.account in (None, account)]
    orders.sort(key=lambda o: (o.ts_created is not None, o.ts_created), reverse=True)
    rows = []
    for order in orders[:limit]:
        leg = lookup.submitted_leg(order.client_order_id)
        order_type = leg.get("order_type")
        rows.append(
            OpenOrderRow(
                order=order,
                order_type=None if order_type is None else str(order_type),
                limit_price=_leg_price(leg, "limit_price"),
                stop_price=_leg_price(leg, "stop_price"),
            )
        )
    return rows, len(orders)


# -- risk ---------------------------------------------------------------------------------------


def risk_state(svc: Services, entity_state: Mapping[str, Any] | None) -> RiskState:
    """The entity's state, or, for an account that has not traded yet, the limits its
    first order will be given (the configured ones)."""
    if entity_state is not None:
        return RiskState.from_dict(entity_state)
    account = svc.settings.account
    return RiskState(account, limits=svc.settings.risk_limits or RiskLimits())


# -- execution quality ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    ts: datetime
    client_order_id: str
    ms: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": ts_str(self.ts),
            "client_order_id": self.client_order_id,
            "ms": round(self.ms, 3),
        }


@dataclass(frozen=True, slots=True)
class Latency:
    points: list[LatencyPoint]
    count: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "points": [p.to_dict() for p in self.points],
        }


def latency(records: Iterable[AuditRecord], limit: int = MAX_POINTS) -> Latency:
    """Tick-to-submit latency of the orders in ``records``: the same figure, p50 and p99
    as the session report, with the latest ``limit`` orders as points."""
    points = [
        LatencyPoint(
            r.ts_recorded,
            r.correlation.get("client_order_id", r.event_id),
            float(r.payload["submit_latency_ms"]),
        )
        for r in records
        if r.kind is AuditKind.ORDER_EVENT and r.payload.get("submit_latency_ms") is not None
    ]
    if not points:
        return Latency([])
    values = [p.ms for p in points]
    return Latency(
        points=points[-limit:],
        count=len(values),
        p50_ms=round(statistics.median(values), 3),
        p99_ms=round(percentile(values, 0.99), 3),
    )


@dataclass(frozen=True, slots=True)
class SlippagePoint:
    """One fill against the price it was meant to get. ``benchmark_kind``: ``signal`` (the
    strategy's signal price the intent carried), ``reference`` (a manual order's reference
    price, or the last trade when it was placed), ``limit`` or ``stop`` (an exit's own
    price). Positive basis points cost the desk money: bought above, or sold below."""

    fill: Fill
    benchmark: Decimal
    benchmark_kind: str

    @property
    def cost(self) -> Decimal:
        return (self.fill.price - self.benchmark) * self.fill.quantity * self.fill.side.sign

    @property
    def bps(self) -> Decimal:
        return slippage_bps(self.fill.side, self.fill.price, self.benchmark).quantize(CENT)

    def to_dict(self) -> dict[str, Any]:
        fill = self.fill
        return {
            "ts": ts_str(fill.ts_filled),
            "client_order_id": fill.client_order_id,
            "symbol": fill.symbol,
            "side": fill.side.value,
            "quantity": dec_str(fill.quantity),
            "price": _price(fill.price),
            "benchmark": _price(self.benchmark),
            "benchmark_kind": self.benchmark_kind,
            "bps": dec_str(self.bps),
            "cost": _money(self.cost),
        }


@dataclass(frozen=True, slots=True)
class Slippage:
    points: list[SlippagePoint] = field(default_factory=list)
    unmeasured: int = 0

    def to_dict(self) -> dict[str, Any]:
        cost = sum((p.cost for p in self.points), ZERO)
        notional = sum((p.benchmark * p.fill.quantity for p in self.points), ZERO)
        return {
            "count": len(self.points),
            "unmeasured": self.unmeasured,
            "cost": _money(cost),
            "avg_bps": None if notional == 0 else dec_str((cost / notional * BPS).quantize(CENT)),
            "points": [p.to_dict() for p in self.points],
        }


def _benchmark(fill: Fill, lookup: AuditLookup) -> tuple[Decimal, str] | None:
    intent_id, _, leg_name = fill.client_order_id.rpartition(":")
    if leg_name in ENTRY_LEGS:
        intent = lookup.intent(intent_id)
        prices = intent.get("reference_prices")
        price = prices.get(fill.symbol) if isinstance(prices, Mapping) else None
        if price is not None:
            kind = "reference" if intent.get("source") == "manual" else "signal"
            return parse_decimal(price, "reference_prices"), kind
    leg = lookup.submitted_leg(fill.client_order_id)
    for name, kind in (("limit_price", "limit"), ("stop_price", "stop")):
        price = _leg_price(leg, name)
        if price is not None:
            return price, kind
    return None


def slippage(fills: Sequence[Fill], lookup: AuditLookup, limit: int = SLIPPAGE_FILLS) -> Slippage:
    """Slippage of the latest ``limit`` fills. Market orders that close a position (the
    kill switch, end of day, a pair's unwind) carry no price to compare with: they are
    counted as unmeasured."""
    points = []
    unmeasured = 0
    for fill in fills[-limit:]:
        found = _benchmark(fill, lookup)
        if found is None:
            unmeasured += 1
            continue
        points.append(SlippagePoint(fill, found[0], found[1]))
    return Slippage(points, unmeasured)


# -- the whole page ---------------------------------------------------------------------------


def kill_switch(svc: Services, state: RiskState) -> dict[str, Any]:
    """Halted when either side says so: the risk entity refuses new risk, the books' switch
    stops orders before the broker (they are set together; showing both shows a drift)."""
    books = service.halted(svc)
    return {
        "halted": state.halted or books is not None,
        "reason": state.halt_reason or (None if books is None else books.get("reason")),
        "entity": {"halted": state.halted, "reason": state.halt_reason},
        "books": {
            "halted": books is not None,
            "reason": None if books is None else books.get("reason"),
            "ts": None if books is None else books.get("ts"),
        },
    }


def dashboard_data(
    svc: Services, entity_state: Mapping[str, Any] | None, *, now: datetime
) -> dict[str, Any]:
    """Everything the dashboard page shows, JSON-safe (money as decimal strings).

    ``entity_state``: the account's ``RiskEntity`` state as the durable client read it,
    None when the entity does not exist yet."""
    if now.tzinfo is None:
        raise ValidationError("now", "must be timezone-aware")
    account = svc.settings.account
    records = recent_records(svc.store, account)
    lookup = AuditLookup(svc.store, account, records)
    fills = svc.store.fills(account)
    positions = position_rows(svc)
    orders, open_count = open_order_rows(svc, lookup)
    state = risk_state(svc, entity_state)
    realized = sum((p.realized_pnl - p.fees for p in positions), ZERO)
    unrealized = sum((p.unrealized_pnl for p in positions), ZERO)
    return {
        "v": DATA_VERSION,
        "account": account,
        "ts_generated": ts_str(now),
        "kill_switch": kill_switch(svc, state),
        "pnl": {
            "realized": _money(realized),
            "unrealized": _money(unrealized),
            "total": _money(realized + unrealized),
            "fees": _money(sum((p.fees for p in positions), ZERO)),
            "curve": [p.to_dict() for p in pnl_curve(fills)],
        },
        "positions": [p.to_dict() for p in positions],
        "open_orders": {"count": open_count, "orders": [o.to_dict() for o in orders]},
        "risk": {
            "entity_exists": entity_state is not None,
            "limits_configured": state.limits_configured,
            "day": state.day,
            "realized_today": _money(state.realized_today),
            "reservations": len(state.reservations),
            "utilisation": [u.to_dict() for u in state.limit_uses(now)],
            "allowed_symbols": None
            if state.limits.allowed_symbols is None
            else sorted(state.limits.allowed_symbols),
            "blocked_symbols": sorted(state.limits.blocked_symbols),
        },
        "latency": latency(records).to_dict(),
        "slippage": slippage(fills, lookup).to_dict(),
    }
