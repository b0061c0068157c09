"""The ``Broker`` port over Alpaca's trading API, through ``alpaca-py``.

Submitting is idempotent by client order id. alpaca-py itself resends a POST that got 429
or 504, and a resend of an order Alpaca already took answers 422 ("client order id must be
unique"). So after a 422 of that kind, a timeout or a 5xx, the order is looked up by its
client order id before anything else is concluded. Errors map to the domain's tree: 429,
5xx and transport failures are retryable; 403 and 422 rejections are final, with Alpaca's
message. A client-side limiter keeps the account under its 200 requests a minute across
threads.

Alpaca's advanced order classes (equities) name only their parent with the desk's client
order id and give each leg an id of their own; the adapter finds a leg through its parent,
so every order is looked up, followed and cancelled by the desk's ids:

- a bracket (entry, take-profit and stop-loss) or OTO (entry and one exit): the parent is
  the entry (``<intent>:entry``), the legs answer to ``<intent>:tp`` and ``<intent>:sl``;
- an OCO of exits: the parent is the take-profit, the stop-loss leg answers to the
  stop-loss's id (``domain.execution.oco_stop_loss_id``).

Crypto takes simple orders only (no trailing stops, no advanced classes): the adapter says
so up front instead of letting the API reject them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from functools import partial
from typing import Any

import requests
import requests.adapters
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus
from alpaca.trading.enums import TimeInForce as AlpacaTimeInForce
from alpaca.trading.requests import (
    GetCalendarRequest,
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    ReplaceOrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from domain.errors import RetryableFault, TerminalError, ValidationError
from domain.execution import (
    STOP_LOSS,
    TAKE_PROFIT,
    BrokerOrder,
    Execution,
    bracket_entry_id,
    bracket_exit_ids,
    oco_stop_loss_id,
    oco_take_profit_id,
)
from domain.model import OrderType, Side
from domain.orders import OrderLeg
from domain.ports import MarketClock
from domain.serde import parse_decimal

log = logging.getLogger("desk.alpaca")

DUPLICATE_CLIENT_ORDER_ID = "client_order_id must be unique"
OPEN_STATUSES = frozenset(
    {
        "new",
        "accepted",
        "pending_new",
        "partially_filled",
        "held",
        "accepted_for_bidding",
        "pending_replace",
        "pending_cancel",
        "calculated",
    }
)
REQUESTS_PER_MINUTE = 200
ACTIVITY_PAGE_MAX = 100
ADVANCED_TIME_IN_FORCE = frozenset({"day", "gtc"})
BRACKET_ENTRY_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT})
EXIT_TYPES = {
    OrderType.LIMIT: TAKE_PROFIT,
    OrderType.STOP: STOP_LOSS,
    OrderType.STOP_LIMIT: STOP_LOSS,
}


class RateLimiter:
    """At most ``limit`` calls in any ``window`` seconds, across threads: a caller over the
    limit waits for the oldest call to age out."""

    def __init__(self, limit: int = REQUESTS_PER_MINUTE, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                while self._calls and now - self._calls[0] >= self.window:
                    self._calls.popleft()
                if len(self._calls) < self.limit:
                    self._calls.append(now)
                    return
                wait = self.window - (now - self._calls[0])
            time.sleep(max(wait, 0.001))


CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC", "ETH")


def is_crypto(symbol: str) -> bool:
    return "/" in symbol


def desk_symbol(symbol: str, asset_class: str) -> str:
    """Alpaca names crypto positions without the slash (``BTCUSD``); orders and the books
    say ``BTC/USD``."""
    if asset_class != "crypto" or "/" in symbol:
        return symbol
    for quote in CRYPTO_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}/{quote}"
    return symbol


def _status_of(error: APIError) -> int | None:
    status = getattr(error, "status_code", None)
    return None if status is None else int(status)


def _message_of(error: APIError) -> str:
    try:
        return str(error.message)
    except (ValueError, KeyError, TypeError):
        return str(error)


def alpaca_fault(error: Exception) -> Exception:
    """The domain's view of a failed call."""
    if isinstance(error, APIError):
        status = _status_of(error)
        message = _message_of(error)
        if status == 429 or (status is not None and status >= 500):
            retry_after = None
            response = error.response
            reset = None if response is None else response.headers.get("X-Ratelimit-Reset")
            if reset is not None and reset.isdigit():
                retry_after = max(0.0, int(reset) - time.time())
            return RetryableFault(f"Alpaca {status}: {message}", retry_after_s=retry_after)
        return TerminalError(f"Alpaca {status}: {message}")
    if isinstance(error, requests.RequestException):
        return RetryableFault(f"Alpaca unreachable: {error}")
    return error


