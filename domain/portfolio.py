"""Positions and P&L from fills.

A position holds a signed quantity and the average price of the open quantity. A fill
that reduces a position realises P&L against that average; one that crosses zero closes
the old position and opens the remainder at the fill price. Fills are applied at most once
each, by execution id. Arithmetic is Decimal in a 40-digit context: averages that do not
terminate are rounded far below any price increment.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Self

from domain.errors import ValidationError
from domain.fills import Fill
from domain.model import parse_symbol
from domain.serde import dec_str, parse_decimal, require_str

ZERO = Decimal(0)
_CONTEXT = decimal.Context(prec=40)


@dataclass(frozen=True, slots=True)
class Position:
    account: str
    symbol: str
    quantity: Decimal = ZERO
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return _CONTEXT.multiply(self.quantity, mark - self.avg_price)

    def market_value(self, mark: Decimal) -> Decimal:
        return self.quantity * mark

    def apply(self, fill: Fill) -> Position:
        """The position after ``fill`` (which must be for this account and symbol)."""
        if fill.account != self.account or fill.symbol != self.symbol:
            raise ValidationError("fill", "belongs to another account or symbol")
        q0, p0 = self.quantity, self.avg_price
        s, price = fill.signed_quantity, fill.price
        realized = self.realized_pnl
        if q0 == 0 or (q0 > 0) == (s > 0):
            quantity = q0 + s
            avg = _CONTEXT.divide(abs(q0) * p0 + abs(s) * price, abs(quantity))
        else:
            closed = min(abs(s), abs(q0))
            direction = 1 if q0 > 0 else -1
            realized += closed * (price - p0) * direction
            quantity = q0 + s
            if quantity == 0:
                avg = ZERO
            elif (quantity > 0) == (q0 > 0):
                avg = p0  # a partial close leaves the average of what is left unchanged
            else:
                avg = price  # crossed zero: the remainder opened at this fill's price
        return replace(
            self,
            quantity=quantity,
            avg_price=avg,
            realized_pnl=realized,
            fees=self.fees + fill.fee,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "symbol": self.symbol,
            "quantity": dec_str(self.quantity),
            "avg_price": dec_str(self.avg_price),
            "realized_pnl": dec_str(self.realized_pnl),
            "fees": dec_str(self.fees),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            account=require_str(data, "account"),
            symbol=parse_symbol(data.get("symbol")),
            quantity=parse_decimal(data.get("quantity", "0"), "quantity"),
            avg_price=parse_decimal(data.get("avg_price", "0"), "avg_price"),
            realized_pnl=parse_decimal(data.get("realized_pnl", "0"), "realized_pnl"),
            fees=parse_decimal(data.get("fees", "0"), "fees"),
        )


@dataclass(slots=True)
class Portfolio:
    """One account's cash and positions; ``apply_fill`` is idempotent by execution id."""

    account: str
    cash: Decimal = ZERO
    positions: dict[str, Position] = field(default_factory=dict)
    executions: set[str] = field(default_factory=set)

    def apply_fill(self, fill: Fill) -> bool:
        """Apply a fill once; False (and nothing changes) when it was applied before."""
        if fill.account != self.account:
            raise ValidationError("account", f"fill is for {fill.account}, not {self.account}")
        if fill.execution_id in self.executions:
            return False
        current = self.positions.get(fill.symbol) or Position(self.account, fill.symbol)
        self.positions[fill.symbol] = current.apply(fill)
        self.cash -= fill.signed_quantity * fill.price + fill.fee
        self.executions.add(fill.execution_id)
        return True

    def position(self, symbol: str) -> Position:
        return self.positions.get(symbol) or Position(self.account, symbol)

    def _mark(self, symbol: str, marks: Mapping[str, Decimal]) -> Decimal:
        position = self.positions[symbol]
        if position.is_flat:
            return ZERO
        if symbol not in marks:
            raise ValidationError("marks", f"no mark price for {symbol}")
        return marks[symbol]

    def market_value(self, marks: Mapping[str, Decimal]) -> Decimal:
        return sum((p.market_value(self._mark(s, marks)) for s, p in self.positions.items()), ZERO)

    def equity(self, marks: Mapping[str, Decimal]) -> Decimal:
        return self.cash + self.market_value(marks)

    def unrealized_pnl(self, marks: Mapping[str, Decimal]) -> Decimal:
        return sum(
            (p.unrealized_pnl(self._mark(s, marks)) for s, p in self.positions.items()), ZERO
        )

    def realized_pnl(self) -> Decimal:
        return sum((p.realized_pnl for p in self.positions.values()), ZERO)

    def fees(self) -> Decimal:
        return sum((p.fees for p in self.positions.values()), ZERO)

    def gross_exposure(self, marks: Mapping[str, Decimal]) -> Decimal:
        return sum(
            (abs(p.market_value(self._mark(s, marks))) for s, p in self.positions.items()), ZERO
        )

    def net_exposure(self, marks: Mapping[str, Decimal]) -> Decimal:
        return self.market_value(marks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "cash": dec_str(self.cash),
            "positions": [p.to_dict() for p in self.positions.values()],
            "executions": sorted(self.executions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        account = require_str(data, "account")
        positions = [Position.from_dict(p) for p in data.get("positions") or []]
        if any(p.account != account for p in positions):
            raise ValidationError("positions", "every position must belong to the account")
        return cls(
            account=account,
            cash=parse_decimal(data.get("cash", "0"), "cash"),
            positions={p.symbol: p for p in positions},
            executions={str(e) for e in data.get("executions") or []},
        )
