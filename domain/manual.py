"""Manual orders: the body of ``POST /api/orders`` and what it becomes.

A manual order is a single order, or one with exits: a bracket (``take_profit`` and
``stop_loss``) or one exit alone (one-triggers-other), placed for what the entry fills.
Every field is checked and an error names it; nothing is guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.errors import ValidationError
from domain.ids import canonical_json, stable_id
from domain.model import OrderType, Side
from domain.orders import OrderIntent, OrderLeg, PlanKind
from domain.serde import parse_positive_decimal

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._~-]{1,100}$")
ORDER_FIELDS = frozenset(
    {
        "account",
        "symbol",
        "side",
        "quantity",
        "order_type",
        "time_in_force",
        "limit_price",
        "stop_price",
        "trail_percent",
        "trail_price",
        "reference_price",
        "take_profit",
        "stop_loss",
    }
)
EXIT_FIELDS = {
    "take_profit": frozenset({"limit_price"}),
    "stop_loss": frozenset({"stop_price", "limit_price", "trail_percent", "trail_price"}),
}


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.match(value):
        raise ValidationError("Idempotency-Key", "1-100 characters of letters, digits and . _ ~ -")
    return value


def _object(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be a JSON object")
    return value


def _unknown(data: Mapping[str, Any], allowed: frozenset[str], prefix: str = "") -> None:
    for key in data:
        if key not in allowed:
            raise ValidationError(f"{prefix}{key}", "is not a field of this request")


@dataclass(frozen=True, slots=True)
class ManualOrder:
    account: str
    entry: OrderLeg
    take_profit: OrderLeg | None
    stop_loss: OrderLeg | None
    reference_price: Decimal | None
    fingerprint: str

    @classmethod
    def from_body(cls, body: object, *, default_account: str) -> ManualOrder:
        data = _object(body, "body")
        _unknown(data, ORDER_FIELDS)
        account = data.get("account", default_account)
        if not isinstance(account, str) or account != default_account:
            raise ValidationError("account", f"this desk trades the account {default_account!r}")
        leg_fields = {k: v for k, v in data.items() if k not in ("account", "reference_price")}
        leg_fields.pop("take_profit", None)
        leg_fields.pop("stop_loss", None)
        entry = OrderLeg.from_dict({**leg_fields, "name": "entry"})
        reference = data.get("reference_price")
        exit_side = entry.side.opposite
        take_profit = stop_loss = None
        if "take_profit" in data:
            tp = _object(data["take_profit"], "take_profit")
            _unknown(tp, EXIT_FIELDS["take_profit"], "take_profit.")
            take_profit = OrderLeg(
                "tp",
                entry.symbol,
                exit_side,
                entry.quantity,
                OrderType.LIMIT,
                limit_price=parse_positive_decimal(
                    tp.get("limit_price"), "take_profit.limit_price"
                ),
            )
        if "stop_loss" in data:
            sl = _object(data["stop_loss"], "stop_loss")
            _unknown(sl, EXIT_FIELDS["stop_loss"], "stop_loss.")
            stop_loss = _stop_leg(sl, entry.symbol, exit_side, entry.quantity)
        return cls(
            account=account,
            entry=entry,
            take_profit=take_profit,
            stop_loss=stop_loss,
            reference_price=(
                None if reference is None else parse_positive_decimal(reference, "reference_price")
            ),
            fingerprint=stable_id("body", canonical_json(dict(data))),
        )

    @property
    def symbol(self) -> str:
        return self.entry.symbol

    def intent(
        self, *, idempotency_key: str | None, unique: str, ts: datetime, last_price: Decimal | None
    ) -> OrderIntent:
        """The intent; its id derives from the idempotency key when there is one, so a
        retried request names the same intent."""
        reference = self.reference_price or last_price
        if reference is None and self.entry.worst_price is None:
            raise ValidationError(
                "reference_price", f"no recent trade of {self.symbol}: give a reference_price"
            )
        seed = idempotency_key if idempotency_key is not None else unique
        intent_id = stable_id("int", "manual", self.account, seed)
        exits = tuple(leg for leg in (self.take_profit, self.stop_loss) if leg is not None)
        legs = (self.entry, *exits)
        kind = PlanKind.BRACKET if exits else PlanKind.SINGLE
        prices = {} if reference is None else {self.symbol: reference}
        return OrderIntent(
            intent_id=intent_id,
            account=self.account,
            source="manual",
            kind=kind,
            legs=legs,
            ts_created=ts,
            reference_prices=prices,
        )


def _stop_leg(data: Mapping[str, Any], symbol: str, side: Side, quantity: Decimal) -> OrderLeg:
    def price(name: str) -> Decimal | None:
        value = data.get(name)
        return None if value is None else parse_positive_decimal(value, f"stop_loss.{name}")

    stop, limit = price("stop_price"), price("limit_price")
    trail_percent, trail_price = price("trail_percent"), price("trail_price")
    if trail_percent is not None or trail_price is not None:
        kind = OrderType.TRAILING_STOP
    elif limit is not None:
        kind = OrderType.STOP_LIMIT
    else:
        kind = OrderType.STOP
    if kind is not OrderType.TRAILING_STOP and stop is None:
        raise ValidationError("stop_loss.stop_price", "is required")
    try:
        return OrderLeg(
            "sl",
            symbol,
            side,
            quantity,
            kind,
            limit_price=limit,
            stop_price=stop,
            trail_percent=trail_percent,
            trail_price=trail_price,
        )
    except ValidationError as error:
        raise ValidationError(f"stop_loss.{error.field}", error.reason) from None
