"""The ``Broker`` port over Alpaca's trading API, through ``alpaca-py``.

Submitting is idempotent by client order id. alpaca-py itself resends a POST that got 429
or 504, and a resend of an order Alpaca already took answers 422 ("client order id must be
unique"). So after a 422 of that kind, a timeout or a 5xx, the order is looked up by its
client order id before anything else is concluded. Errors map to the domain's tree: 429,
5xx and transport failures are retryable; 403 and 422 rejections are final, with Alpaca's
message. A client-side limiter keeps the account under its 200 requests a minute across
threads.

A bracket's exits go to Alpaca as one OCO order (equities): Alpaca names only its parent,
the take-profit, with the desk's client order id, and gives the stop-loss leg an id of its
own; the adapter finds that leg through its parent, so both are looked up, followed and
cancelled by the desk's ids. Crypto takes simple orders only (no trailing stops, no OCO):
the adapter says so up front instead of letting the API reject them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
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
from domain.execution import BrokerOrder, Execution, oco_stop_loss_id, oco_take_profit_id
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
OCO_TIME_IN_FORCE = frozenset({"day", "gtc"})


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
            not is_crypto(take_profit.symbol)
            and take_profit.order_type is OrderType.LIMIT
            and stop_loss.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
            and take_profit.quantity == take_profit.quantity.to_integral_value()
            and take_profit.time_in_force.value in OCO_TIME_IN_FORCE
            and stop_loss.time_in_force is take_profit.time_in_force
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
    def _request(leg: OrderLeg, client_order_id: str) -> OrderRequest:
        if is_crypto(leg.symbol) and leg.order_type is OrderType.TRAILING_STOP:
            raise ValidationError("order_type", "Alpaca takes no trailing stops for crypto")
        common: dict[str, Any] = {
            "symbol": leg.symbol,
            "qty": float(leg.quantity),
            "side": OrderSide.BUY if leg.side is Side.BUY else OrderSide.SELL,
            "time_in_force": AlpacaTimeInForce(leg.time_in_force.value),
            "client_order_id": client_order_id,
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
            order_class=OrderClass.OCO,
            take_profit=TakeProfitRequest(limit_price=float(take_profit.limit_price or 0)),
            stop_loss=StopLossRequest(
                stop_price=float(stop_loss.stop_price or 0),
                limit_price=None if stop_loss.limit_price is None else float(stop_loss.limit_price),
            ),
        )
        parent = self._send(request, tp_id)
        stop = self._stop_leg(parent, sl_id)
        if stop is None:
            raise RetryableFault(f"OCO {tp_id}: Alpaca answered without its stop-loss leg")
        return self._view(parent), stop

    def _find(self, client_order_id: str) -> Any:
        """Alpaca's order with this client order id (its legs included), or None."""
        try:
            return self._call(lambda: self._client.get_order_by_client_id(client_order_id))
        except TerminalError as fault:
            if " 404:" in str(fault):
                return None
            raise

    def _stop_leg(self, parent: Any, stop_loss_id: str) -> BrokerOrder | None:
        """The stop-loss leg of an OCO parent, under the desk's id for it."""
        legs = parent.legs
        if not legs and _value(parent.order_class) == OrderClass.OCO.value:
            nested = GetOrderByIdRequest(nested=True)
            parent = self._call(lambda: self._client.get_order_by_id(parent.id, nested))
            legs = parent.legs
        stops = [
            leg
            for leg in legs or ()
            if _value(leg.type) in ("stop", "stop_limit") and _value(leg.status) != "replaced"
        ]
        if not stops:
            return None
        return dataclasses.replace(self._view(stops[0]), client_order_id=stop_loss_id)

    def get_by_client_order_id(self, client_order_id: str) -> BrokerOrder | None:
        parent_id = oco_take_profit_id(client_order_id)
        if parent_id is not None:
            parent = self._find(parent_id)
            if parent is not None and _value(parent.order_class) == OrderClass.OCO.value:
                return self._stop_leg(parent, client_order_id)
        order = self._find(client_order_id)
        return None if order is None else self._view(order)

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
        """An order and its (open) legs, OCO stop-losses under the desk's ids."""
        views = [self._view(order)]
        stop_loss_id = oco_stop_loss_id(str(order.client_order_id))
        for leg in order.legs or ():
            view = self._view(leg)
            if stop_loss_id is not None and _value(leg.type) in ("stop", "stop_limit"):
                view = dataclasses.replace(view, client_order_id=stop_loss_id)
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
