"""A local server that speaks Alpaca's trading REST protocol, enough for the broker
adapter: orders (with Alpaca's 422 for a client order id already taken), advanced orders
(the parent carries the client's id, each leg one of Alpaca's own: an OCO's parent is its
take-profit and its leg the stop-loss; a bracket's or an OTO's parent is the entry, and its
exits are held until the entry has filled in full, then one cancels the other; an entry
that ends without filling in full takes its held exits with it), replacing, positions, the
account, clock and calendar. ``faults`` script failures of order submissions."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

OPEN = {"new", "accepted", "partially_filled", "pending_new", "held"}


def _text(value: object) -> str | None:
    """Alpaca answers numbers as strings."""
    return None if value is None else str(value)


def _error(status: int, message: str, code: int = 40010000) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


@dataclass
class FakeAlpaca:
    """``faults`` for POST /v2/orders, one per request: "429" or "500" (refused before
    taking the order), "504-after" or "500-after" (taken, then the answer fails), or None.
    ``fill`` fills market orders at once at ``price``. ``reject`` answers 403 with it."""

    faults: deque[str | None] = field(default_factory=deque)
    price: Decimal = Decimal("100")
    fill: bool = True
    reject: str | None = None
    refuse_oco: str | None = None  # answer OCO orders 403 with this
    refuse_bracket: str | None = None  # answer bracket and OTO orders 403 with this
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)  # leg id -> parent id
    activities: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0
    patches: int = 0
    requests: int = 0
    calls: list[str] = field(default_factory=list)  # "METHOD path", in arrival order
    submitted: datetime = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        app.add_routes(
            [
                web.post("/v2/orders", self.submit),
                web.get("/v2/orders", self.list_orders),
                web.get("/v2/orders:by_client_order_id", self.by_client_order_id),
                web.get("/v2/orders/{id}", self.by_id),
                web.patch("/v2/orders/{id}", self.replace),
                web.delete("/v2/orders/{id}", self.cancel),
                web.get("/v2/positions", self.positions),
                web.get("/v2/account/activities/FILL", self.fill_activities),
                web.get("/v2/account", self.account),
                web.get("/v2/clock", self.clock),
                web.get("/v2/calendar", self.calendar),
            ]
        )
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        self.calls.append(f"{request.method} {request.path}")
        if request.headers.get("APCA-API-KEY-ID") != "key" or not request.headers.get(
            "APCA-API-SECRET-KEY"
        ):
            return _error(401, "unauthorized", 40110000)
        response: web.StreamResponse = await handler(request)
        return response

    def _by_cid(self, cid: str) -> dict[str, Any] | None:
        return next((o for o in self.orders.values() if o["client_order_id"] == cid), None)

    async def submit(self, request: web.Request) -> web.Response:
        self.posts += 1
        body = await request.json()
        fault = self.faults.popleft() if self.faults else None
        if fault in ("429", "500"):
            return _error(int(fault), "try again")
        cid = body.get("client_order_id") or uuid.uuid4().hex
        if self._by_cid(cid) is not None:
            return _error(422, "client_order_id must be unique", 40010001)
        if self.reject:
            return _error(403, self.reject, 40310000)
        if self.refuse_oco and body.get("order_class") == "oco":
            return _error(403, self.refuse_oco, 40310000)
        if self.refuse_bracket and body.get("order_class") in ("bracket", "oto"):
            return _error(403, self.refuse_bracket, 40310000)
        self.submitted += timedelta(seconds=1)  # each order a second after the last
        now = self.submitted.isoformat()
        order = {
            "id": str(uuid.uuid4()),
            "client_order_id": cid,
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "asset_id": str(uuid.uuid4()),
            "symbol": body["symbol"],
            "asset_class": "crypto" if "/" in body["symbol"] else "us_equity",
            "qty": str(body["qty"]),
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_class": body.get("order_class") or "simple",
            "order_type": body["type"],
            "type": body["type"],
            "side": body["side"],
            "time_in_force": body["time_in_force"],
            "limit_price": _text(body.get("limit_price")),
            "stop_price": _text(body.get("stop_price")),
            "trail_percent": _text(body.get("trail_percent")),
            "trail_price": _text(body.get("trail_price")),
            "status": "new",
            "extended_hours": False,
        }
        self.orders[order["id"]] = order
        if order["order_class"] == "oco":
            self._oco_leg(order, body)
        if order["order_class"] in ("bracket", "oto"):
            self._exit_legs(order, body)
        if self.fill and body["type"] == "market":
            self._execute(order, Decimal(str(body["qty"])), self.price)
            self._after_parent(order)
        if fault in ("504-after", "500-after"):
            return _error(int(fault.split("-")[0]), "the gateway timed out")
        return web.json_response(order)

    def _oco_leg(self, parent: dict[str, Any], body: dict[str, Any]) -> None:
        """The parent is the take-profit limit; the stop-loss becomes a leg with an id and a
        client order id of Alpaca's own."""
        take_profit, stop_loss = body["take_profit"], body["stop_loss"]
        parent["limit_price"] = _text(take_profit["limit_price"])
        kind = "stop_limit" if stop_loss.get("limit_price") is not None else "stop"
        leg = {
            **parent,
            "id": str(uuid.uuid4()),
            "client_order_id": str(uuid.uuid4()),
            "order_type": kind,
            "type": kind,
            "stop_price": _text(stop_loss["stop_price"]),
            "limit_price": _text(stop_loss.get("limit_price")),
        }
        parent["legs"] = [leg]
        self.orders[leg["id"]] = leg
        self.parents[leg["id"]] = parent["id"]

    def _exit_legs(self, parent: dict[str, Any], body: dict[str, Any]) -> None:
        """A bracket's or an OTO's exits: legs on the other side, held until the entry has
        filled in full."""
        side = "sell" if parent["side"] == "buy" else "buy"
        legs = []
        if body.get("take_profit"):
            legs.append(("limit", body["take_profit"]["limit_price"], None))
        if body.get("stop_loss"):
            stop_loss = body["stop_loss"]
            kind = "stop_limit" if stop_loss.get("limit_price") is not None else "stop"
            legs.append((kind, stop_loss.get("limit_price"), stop_loss["stop_price"]))
        parent["legs"] = []
        for kind, limit, stop in legs:
            leg = {
                **parent,
                "id": str(uuid.uuid4()),
                "client_order_id": str(uuid.uuid4()),
                "side": side,
                "order_type": kind,
                "type": kind,
                "limit_price": _text(limit),
                "stop_price": _text(stop),
                "status": "held",
                "legs": None,
            }
            parent["legs"].append(leg)
            self.orders[leg["id"]] = leg
            self.parents[leg["id"]] = parent["id"]

    def _after_parent(self, parent: dict[str, Any]) -> None:
        """A bracket's or an OTO's entry moved on: filled in full, its exits go live (the
        take-profit working, the stop held until it triggers, as Alpaca shows them); ended
        otherwise, its held exits end with it."""
        if parent["order_class"] not in ("bracket", "oto"):
            return
        for leg in parent.get("legs") or []:
            if leg["status"] != "held":
                continue
            if parent["status"] == "filled":
                leg["status"] = "new" if leg["type"] == "limit" else "held"
                leg["activated"] = True
            elif parent["status"] not in OPEN:
                leg["status"] = "canceled"

    def _group(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        """An order with the other orders of its OCO, if any: an OCO's parent and leg, or
        a bracket's exits (not its entry)."""
        parent = self.orders[self.parents.get(order["id"], order["id"])]
        legs = parent.get("legs") or []
        if parent["order_class"] in ("bracket", "oto"):
            return legs if order is not parent else [parent, *legs]
        return [parent, *legs]

    def _execute(self, order: dict[str, Any], quantity: Decimal, price: Decimal) -> None:
        """An execution: the order's fill totals, and a FILL activity as Alpaca records it."""
        before = Decimal(order["filled_qty"])
        average = Decimal(order["filled_avg_price"] or 0)
        cum = before + quantity
        done = cum == Decimal(order["qty"])
        order.update(
            status="filled" if done else "partially_filled",
            filled_qty=str(cum),
            filled_avg_price=str((average * before + price * quantity) / cum),
        )
        self.submitted += timedelta(milliseconds=1)
        self.activities.append(
            {
                "id": f"{self.submitted:%Y%m%d%H%M%S%f}::{uuid.uuid4()}",
                "activity_type": "FILL",
                "transaction_time": self.submitted.isoformat().replace("+00:00", "Z"),
                "type": "fill" if done else "partial_fill",
                "price": str(price),
                "qty": str(quantity),
                "side": order["side"],
                "symbol": order["symbol"].replace("/", ""),
                "leaves_qty": str(Decimal(order["qty"]) - cum),
                "order_id": order["id"],
                "cum_qty": str(cum),
                "order_status": order["status"],
            }
        )

    def fill_order(self, order_id: str, price: Decimal, quantity: Decimal | None = None) -> None:
        """The market reaches an order: it fills (all that is left, or ``quantity``), and
        once it is filled the rest of its OCO is cancelled."""
        order = self.orders[order_id]
        if order["status"] == "held" and not order.get("activated"):
            raise ValueError(f"{order_id} waits for its entry to fill")
        self._execute(
            order, quantity or Decimal(order["qty"]) - Decimal(order["filled_qty"]), price
        )
        if order["order_class"] in ("bracket", "oto") and order["id"] not in self.parents:
            self._after_parent(order)
        elif order["status"] == "filled":
            for other in self._group(order):
                if other is not order and other["status"] in OPEN:
                    other["status"] = "canceled"

    def cancel_at_broker(self, order_id: str) -> None:
        """Alpaca cancels an order by itself (end of day, a halt): no one asked the desk."""
        self.orders[order_id]["status"] = "canceled"
        self._after_parent(self.orders[order_id])

    async def fill_activities(self, request: web.Request) -> web.Response:
        """Oldest first after ``after``, ``page_size`` at a time, from past ``page_token``."""
        after = datetime.fromisoformat(request.query["after"].replace("Z", "+00:00"))
        token = request.query.get("page_token")
        found = [
            a
            for a in self.activities
            if datetime.fromisoformat(a["transaction_time"].replace("Z", "+00:00")) > after
        ]
        if token is not None:
            found = [a for a in found if a["id"] > token]
        return web.json_response(found[: int(request.query.get("page_size", "100"))])

    def _shown(self, order: dict[str, Any], nested: bool) -> dict[str, Any]:
        return order if nested else {**order, "legs": None}

    async def list_orders(self, request: web.Request) -> web.Response:
        """Newest first, at most ``limit`` (Alpaca's default 50), before ``until``; with
        ``nested``, OCO legs under their parent instead of beside it."""
        wanted = request.query.get("status", "open")
        nested = request.query.get("nested", "").lower() == "true"
        orders = [
            self._shown(o, nested)
            for o in self.orders.values()
            if (wanted != "open" or o["status"] in OPEN)
            and not (nested and o["id"] in self.parents)
        ]
        after = request.query.get("after")
        if after:
            bound = datetime.fromisoformat(after.replace("Z", "+00:00"))
            orders = [o for o in orders if datetime.fromisoformat(o["submitted_at"]) > bound]
        until = request.query.get("until")
        if until:
            bound = datetime.fromisoformat(until.replace("Z", "+00:00"))
            orders = [o for o in orders if datetime.fromisoformat(o["submitted_at"]) < bound]
        orders.sort(key=lambda o: o["submitted_at"], reverse=True)
        return web.json_response(orders[: int(request.query.get("limit", "50"))])

    async def by_client_order_id(self, request: web.Request) -> web.Response:
        found = self._by_cid(request.query.get("client_order_id", ""))
        if found is None:
            return _error(404, "order not found", 40410000)
        return web.json_response(found)

    async def by_id(self, request: web.Request) -> web.Response:
        found = self.orders.get(request.match_info["id"])
        if found is None:
            return _error(404, "order not found", 40410000)
        return web.json_response(
            self._shown(found, request.query.get("nested", "").lower() == "true")
        )

    async def cancel(self, request: web.Request) -> web.Response:
        found = self.orders.get(request.match_info["id"])
        if found is None:
            return _error(404, "order not found", 40410000)
        if found["status"] not in OPEN:
            return _error(422, "order is not cancelable", 42210000)
        for order in self._group(found):  # cancelling one side of an OCO cancels both
            if order["status"] in OPEN:
                order["status"] = "canceled"
        self._after_parent(found)
        return web.Response(status=204)

    async def replace(self, request: web.Request) -> web.Response:
        """A new order in place of an open one, which becomes ``replaced``."""
        self.patches += 1
        found = self.orders.get(request.match_info["id"])
        if found is None:
            return _error(404, "order not found", 40410000)
        if found["status"] not in OPEN:
            return _error(422, "order is not replaceable", 42210000)
        body = await request.json()
        cid = body.get("client_order_id") or uuid.uuid4().hex
        if self._by_cid(cid) is not None:
            return _error(422, "client_order_id must be unique", 40010001)
        found["status"] = "replaced"
        self.submitted += timedelta(seconds=1)
        order = {
            **found,
            "id": str(uuid.uuid4()),
            "client_order_id": cid,
            "status": "new",
            "replaces": found["id"],
            "submitted_at": self.submitted.isoformat(),
        }
        for name in ("qty", "limit_price", "stop_price"):
            if body.get(name) is not None:
                order[name] = str(body[name])
        self.orders[order["id"]] = order
        return web.json_response(order)

    async def positions(self, request: web.Request) -> web.Response:
        net: dict[str, Decimal] = {}
        for order in self.orders.values():
            filled = Decimal(order["filled_qty"])
            sign = 1 if order["side"] == "buy" else -1
            net[order["symbol"]] = net.get(order["symbol"], Decimal(0)) + sign * filled
        return web.json_response(
            [
                {
                    "asset_id": str(uuid.uuid4()),
                    "symbol": symbol,
                    "exchange": "NASDAQ",
                    "asset_class": "us_equity",
                    "avg_entry_price": str(self.price),
                    "qty": str(abs(qty)),
                    "side": "long" if qty > 0 else "short",
                    "cost_basis": str(abs(qty) * self.price),
                }
                for symbol, qty in net.items()
                if qty
            ]
        )

    async def account(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "id": str(uuid.uuid4()),
                "account_number": "PA000000",
                "status": "ACTIVE",
                "buying_power": "250000.50",
            }
        )

    async def clock(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "timestamp": "2026-03-02T10:00:00-05:00",
                "is_open": True,
                "next_open": "2026-03-03T09:30:00-05:00",
                "next_close": "2026-03-02T16:00:00-05:00",
            }
        )

    async def calendar(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"date": "2026-03-02", "open": "09:30", "close": "16:00"},
                {"date": "2026-03-03", "open": "09:30", "close": "13:00"},
            ]
        )