def _decimal(value: object) -> Decimal | None:
    return None if value in (None, "") else parse_decimal(str(value), "alpaca")


def _value(enum_or_text: Any) -> str:
    return str(getattr(enum_or_text, "value", enum_or_text))


class TimeoutAdapter(requests.adapters.HTTPAdapter):
    """Gives every request a timeout unless it has one."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        return super().send(request, **kwargs)


class AlpacaBroker:
    """Implements ``domain.ports.Broker``; paper trading unless told otherwise."""

    def __init__(
        self,
        client: TradingClient,
        *,
        limiter: RateLimiter | None = None,
        last_trade: Callable[[str], Decimal | None] | None = None,
        page_size: int = 500,
        timeout_s: float = 10.0,
    ) -> None:
        self._client = client
        self._page_size = page_size
        # alpaca-py sets no timeout: a hung connection would hold an activity for ever.
        session = getattr(client, "_session", None)
        if session is not None:
            adapter = TimeoutAdapter(timeout_s)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._limiter = limiter or RateLimiter()
        self._last_trade = last_trade
        # A leg's parent, by the desk's ids, once seen: a leg never changes parent, so a
        # later lookup of the leg asks for its parent straight away (one request, not a
        # probe for an order of its own first).
        self._parents: dict[str, str] = {}

    @classmethod
    def connect(
        cls, key_id: str, secret: str, *, paper: bool = True, url_override: str | None = None
    ) -> AlpacaBroker:
        return cls(TradingClient(key_id, secret, paper=paper, url_override=url_override))

    def supports_oco(self, take_profit: OrderLeg, stop_loss: OrderLeg) -> bool:
        """Alpaca links a limit take-profit with a stop or stop-limit stop-loss, for
        equities, in whole shares, good for the day or until cancelled; anything else (a
        trailing stop-loss, a crypto pair, a fractional quantity) is linked by the
        orchestration."""
        return (
            _advanced(take_profit)
            and EXIT_TYPES.get(take_profit.order_type) == TAKE_PROFIT
            and EXIT_TYPES.get(stop_loss.order_type) == STOP_LOSS
            and stop_loss.time_in_force is take_profit.time_in_force
        )

    def supports_bracket(self, entry: OrderLeg, exits: Sequence[OrderLeg]) -> bool:
        """Alpaca takes a market or limit entry with a limit take-profit and a stop or
        stop-limit stop-loss (a bracket), or with one of them (OTO), for equities, in whole
        shares, good for the day or until cancelled, every leg on the same terms."""
        kinds = [EXIT_TYPES.get(leg.order_type) for leg in exits]
        return (
            _advanced(entry)
            and entry.order_type in BRACKET_ENTRY_TYPES
            and len(exits) in (1, 2)
            and None not in kinds
            and len(set(kinds)) == len(kinds)
            and all(
                (leg.symbol, leg.side, leg.quantity, leg.time_in_force)
                == (entry.symbol, entry.side.opposite, entry.quantity, entry.time_in_force)
                for leg in exits
            )
        )

    def _call(self, call: Callable[[], Any]) -> Any:
        """One API call under the rate limit; alpaca-py answers models (``raw_data`` off)."""
        self._limiter.acquire()
        try:
            return call()
        except (APIError, requests.RequestException) as error:
            raise alpaca_fault(error) from error

    # -- orders ------------------------------------------------------------------------------

    @staticmethod
    def _view(order: Any) -> BrokerOrder:
        return BrokerOrder(
            broker_order_id=str(order.id),
            client_order_id=str(order.client_order_id),
            status=_value(order.status),
            filled_qty=_decimal(order.filled_qty) or Decimal(0),
            avg_fill_price=_decimal(order.filled_avg_price),
            symbol=order.symbol,
            side=_value(order.side),
            quantity=_decimal(order.qty),
        )

    @staticmethod
    def _request(leg: OrderLeg, client_order_id: str, **advanced: Any) -> OrderRequest:
        """The request for one leg; ``advanced``: an order class and its exits."""
        if is_crypto(leg.symbol) and leg.order_type is OrderType.TRAILING_STOP:
            raise ValidationError("order_type", "Alpaca takes no trailing stops for crypto")
        common: dict[str, Any] = {
            "symbol": leg.symbol,
            "qty": float(leg.quantity),
            "side": OrderSide.BUY if leg.side is Side.BUY else OrderSide.SELL,
            "time_in_force": AlpacaTimeInForce(leg.time_in_force.value),
            "client_order_id": client_order_id,
            **advanced,
        }
        if leg.order_type is OrderType.MARKET:
            return MarketOrderRequest(**common)
        if leg.order_type is OrderType.LIMIT:
            return LimitOrderRequest(**common, limit_price=float(leg.limit_price or 0))
        if leg.order_type is OrderType.STOP:
            return StopOrderRequest(**common, stop_price=float(leg.stop_price or 0))
        if leg.order_type is OrderType.STOP_LIMIT:
            return StopLimitOrderRequest(
                **common,
                stop_price=float(leg.stop_price or 0),
                limit_price=float(leg.limit_price or 0),
            )
        trail: dict[str, float] = {}
        if leg.trail_percent is not None:
            trail["trail_percent"] = float(leg.trail_percent)
        if leg.trail_price is not None:
            trail["trail_price"] = float(leg.trail_price)
        return TrailingStopOrderRequest(**common, **trail)

    def _send(self, request: OrderRequest, client_order_id: str) -> Any:
        """Submit once, idempotently: after a fault that may hide a taken order, the order
        is looked up by its client order id before anything is concluded."""
        try:
            return self._call(lambda: self._client.submit_order(request))
        except (RetryableFault, TerminalError) as fault:
            duplicate = DUPLICATE_CLIENT_ORDER_ID in str(fault)
            if isinstance(fault, TerminalError) and not duplicate:
                raise  # a rejection: final, with Alpaca's reason
            # Sent before, or maybe taken before the answer was lost: ask, do not resend.
            found = self._find(client_order_id)
            if found is not None:
                return found
            raise RetryableFault(f"order {client_order_id}: {fault}") from fault

    def submit(self, leg: OrderLeg, client_order_id: str) -> BrokerOrder:
        return self._view(self._send(self._request(leg, client_order_id), client_order_id))

    def submit_oco(
        self, take_profit: OrderLeg, stop_loss: OrderLeg, client_order_ids: tuple[str, str]
    ) -> tuple[BrokerOrder, BrokerOrder]:
        tp_id, sl_id = client_order_ids
        if not self.supports_oco(take_profit, stop_loss):
            raise ValidationError(
                "order_class",
                "Alpaca links a limit take-profit and a stop or stop-limit stop-loss, "
                "for equities only",
            )
        if oco_stop_loss_id(tp_id) != sl_id:
            raise ValidationError("client_order_id", f"{sl_id} is not the stop-loss of {tp_id}")
        if (take_profit.symbol, take_profit.side, take_profit.quantity) != (
            stop_loss.symbol,
            stop_loss.side,
            stop_loss.quantity,
        ):
            raise ValidationError("stop_loss", "an OCO's legs share symbol, side and quantity")
        request = LimitOrderRequest(
            symbol=take_profit.symbol,
            qty=float(take_profit.quantity),
            side=OrderSide.BUY if take_profit.side is Side.BUY else OrderSide.SELL,
            time_in_force=AlpacaTimeInForce(take_profit.time_in_force.value),
            client_order_id=tp_id,
            **_exit_requests(OrderClass.OCO, (take_profit, stop_loss)),
        )
        parent = self._send(request, tp_id)
        stop = self._leg_of(parent, STOP_LOSS, sl_id)
        if stop is None:
            raise RetryableFault(f"OCO {tp_id}: Alpaca answered without its stop-loss leg")
        return self._view(parent), stop

    def submit_bracket(
        self, entry: OrderLeg, exits: Sequence[OrderLeg], client_order_ids: Sequence[str]
    ) -> list[BrokerOrder]:
        """A bracket (two exits) or an OTO (one); Alpaca holds the exits until the entry
        has filled in full, then cancels one when the other fills."""
        if not self.supports_bracket(entry, exits):
            raise ValidationError(
                "order_class",
                "Alpaca takes a market or limit entry with a limit take-profit and a stop or "
                "stop-limit stop-loss, for equities, in whole shares, day or gtc",
            )
        entry_id, *exit_ids = client_order_ids
        names = bracket_exit_ids(entry_id)
        kinds = [EXIT_TYPES[leg.order_type] for leg in exits]
        wanted = {TAKE_PROFIT: names[0], STOP_LOSS: names[1]} if names is not None else {}
        if [wanted.get(kind) for kind in kinds] != exit_ids:
            raise ValidationError("client_order_id", f"{exit_ids} are not the exits of {entry_id}")
        order_class = OrderClass.BRACKET if len(exits) == 2 else OrderClass.OTO
        parent = self._send(
            self._request(entry, entry_id, **_exit_requests(order_class, exits)), entry_id
        )
        views = [self._view(parent)]
        for kind, cid in zip(kinds, exit_ids, strict=True):
            leg = self._leg_of(parent, kind, cid)
            if leg is None:
                raise RetryableFault(f"{entry_id}: Alpaca answered without the leg {cid}")
            views.append(leg)
        return views

    def _find(self, client_order_id: str) -> Any:
        """Alpaca's order with this client order id (its legs included), or None."""
        try:
            return self._call(lambda: self._client.get_order_by_client_id(client_order_id))
        except TerminalError as fault:
            if " 404:" in str(fault):
                return None
            raise

    def _leg_of(self, parent: Any, kind: str, desk_id: str) -> BrokerOrder | None:
        """The take-profit or stop-loss leg (``kind``) of an advanced order, under the
        desk's id for it."""
        legs = parent.legs
        if not legs and _value(parent.order_class) in ADVANCED_CLASSES:
            nested = GetOrderByIdRequest(nested=True)
            parent = self._call(lambda: self._client.get_order_by_id(parent.id, nested))
            legs = parent.legs
        mine = [leg for leg in legs or () if _exit_kind(leg) == kind]
        if not mine:
            return None
        self._parents[desk_id] = str(parent.client_order_id)
        # A replaced leg has a successor among the legs; without one, the replaced leg is
        # all there is to report.
        current = [leg for leg in mine if _value(leg.status) != "replaced"] or mine[-1:]
        return dataclasses.replace(self._view(current[0]), client_order_id=desk_id)

    def _bracket_leg(self, client_order_id: str, kind: str) -> BrokerOrder | None:
        """An exit that went with its entry as a bracket or OTO, found through the entry."""
        entry_id = bracket_entry_id(client_order_id)
        parent = None if entry_id is None else self._find(entry_id)
        if parent is None or _value(parent.order_class) not in BRACKET_CLASSES:
            return None
        return self._leg_of(parent, kind, client_order_id)

    def get_by_client_order_id(self, client_order_id: str) -> BrokerOrder | None:
        """By the desk's id. An exit may be a leg under another order's id: the stop-loss of
        an OCO under the take-profit, either exit of a bracket under the entry. Every case
        takes at most two requests, one once the leg's parent is known."""
        known_parent = self._parents.get(client_order_id)
        kind = _exit_kind_of_id(client_order_id)
        if known_parent is not None and kind is not None:
            parent = self._find(known_parent)
            if parent is not None:
                return self._leg_of(parent, kind, client_order_id)
        oco_parent_id = oco_take_profit_id(client_order_id)
        if oco_parent_id is not None:  # a stop-loss
            parent = self._find(oco_parent_id)
            if parent is not None and _value(parent.order_class) == OrderClass.OCO.value:
                return self._leg_of(parent, STOP_LOSS, client_order_id)
            if parent is None:  # no take-profit of its own: perhaps a bracket's leg
                leg = self._bracket_leg(client_order_id, STOP_LOSS)
                if leg is not None:
                    return leg
        order = self._find(client_order_id)
        if order is not None:
            return self._view(order)
        if oco_stop_loss_id(client_order_id) is not None:  # a take-profit
            return self._bracket_leg(client_order_id, TAKE_PROFIT)
        return None

    def get_by_id(self, broker_order_id: str) -> BrokerOrder | None:
        """By Alpaca's own order id (an OCO leg keeps Alpaca's client order id here)."""
        try:
            order = self._call(lambda: self._client.get_order_by_id(broker_order_id))
        except ValueError:  # not an order id at all (Alpaca's are UUIDs)
            return None
        except TerminalError as fault:
            if " 404:" in str(fault):
                return None
            raise
        return self._view(order)

    def replace(
        self,
        client_order_id: str,
        new_client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> BrokerOrder:
        """Amend an open order. Alpaca answers with a new order (the old one becomes
        ``replaced``), under ``new_client_order_id``; a resend after a lost answer finds it
        by that id instead of amending twice."""
        if quantity is None and limit_price is None and stop_price is None:
            raise ValidationError("replace", "give a new quantity, limit price or stop price")
        if quantity is not None and (quantity <= 0 or quantity != quantity.to_integral_value()):
            raise ValidationError("quantity", "Alpaca replaces whole share quantities only")
        already = self._find(new_client_order_id)
        if already is not None:
            return self._view(already)
        found = self.get_by_client_order_id(client_order_id)
        if found is None:
            raise TerminalError(f"Alpaca 404: no order {client_order_id}")
        request = ReplaceOrderRequest(
            qty=None if quantity is None else int(quantity),
            limit_price=None if limit_price is None else float(limit_price),
            stop_price=None if stop_price is None else float(stop_price),
            client_order_id=new_client_order_id,
        )
        try:
            order = self._call(
                lambda: self._client.replace_order_by_id(found.broker_order_id, request)
            )
        except (RetryableFault, TerminalError):
            # alpaca-py resends a PATCH that got a 504, and the resend of one that went
            # through is refused: the new id says whether it did.
            order = self._find(new_client_order_id)
            if order is None:
                raise
        return self._view(order)

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        found = self.get_by_client_order_id(client_order_id)
        if found is None:
            return None
        try:
            self._call(lambda: self._client.cancel_order_by_id(found.broker_order_id))
        except TerminalError as fault:
            if " 422:" not in str(fault):  # 422: no longer cancelable (filled, done)
                raise
        return self.get_by_client_order_id(client_order_id)

    def open_orders(self) -> list[BrokerOrder]:
        """Every open order: Alpaca answers at most ``page_size`` at a time, newest first,
        so the next page asks for those submitted before the oldest seen."""
        found: dict[str, BrokerOrder] = {}
        until: datetime | None = None
        while True:
            request = GetOrdersRequest(
                status=QueryOrderStatus.OPEN, limit=self._page_size, until=until, nested=True
            )
            page = self._call(partial(self._client.get_orders, request))
            before = len(found)
            for order in page:
                for view in self._with_legs(order):
                    found.setdefault(view.client_order_id, view)
            if len(page) < self._page_size or len(found) == before:
                return list(found.values())
            # ``until`` is exclusive: reach a moment past the oldest, so orders sharing its
            # timestamp are not skipped (the ones seen again are known by their id).
            until = min(order.submitted_at for order in page) + timedelta(microseconds=1)

    def _with_legs(self, order: Any, *, open_only: bool = True) -> list[BrokerOrder]:
        """An order and its (open) legs, each leg under the desk's id for it."""
        views = [self._view(order)]
        names = _leg_names(str(order.client_order_id))
        for leg in order.legs or ():
            view = self._view(leg)
            desk_id = names.get(_exit_kind(leg) or "")
            if desk_id is not None:
                view = dataclasses.replace(view, client_order_id=desk_id)
            if not open_only or view.status in OPEN_STATUSES:
                views.append(view)
        return views

    def executions(self, since: datetime) -> list[Execution]:
        """Alpaca's FILL activities after ``since``, oldest first, page by page (alpaca-py
        has no call for them: its REST client sends the request, signed and retried as
        every other). An activity names its order by Alpaca's id only; the orders of the
        same span give the desk's ids, legs of an OCO included."""
        activities: list[dict[str, Any]] = []
        params: dict[str, Any] = {
            "after": since.astimezone(UTC).isoformat(),
            "direction": "asc",
            "page_size": min(self._page_size, ACTIVITY_PAGE_MAX),
        }
        while True:
            page = self._call(partial(self._client.get, "/account/activities/FILL", dict(params)))
            if not isinstance(page, list):
                raise RetryableFault(f"Alpaca answered activities with {type(page).__name__}")
            activities.extend(page)
            if len(page) < params["page_size"]:
                break
            params["page_token"] = page[-1]["id"]
        if not activities:
            return []
        orders = self._orders_by_id(
            since, {str(a["order_id"]) for a in activities if a.get("order_id")}
        )
        found = [_execution(activity, orders) for activity in activities]
        return [execution for execution in found if execution is not None]

    def _orders_by_id(self, since: datetime, broker_ids: set[str]) -> dict[str, BrokerOrder]:
        """The orders of ``broker_ids`` by Alpaca's id, under the desk's ids and symbols."""
        found: dict[str, BrokerOrder] = {}
        until: datetime | None = None
        while not broker_ids <= found.keys():
            request = GetOrdersRequest(
                status=QueryOrderStatus.ALL,
                limit=self._page_size,
                after=since - timedelta(days=1),  # an order may predate its first fill
                until=until,
                nested=True,
            )
            page = self._call(partial(self._client.get_orders, request))
            for order in page:
                for view in self._with_legs(order, open_only=False):
                    found[view.broker_order_id] = view
            if len(page) < self._page_size:
                break
            until = min(order.submitted_at for order in page) + timedelta(microseconds=1)
        for broker_id in sorted(broker_ids - found.keys()):  # older orders (a GTC exit)
            older = self.get_by_id(broker_id)
            if older is not None:
                found[broker_id] = older
        return found

    # -- account and market ------------------------------------------------------------------

    def positions(self) -> dict[str, Decimal]:
        held = self._call(self._client.get_all_positions)
        result: dict[str, Decimal] = {}
        for position in held:
            quantity = _decimal(position.qty) or Decimal(0)
            if _value(position.side) == "short" and quantity > 0:
                quantity = -quantity
            result[desk_symbol(position.symbol, _value(position.asset_class))] = quantity
        return result

    def buying_power(self) -> Decimal:
        account = self._call(self._client.get_account)
        return _decimal(account.buying_power) or Decimal(0)

    def last_price(self, symbol: str) -> Decimal | None:
        return None if self._last_trade is None else self._last_trade(symbol)

    def clock(self) -> MarketClock:
        clock = self._call(self._client.get_clock)
        return MarketClock(
            ts_now=clock.timestamp.astimezone(UTC),
            is_open=bool(clock.is_open),
            ts_next_open=clock.next_open.astimezone(UTC),
            ts_next_close=clock.next_close.astimezone(UTC),
        )

    def calendar(self, start: date, end: date) -> list[tuple[datetime, datetime]]:
        days = self._call(
            lambda: self._client.get_calendar(GetCalendarRequest(start=start, end=end))
        )
        return [(_utc(day.open, day.date), _utc(day.close, day.date)) for day in days]


ADVANCED_CLASSES = frozenset({"oco", "bracket", "oto"})
BRACKET_CLASSES = frozenset({"bracket", "oto"})


def _advanced(leg: OrderLeg) -> bool:
    """Terms every leg of an advanced order needs at Alpaca."""
    return (
        not is_crypto(leg.symbol)
        and leg.quantity == leg.quantity.to_integral_value()
        and leg.time_in_force.value in ADVANCED_TIME_IN_FORCE
    )


def _exit_requests(order_class: OrderClass, exits: Sequence[OrderLeg]) -> dict[str, Any]:
    """An advanced order's class and its exits, as alpaca-py takes them."""
    fields: dict[str, Any] = {"order_class": order_class}
    for leg in exits:
        if EXIT_TYPES[leg.order_type] == TAKE_PROFIT:
            fields["take_profit"] = TakeProfitRequest(limit_price=float(leg.limit_price or 0))
        else:
            fields["stop_loss"] = StopLossRequest(
                stop_price=float(leg.stop_price or 0),
                limit_price=None if leg.limit_price is None else float(leg.limit_price),
            )
    return fields


def _exit_kind(order: Any) -> str | None:
    """Which exit an Alpaca leg is, by its type: a limit takes profit, a stop stops loss."""
    kind = _value(order.type)
    return TAKE_PROFIT if kind == "limit" else STOP_LOSS if kind in ("stop", "stop_limit") else None


def _exit_kind_of_id(client_order_id: str) -> str | None:
    """Which exit a desk id names (``<intent>:tp``, ``<intent>:sl-part``), if any."""
    if oco_stop_loss_id(client_order_id) is not None:
        return TAKE_PROFIT
    return STOP_LOSS if oco_take_profit_id(client_order_id) is not None else None


def _leg_names(parent_id: str) -> dict[str, str]:
    """The desk's ids of the legs under a parent with the desk's id ``parent_id``."""
    exits = bracket_exit_ids(parent_id)
    if exits is not None:
        return {TAKE_PROFIT: exits[0], STOP_LOSS: exits[1]}
    stop_loss_id = oco_stop_loss_id(parent_id)
    return {} if stop_loss_id is None else {STOP_LOSS: stop_loss_id}


def _execution(activity: dict[str, Any], orders: dict[str, BrokerOrder]) -> Execution | None:
    """One FILL activity; one that is missing a field or malformed is logged and left out
    (the order's own status still reaches the books), rather than stopping every later
    reconciliation at the same record."""
    try:
        broker_id = str(activity["order_id"])
        order = orders.get(broker_id)
        return Execution(
            execution_id=str(activity["id"]),
            broker_order_id=broker_id,
            client_order_id=None if order is None else order.client_order_id,
            # Alpaca spells crypto without the slash here; the order says it as the desk does.
            symbol=str(activity["symbol"]) if order is None else str(order.symbol),
            side=str(activity["side"]).removesuffix("_short"),
            quantity=parse_decimal(str(activity["qty"]), "qty"),
            price=parse_decimal(str(activity["price"]), "price"),
            cum_qty=parse_decimal(str(activity["cum_qty"]), "cum_qty"),
            ts_executed=datetime.fromisoformat(
                str(activity["transaction_time"]).replace("Z", "+00:00")
            ).astimezone(UTC),
        )
    except (KeyError, ValueError, ValidationError) as error:
        log.error("Alpaca FILL activity %s not understood: %s", activity.get("id"), error)
        return None


def _utc(moment: datetime | time_of_day, day: date) -> datetime:
    """alpaca-py gives calendar times as naive New York datetimes."""
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    if isinstance(moment, datetime):
        local = moment if moment.tzinfo else moment.replace(tzinfo=new_york)
    else:
        local = datetime.combine(day, moment, new_york)
    return local.astimezone(UTC)
