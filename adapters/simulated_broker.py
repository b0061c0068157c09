"""A broker simulated against the market data the desk receives.

Orders fill against trade prints: a market order at the next print (plus slippage), a limit
when a print reaches its price, a stop or trailing stop when a print crosses its trigger.
Market time is the time of the last print, so a session replayed from a file fills the same
way every time. Latency delays when a new order can first fill; ``partial_fill_fraction``
splits fills over several prints; rejections come from a symbol list, a seeded rate, or
missing buying power. Take-profit and stop-loss pairs can be linked natively (OCO), and
sent with their entry as one order (a bracket, or OTO with one exit): the exits are held
until the entry has filled in full, then one cancels the other; an entry that ends
otherwise (cancelled, expired, rejected) takes its held exits with it.

State is held in memory for the life of the process: it stands in for a broker's servers.
"""

from __future__ import annotations

import hashlib
import heapq
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, Self

from domain.errors import ValidationError
from domain.execution import BrokerOrder, Execution
from domain.market import Tick
from domain.model import OrderType, Side, TimeInForce
from domain.orders import OrderLeg, OrderStatus
from domain.ports import MarketClock
from domain.serde import parse_decimal, parse_non_negative_decimal

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)
CENT = Decimal("0.01")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    latency: timedelta = timedelta(0)
    slippage_bps: Decimal = ZERO
    partial_fill_fraction: Decimal | None = None
    reject_symbols: frozenset[str] = frozenset()
    reject_rate: float = 0.0
    seed: int = 0
    supports_oco: bool = True
    supports_bracket: bool = True
    starting_cash: Decimal = Decimal(1_000_000)
    session_open: time = time(14, 30)
    session_close: time = time(21, 0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """From settings (every key optional); errors name the key."""
        fraction = data.get("partial_fill_fraction")
        rate = data.get("reject_rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValidationError("reject_rate", "must be a number from 0 to 1")
        partial = None if fraction is None else parse_decimal(fraction, "partial_fill_fraction")
        if partial is not None and not ZERO < partial <= ONE:
            raise ValidationError("partial_fill_fraction", "must be above 0 and at most 1")
        symbols = data.get("reject_symbols") or []
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise ValidationError("reject_symbols", "must be a list of symbols")
        latency_ms = parse_non_negative_decimal(data.get("latency_ms", 0), "latency_ms")
        return cls(
            latency=timedelta(milliseconds=float(latency_ms)),
            slippage_bps=parse_non_negative_decimal(data.get("slippage_bps", 0), "slippage_bps"),
            partial_fill_fraction=partial,
            reject_symbols=frozenset(symbols),
            reject_rate=float(rate),
            seed=int(data.get("seed", 0)),
            supports_oco=bool(data.get("supports_oco", True)),
            supports_bracket=bool(data.get("supports_bracket", True)),
            starting_cash=parse_non_negative_decimal(
                data.get("starting_cash", 1_000_000), "starting_cash"
            ),
        )


@dataclass(slots=True)
class _SimOrder:
    broker_order_id: str
    client_order_id: str
    leg: OrderLeg
    ts_eligible: datetime
    ts_expires: datetime | None = None
    status: OrderStatus = OrderStatus.NEW
    filled_qty: Decimal = ZERO
    notional: Decimal = ZERO
    triggered: bool = False
    watermark: Decimal | None = None
    oco_peer: str | None = None
    reject_reason: str | None = None
    exits: tuple[str, ...] = ()  # a bracket's entry: its held exits

    @property
    def remaining(self) -> Decimal:
        return self.leg.quantity - self.filled_qty

    @property
    def is_open(self) -> bool:
        return self.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)

    def view(self) -> BrokerOrder:
        average = None if self.filled_qty == 0 else (self.notional / self.filled_qty)
        return BrokerOrder(
            broker_order_id=self.broker_order_id,
            client_order_id=self.client_order_id,
            status=self.status.value,
            filled_qty=self.filled_qty,
            avg_fill_price=None if average is None else average.quantize(Decimal("0.000001")),
            symbol=self.leg.symbol,
            side=self.leg.side.value,
            quantity=self.leg.quantity,
            reject_reason=self.reject_reason,
        )


@dataclass
class SimulatedBroker:
    config: SimulatorConfig = field(default_factory=SimulatorConfig)
    _orders: dict[str, _SimOrder] = field(default_factory=dict)
    _open_by_symbol: dict[str, dict[str, _SimOrder]] = field(default_factory=dict)
    _last: dict[str, Decimal] = field(default_factory=dict)
    _last_float: dict[str, float] = field(default_factory=dict)
    _last_ts: dict[str, datetime] = field(default_factory=dict)
    _positions: dict[str, Decimal] = field(default_factory=dict)
    _ts_market: datetime = EPOCH
    _expiries: list[tuple[datetime, str]] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _executions: list[Execution] = field(default_factory=list)
    submissions: int = 0

    def __post_init__(self) -> None:
        self._cash = self.config.starting_cash

    # -- market data ---------------------------------------------------------------------

    def supports_oco(self, take_profit: OrderLeg, stop_loss: OrderLeg) -> bool:
        return self.config.supports_oco

    def supports_bracket(self, entry: OrderLeg, exits: Sequence[OrderLeg]) -> bool:
        return (
            self.config.supports_bracket
            and len(exits) in (1, 2)
            and all(
                (leg.symbol, leg.side, leg.quantity)
                == (entry.symbol, entry.side.opposite, entry.quantity)
                for leg in exits
            )
        )

    def on_trade(self, symbol: str, price: Decimal, ts: datetime) -> list[BrokerOrder]:
        """A print: market time moves, and the symbol's open orders may fill. Returns the
        orders that changed."""
        with self._lock:
            seen = self._last_ts.get(symbol)
            if seen is not None and ts <= seen:
                return []  # a print already seen (a redelivered batch) fills nothing again
            self._last_ts[symbol] = ts
            if ts > self._ts_market:
                self._ts_market = ts
            self._last[symbol] = price
            self._last_float[symbol] = float(price)
            changed = {o.client_order_id: o for o in self._expire()}
            book = self._open_by_symbol.get(symbol)
            if not book:
                return list(changed.values())
            for order in list(book.values()):
                if order.is_open and self._match(order, price, ts):
                    changed[order.client_order_id] = order.view()
                    for other in self._linked(order):
                        changed[other.client_order_id] = other.view()
            return list(changed.values())

    def on_trades(self, ticks: Iterable[Tick]) -> list[BrokerOrder]:
        """A batch of prints, in order. Symbols without open orders only move the last
        price (kept as the feed's float until someone asks), so a busy feed stays cheap."""
        changed: dict[str, BrokerOrder] = {}
        with self._lock:
            latest = self._ts_market
            for tick in ticks:
                symbol = tick.symbol
                if self._open_by_symbol.get(symbol):
                    for order in self.on_trade(symbol, Decimal(repr(tick.price)), tick.ts_event):
                        changed[order.client_order_id] = order
                else:
                    seen = self._last_ts.get(symbol)
                    if seen is not None and tick.ts_event <= seen:
                        continue
                    self._last_ts[symbol] = tick.ts_event
                    self._last_float[symbol] = tick.price
                    self._last.pop(symbol, None)
                if tick.ts_event > latest:
                    latest = tick.ts_event
            if latest > self._ts_market:
                self._ts_market = latest
            for order in self._expire():
                changed[order.client_order_id] = order
        return list(changed.values())

    def _expire(self) -> list[BrokerOrder]:
        """Day orders still open when their session closes expire."""
        expired = []
        while self._expiries and self._expiries[0][0] <= self._ts_market:
            _, cid = heapq.heappop(self._expiries)
            order = self._orders[cid]
            if order.is_open:
                order.status = OrderStatus.EXPIRED
                self._close(order)
                expired.append(order.view())
                expired.extend(other.view() for other in self._linked(order))
        return expired

    def _last_price(self, symbol: str) -> Decimal | None:
        price = self._last.get(symbol)
        if price is None and symbol in self._last_float:
            price = self._last[symbol] = Decimal(repr(self._last_float[symbol]))
        return price

    # -- matching --------------------------------------------------------------------------

    def _slipped(self, side: Side, price: Decimal) -> Decimal:
        slip = price * self.config.slippage_bps / BPS
        return (price + slip * side.sign).quantize(CENT)

    def _trail_stop(self, order: _SimOrder, price: Decimal) -> Decimal:
        leg = order.leg
        sell = leg.side is Side.SELL
        mark = order.watermark
        if mark is None or (sell and price > mark) or (not sell and price < mark):
            order.watermark = mark = price
        if leg.trail_price is not None:
            return mark - leg.trail_price if sell else mark + leg.trail_price
        percent = (leg.trail_percent or ZERO) / Decimal(100)
        return mark * (ONE - percent) if sell else mark * (ONE + percent)

    def _fill_price(self, order: _SimOrder, price: Decimal) -> Decimal | None:
        """The price this print fills ``order`` at, or None if it does not."""
        leg = order.leg
        buy = leg.side is Side.BUY
        kind = leg.order_type
        if kind in (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP):
            if not order.triggered:
                if kind is OrderType.TRAILING_STOP:
                    stop = self._trail_stop(order, price)
                else:
                    stop = leg.stop_price or ZERO
                if (buy and price >= stop) or (not buy and price <= stop):
                    order.triggered = True
                else:
                    return None
            if kind is not OrderType.STOP_LIMIT:
                return self._slipped(leg.side, price)
        if kind is OrderType.MARKET:
            return self._slipped(leg.side, price)
        limit = leg.limit_price or ZERO
        if (buy and price <= limit) or (not buy and price >= limit):
            return price
        return None

    def _fill_quantity(self, order: _SimOrder) -> Decimal:
        fraction = self.config.partial_fill_fraction
        if fraction is None:
            return order.remaining
        piece = (order.leg.quantity * fraction).to_integral_value(rounding=ROUND_DOWN)
        return min(order.remaining, max(piece, ONE))

    def _match(self, order: _SimOrder, price: Decimal, ts: datetime) -> bool:
        if ts < order.ts_eligible:
            return False
        fill_price = self._fill_price(order, price)
        if fill_price is None:
            return False
        quantity = self._fill_quantity(order)
        order.filled_qty += quantity
        order.notional += quantity * fill_price
        self._executions.append(
            Execution(
                execution_id=f"sim-x{len(self._executions) + 1}",
                broker_order_id=order.broker_order_id,
                client_order_id=order.client_order_id,
                symbol=order.leg.symbol,
                side=order.leg.side.value,
                quantity=quantity,
                price=fill_price,
                cum_qty=order.filled_qty,
                ts_executed=ts,
            )
        )
        signed = quantity * order.leg.side.sign
        self._positions[order.leg.symbol] = self._positions.get(order.leg.symbol, ZERO) + signed
        self._cash -= signed * fill_price
        if order.filled_qty == order.leg.quantity:
            order.status = OrderStatus.FILLED
            self._close(order)
        else:
            order.status = OrderStatus.PARTIALLY_FILLED
        return True

    def _close(self, order: _SimOrder) -> None:
        book = self._open_by_symbol.get(order.leg.symbol)
        if book is not None:
            book.pop(order.client_order_id, None)

    def _linked(self, order: _SimOrder) -> list[_SimOrder]:
        """What ``order`` moving on does to the orders linked to it, which are returned:
        filled, it cancels its OCO peer; a bracket's entry filled in full releases its held
        exits, and one that ended otherwise cancels them."""
        changed = []
        if order.status is OrderStatus.FILLED and order.oco_peer is not None:
            peer = self._orders[order.oco_peer]
            if peer.is_open:
                peer.status = OrderStatus.CANCELED
                self._close(peer)
                changed.append(peer)
        if order.is_open:
            return changed
        for cid in order.exits:
            held = self._orders[cid]
            if held.status is not OrderStatus.HELD:
                continue
            if order.status is OrderStatus.FILLED:
                held.status = OrderStatus.NEW
                held.ts_eligible = self._ts_market + self.config.latency
                self._work(held)
            else:
                held.status = (
                    OrderStatus.REJECTED
                    if order.status is OrderStatus.REJECTED
                    else OrderStatus.CANCELED
                )
                held.reject_reason = order.reject_reason
            changed.append(held)
        return changed

    # -- order entry -----------------------------------------------------------------------

    def _rejection(self, leg: OrderLeg, client_order_id: str) -> str | None:
        if leg.symbol in self.config.reject_symbols:
            return f"{leg.symbol} is not tradable"
        if self.config.reject_rate > 0:
            digest = hashlib.sha256(f"{self.config.seed}:{client_order_id}".encode()).digest()
            if int.from_bytes(digest[:8], "big") / 2**64 < self.config.reject_rate:
                return "rejected by the simulated exchange"
        if leg.side is Side.BUY:
            price = leg.limit_price or leg.stop_price or self._last_price(leg.symbol)
            if price is not None and price * leg.quantity > self._cash:
                return "insufficient buying power"
        return None

    def _enter(self, leg: OrderLeg, client_order_id: str, *, held: bool = False) -> _SimOrder:
        existing = self._orders.get(client_order_id)
        if existing is not None:
            return existing
        self.submissions += 1
        order = _SimOrder(
            broker_order_id=f"sim-{len(self._orders) + 1:08d}",
            client_order_id=client_order_id,
            leg=leg,
            ts_eligible=self._ts_market + self.config.latency,
        )
        self._orders[client_order_id] = order
        if held:  # an exit waiting for its entry: neither checked nor working yet
            order.status = OrderStatus.HELD
            return order
        reason = self._rejection(leg, client_order_id)
        if reason is not None:
            order.status = OrderStatus.REJECTED
            order.reject_reason = reason
            return order
        self._work(order)
        return order

    def _work(self, order: _SimOrder) -> None:
        """The order is working: in its symbol's book, and expiring with its session."""
        self._open_by_symbol.setdefault(order.leg.symbol, {})[order.client_order_id] = order
        if order.leg.time_in_force in (TimeInForce.DAY, TimeInForce.OPG, TimeInForce.CLS):
            order.ts_expires = self._session_close_after(order.ts_eligible)
            heapq.heappush(self._expiries, (order.ts_expires, order.client_order_id))

    def _session_close_after(self, moment: datetime) -> datetime:
        sessions = self.calendar(moment.date(), moment.date() + timedelta(days=7))
        return next(close for _, close in sessions if close > moment)

    def _match_now(self, order: _SimOrder) -> None:
        """A new order meets the last print (with no latency); an immediate-or-cancel order
        keeps what filled and cancels the rest, a fill-or-kill fills whole or not at all."""
        last = self._last_price(order.leg.symbol)
        tif = order.leg.time_in_force
        ready = last is not None and self.config.latency == timedelta(0) and order.is_open
        whole = self._fill_quantity(order) == order.remaining
        allowed = tif is not TimeInForce.FOK or whole
        if ready and last is not None and allowed:
            self._match(order, last, self._ts_market)
        if tif in (TimeInForce.IOC, TimeInForce.FOK) and order.is_open:
            order.status = OrderStatus.CANCELED
            self._close(order)
        self._linked(order)

    def submit(self, leg: OrderLeg, client_order_id: str) -> BrokerOrder:
        """Idempotent by client order id: a second submit returns the first order."""
        with self._lock:
            fresh = client_order_id not in self._orders
            order = self._enter(leg, client_order_id)
            if fresh:
                self._match_now(order)
            return order.view()

    def submit_oco(
        self, take_profit: OrderLeg, stop_loss: OrderLeg, client_order_ids: tuple[str, str]
    ) -> tuple[BrokerOrder, BrokerOrder]:
        if not self.config.supports_oco:
            raise ValidationError("order_class", "this broker does not take OCO orders")
        tp_id, sl_id = client_order_ids
        with self._lock:
            fresh = tp_id not in self._orders
            tp = self._enter(take_profit, tp_id)
            sl = self._enter(stop_loss, sl_id)
            if fresh:
                tp.oco_peer, sl.oco_peer = sl_id, tp_id
                self._match_now(tp)
                self._match_now(sl)
            return tp.view(), sl.view()

    def submit_bracket(
        self, entry: OrderLeg, exits: Sequence[OrderLeg], client_order_ids: Sequence[str]
    ) -> list[BrokerOrder]:
        if not self.supports_bracket(entry, exits):
            raise ValidationError("order_class", "these legs do not make a bracket here")
        entry_id, *exit_ids = client_order_ids
        if len(exit_ids) != len(exits):
            raise ValidationError("client_order_ids", "one id for the entry and each exit")
        with self._lock:
            fresh = entry_id not in self._orders
            pairs = zip(exits, exit_ids, strict=True)
            held = [self._enter(leg, cid, held=True) for leg, cid in pairs]
            parent = self._enter(entry, entry_id)
            if fresh:
                parent.exits = tuple(exit_ids)
                if len(held) == 2:
                    held[0].oco_peer, held[1].oco_peer = exit_ids[1], exit_ids[0]
                self._match_now(parent)
            return [parent.view(), *(order.view() for order in held)]

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        with self._lock:
            order = self._orders.get(client_order_id)
            if order is None:
                return None
            if order.is_open or order.status is OrderStatus.HELD:
                order.status = OrderStatus.CANCELED
                self._close(order)
                self._linked(order)
            return order.view()

    def get_by_client_order_id(self, client_order_id: str) -> BrokerOrder | None:
        with self._lock:
            order = self._orders.get(client_order_id)
            return None if order is None else order.view()

    def executions(self, since: datetime) -> list[Execution]:
        with self._lock:
            return [e for e in self._executions if e.ts_executed >= since]

    def open_orders(self) -> list[BrokerOrder]:
        with self._lock:
            working = [o for book in self._open_by_symbol.values() for o in book.values()]
            held = [o for o in self._orders.values() if o.status is OrderStatus.HELD]
            return [o.view() for o in working + held]

    def positions(self) -> dict[str, Decimal]:
        with self._lock:
            return {s: q for s, q in self._positions.items() if q != 0}

    def buying_power(self) -> Decimal:
        with self._lock:
            return self._cash

    def last_price(self, symbol: str) -> Decimal | None:
        with self._lock:
            return self._last_price(symbol)

    # -- market hours ----------------------------------------------------------------------

    def _session(self, day: date) -> tuple[datetime, datetime] | None:
        if day.weekday() >= 5:
            return None
        return (
            datetime.combine(day, self.config.session_open, UTC),
            datetime.combine(day, self.config.session_close, UTC),
        )

    def calendar(self, start: date, end: date) -> list[tuple[datetime, datetime]]:
        sessions = []
        day = start
        while day <= end:
            session = self._session(day)
            if session is not None:
                sessions.append(session)
            day += timedelta(days=1)
        return sessions

    def clock(self) -> MarketClock:
        with self._lock:
            now = self._ts_market
        today = self._session(now.date())
        is_open = today is not None and today[0] <= now < today[1]
        upcoming = self.calendar(now.date(), now.date() + timedelta(days=7))
        next_open = next((o for o, _ in upcoming if o > now), upcoming[-1][0])
        next_close = next((c for _, c in upcoming if c > now), upcoming[-1][1])
        return MarketClock(now, is_open, next_open, next_close)
