"""Vocabulary shared across the domain: sides, order types, instruments, symbols.

Enum values are the wire values the broker (Alpaca) uses, so adapters pass them through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Self

from domain.errors import ValidationError
from domain.serde import dec_str, parse_positive_decimal, require_str

# Equities (AAPL, BRK.B) and crypto pairs (BTC/USD); upper case, no spaces.
SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9.\-]{0,14}(/[A-Z]{2,10})?$")


def parse_symbol(value: object, field: str = "symbol") -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    if not SYMBOL_PATTERN.fullmatch(value):
        raise ValidationError(field, f"not a valid symbol: {value[:20]!r}")
    return value


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    OPG = "opg"
    CLS = "cls"


class AssetClass(StrEnum):
    EQUITY = "us_equity"
    CRYPTO = "crypto"


@dataclass(frozen=True, slots=True)
class Instrument:
    """What can be traded and in which increments: quantities are multiples of ``lot_size``,
    prices multiples of ``tick_size``."""

    symbol: str
    asset_class: AssetClass = AssetClass.EQUITY
    lot_size: Decimal = Decimal("1")
    tick_size: Decimal = Decimal("0.01")

    def __post_init__(self) -> None:
        parse_symbol(self.symbol)
        if self.lot_size <= 0:
            raise ValidationError("lot_size", "must be greater than zero")
        if self.tick_size <= 0:
            raise ValidationError("tick_size", "must be greater than zero")

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "asset_class": self.asset_class.value,
            "lot_size": dec_str(self.lot_size),
            "tick_size": dec_str(self.tick_size),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        try:
            asset_class = AssetClass(data.get("asset_class", AssetClass.EQUITY.value))
        except ValueError:
            raise ValidationError("asset_class", "must be us_equity or crypto") from None
        return cls(
            symbol=parse_symbol(require_str(data, "symbol")),
            asset_class=asset_class,
            lot_size=parse_positive_decimal(data.get("lot_size", "1"), "lot_size"),
            tick_size=parse_positive_decimal(data.get("tick_size", "0.01"), "tick_size"),
        )
