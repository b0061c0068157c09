"""A broker that fails the way real ones do, around a real (simulated) one."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from adapters.simulated_broker import SimulatedBroker
from domain.errors import RetryableFault
from domain.execution import BrokerOrder, Execution
from domain.orders import OrderLeg
from domain.ports import MarketClock


@dataclass
class FlakyBroker:
    """Each submit takes the next fault from ``faults``: "lost" (the broker accepts the
    order but the response never arrives), "429" or "503" (refused before accepting), or
    None (works). ``sent`` counts the orders that reached the broker."""

    inner: SimulatedBroker
    faults: deque[str | None] = field(default_factory=deque)

    def supports_oco(self, take_profit: OrderLeg, stop_loss: OrderLeg) -> bool:
        return self.inner.supports_oco(take_profit, stop_loss)

    def supports_bracket(self, entry: OrderLeg, exits: Sequence[OrderLeg]) -> bool:
        return self.inner.supports_bracket(entry, exits)

    def _fault(self) -> str | None:
        fault = self.faults.popleft() if self.faults else None
        if fault in ("429", "503"):
            raise RetryableFault(f"HTTP {fault}", retry_after_s=0.1)
        return fault

    def submit(self, leg: OrderLeg, client_order_id: str) -> BrokerOrder:
        fault = self._fault()
        order = self.inner.submit(leg, client_order_id)
        if fault == "lost":
            raise RetryableFault("connection reset after the request was sent")
        return order

    def submit_bracket(
        self, entry: OrderLeg, exits: Sequence[OrderLeg], client_order_ids: Sequence[str]
    ) -> list[BrokerOrder]:
        fault = self._fault()
        orders = self.inner.submit_bracket(entry, exits, client_order_ids)
        if fault == "lost":
            raise RetryableFault("connection reset after the request was sent")
        return orders

    def submit_oco(
        self, take_profit: OrderLeg, stop_loss: OrderLeg, client_order_ids: tuple[str, str]
    ) -> tuple[BrokerOrder, BrokerOrder]:
        return self.inner.submit_oco(take_profit, stop_loss, client_order_ids)

    def cancel(self, client_order_id: str) -> BrokerOrder | None:
        return self.inner.cancel(client_order_id)

    def get_by_client_order_id(self, client_order_id: str) -> BrokerOrder | None:
        return self.inner.get_by_client_order_id(client_order_id)

    def open_orders(self) -> list[BrokerOrder]:
        return self.inner.open_orders()

    def executions(self, since: datetime) -> list[Execution]:
        return self.inner.executions(since)

    def positions(self) -> dict[str, Decimal]:
        return self.inner.positions()

    def buying_power(self) -> Decimal:
        return self.inner.buying_power()

    def last_price(self, symbol: str) -> Decimal | None:
        return self.inner.last_price(symbol)

    def clock(self) -> MarketClock:
        return self.inner.clock()

    def calendar(self, start: date, end: date) -> list[tuple[datetime, datetime]]:
        return self.inner.calendar(start, end)
