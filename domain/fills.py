"""Executions reported by a broker. A fill is keyed by its ``execution_id``: applying the
same execution twice anywhere (books, risk, portfolio) must change nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Self

from domain.errors import ValidationError
from domain.model import Side, parse_symbol
from domain.serde import (
    dec_str,
    parse_non_negative_decimal,
    parse_positive_decimal,
    parse_ts,
    require,
    require_str,
    ts_str,
)


@dataclass(frozen=True, slots=True)
class Fill:
    execution_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    ts_filled: datetime
    client_order_id: str
    order_id: str | None = None
    fee: Decimal = Decimal("0")

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValidationError("quantity", "must be greater than zero")
        if self.price <= 0:
            raise ValidationError("price", "must be greater than zero")
        if self.fee < 0:
            raise ValidationError("fee", "must not be negative")
        if self.ts_filled.tzinfo is None:
            raise ValidationError("ts_filled", "must be timezone-aware")

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity * self.side.sign

    @property
    def notional(self) -> Decimal:
        return self.quantity * self.price

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side.value,
            "quantity": dec_str(self.quantity),
            "price": dec_str(self.price),
            "ts_filled": ts_str(self.ts_filled),
            "client_order_id": self.client_order_id,
            "order_id": self.order_id,
            "fee": dec_str(self.fee),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        try:
            side = Side(require(data, "side"))
        except ValueError:
            raise ValidationError("side", "must be buy or sell") from None
        order_id = data.get("order_id")
        return cls(
            execution_id=require_str(data, "execution_id"),
            account=require_str(data, "account"),
            symbol=parse_symbol(require(data, "symbol")),
            side=side,
            quantity=parse_positive_decimal(require(data, "quantity"), "quantity"),
            price=parse_positive_decimal(require(data, "price"), "price"),
            ts_filled=parse_ts(require(data, "ts_filled"), "ts_filled"),
            client_order_id=require_str(data, "client_order_id"),
            order_id=None if order_id is None else str(order_id),
            fee=parse_non_negative_decimal(data.get("fee", "0"), "fee"),
        )
