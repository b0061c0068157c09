"""From a strategy's signal to an order intent.

A signal moves a strategy's target position (-1, 0 or +1 units per symbol); the intent
trades the difference from the previous target, in the strategy's unit size. A single
symbol trades one ``entry`` leg, or a bracket when the strategy is configured with exits;
a pair trades both symbols together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any, Self

from domain.errors import ValidationError
from domain.market import as_decimal
from domain.model import Instrument, OrderType, Side
from domain.orders import OrderIntent, OrderLeg, PlanKind
from domain.serde import parse_positive_decimal
from domain.sizing import round_price, round_quantity
from domain.strategies import Signal

HUNDRED = Decimal(100)


class PlanStyle(StrEnum):
    SINGLE = "single"
    BRACKET = "bracket"


@dataclass(frozen=True, slots=True)
class SizingRule:
    """How a strategy's targets become orders: ``quantity`` shares per unit of target (the
    second symbol of a pair trades ``quantity * hedge_ratio``), and an optional bracket."""

    quantity: Decimal
    plan: PlanStyle = PlanStyle.SINGLE
    take_profit_pct: Decimal | None = None
    stop_loss_pct: Decimal | None = None
    hedge_ratio: Decimal = Decimal(1)

    def __post_init__(self) -> None:
        if self.plan is PlanStyle.BRACKET and (
            self.take_profit_pct is None or self.stop_loss_pct is None
        ):
            raise ValidationError("plan", "a bracket needs take_profit_pct and stop_loss_pct")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        try:
            plan = PlanStyle(config.get("plan", "single"))
        except ValueError:
            raise ValidationError("plan", "must be single or bracket") from None

        def pct(name: str) -> Decimal | None:
            value = config.get(name)
            return None if value is None else parse_positive_decimal(value, name)

        return cls(
            quantity=parse_positive_decimal(config.get("quantity", 1), "quantity"),
            plan=plan,
            take_profit_pct=pct("take_profit_pct"),
            stop_loss_pct=pct("stop_loss_pct"),
            hedge_ratio=parse_positive_decimal(config.get("hedge_ratio", 1), "hedge_ratio"),
        )


@lru_cache(maxsize=4096)
def _instrument(symbol: str) -> Instrument:
    """The increments a signal's symbol trades in (immutable, so shared between intents)."""
    return Instrument(symbol)


def _leg(name: str, symbol: str, delta: Decimal) -> OrderLeg:
    return OrderLeg(name, symbol, Side.BUY if delta > 0 else Side.SELL, abs(delta))


def _bracket(entry: OrderLeg, reference: Decimal, rule: SizingRule) -> tuple[OrderLeg, ...]:
    instrument = _instrument(entry.symbol)
    up = entry.side is Side.BUY
    take = (rule.take_profit_pct or Decimal(0)) / HUNDRED
    stop = (rule.stop_loss_pct or Decimal(0)) / HUNDRED
    tp_price = round_price(reference * (1 + take if up else 1 - take), instrument)
    sl_price = round_price(reference * (1 - stop if up else 1 + stop), instrument)
    exit_side = entry.side.opposite
    return (
        entry,
        OrderLeg(
            "tp", entry.symbol, exit_side, entry.quantity, OrderType.LIMIT, limit_price=tp_price
        ),
        OrderLeg(
            "sl", entry.symbol, exit_side, entry.quantity, OrderType.STOP, stop_price=sl_price
        ),
    )


def plan_intent(
    signal: Signal,
    previous: tuple[int, ...],
    rule: SizingRule,
    *,
    account: str,
    unwind_after_s: int | None = None,
) -> OrderIntent | None:
    """The intent that moves from ``previous`` targets to the signal's, or None when
    nothing is to be traded. With a bracket only entries from flat are traded: the exits
    close the position, so the strategy's own exit signals are not."""
    if len(previous) != len(signal.symbols):
        raise ValidationError("previous", "one previous target per symbol")
    sizes = [rule.quantity, rule.quantity * rule.hedge_ratio][: len(signal.symbols)]
    deltas = []
    for symbol, new, old, size in zip(signal.symbols, signal.targets, previous, sizes, strict=True):
        change = new - old
        quantity = round_quantity(abs(size * change), _instrument(symbol))
        deltas.append(quantity if change > 0 else -quantity)
    if not any(deltas):  # every change rounds to no lots
        return None
    prices = {
        s: round_price(as_decimal(p), _instrument(s))
        for s, p in zip(signal.symbols, signal.prices, strict=True)
    }
    intent_id = OrderIntent.derive_id_at(
        signal.strategy_id,
        account,
        list(signal.symbols),
        signal.ts_signal_text,
        list(signal.targets),
    )
    legs: tuple[OrderLeg, ...]
    if len(signal.symbols) == 2:
        if any(d == 0 for d in deltas):
            return None
        kind = PlanKind.PAIR
        legs = tuple(
            _leg(name, symbol, delta)
            for name, symbol, delta in zip(("a", "b"), signal.symbols, deltas, strict=True)
        )
    elif rule.plan is PlanStyle.BRACKET:
        if previous[0] != 0 or signal.targets[0] == 0:
            return None
        kind = PlanKind.BRACKET
        entry = _leg("entry", signal.symbols[0], deltas[0])
        legs = _bracket(entry, prices[entry.symbol], rule)
    else:
        kind = PlanKind.SINGLE
        legs = (_leg("entry", signal.symbols[0], deltas[0]),)
    return OrderIntent(
        intent_id=intent_id,
        account=account,
        source=signal.strategy_id,
        kind=kind,
        legs=legs,
        ts_created=signal.ts_signal,
        reference_prices=prices,
        signal_id=signal.signal_id,
        unwind_after_s=unwind_after_s if kind is PlanKind.PAIR else None,
    )
