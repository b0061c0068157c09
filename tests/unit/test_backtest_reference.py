"""The engine against a slow reference written from the execution rules alone: bar by bar,
plain Python floats, all-in sizing found by bisection on the rule's equation rather than by
its closed form. Trades and equity must agree to 1e-9 relative for every strategy and every
execution option."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.backtest import (
    Bars,
    Commission,
    CommissionKind,
    ExecutionModel,
    FillTiming,
    Sizing,
    SizingKind,
    Slippage,
    SlippageKind,
    backtest,
)
from domain.strategies import (
    AnyStrategy,
    EmaCrossover,
    PairsSpread,
    SmaCrossover,
    ZScoreReversion,
)

# -- the reference ---------------------------------------------------------------------------


@dataclass
class RefTrade:
    direction: int
    entry_bar: int
    entered: float = 0.0
    entry_value: float = 0.0
    left: float = 0.0
    exit_value: float = 0.0
    fees: float = 0.0
    exit_bar: int = -1
    closed: bool = False

    @property
    def pnl(self) -> float:
        return self.direction * (self.exit_value - self.entry_value) - self.fees


@dataclass
class RefSleeve:
    cash: float
    position: float = 0.0
    decided: float = 0.0  # the latest decision (NaN targets keep it)
    traded_to: float = 0.0  # the target of the last order sent
    ruined: bool = False
    equity: list[float] = field(default_factory=list)
    trades: list[RefTrade] = field(default_factory=list)
    fills: list[tuple[int, float, float, float]] = field(default_factory=list)  # bar, q, px, fee
    open_trade: RefTrade | None = None


def fill_price(model: ExecutionModel, reference: float, buying: bool, bar_range: float) -> float:
    sign = 1.0 if buying else -1.0
    if model.slippage.kind is SlippageKind.BPS:
        return reference * (1.0 + sign * model.slippage.amount / 10_000.0)
    return reference + sign * model.slippage.amount * bar_range


def order_fee(model: ExecutionModel, quantity: float, price: float) -> float:
    kind, amount = model.commission.kind, model.commission.amount
    if kind is CommissionKind.BPS:
        return abs(quantity) * price * amount / 10_000.0
    if kind is CommissionKind.PER_SHARE:
        return abs(quantity) * amount
    return amount


def all_in_quantity(
    model: ExecutionModel, target: float, cash: float, held: float, p: float, bar_range: float
) -> float:
    """Solve the rule ``q * p = target * (equity - fee - |q - held| * |fill - p|)`` by
    bisection: the left side less the right grows with q (costs stay below the price)."""
    equity = cash + held * p

    def excess(q: float) -> float:
        if q == held:
            cost = 0.0
        else:
            price = fill_price(model, p, q > held, bar_range)
            cost = order_fee(model, q - held, price) + abs(q - held) * abs(price - p)
        return q * p - target * (equity - cost)

    big = 10.0 * (abs(equity) + abs(held) * p + abs(model.commission.amount)) / p + 10.0
    low, high = -big, big
    assert excess(low) < 0.0 < excess(high)
    while True:
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        if excess(middle) < 0.0:
            low = middle
        else:
            high = middle
    # The root, or the jump a per-order fee makes at ``held`` when no root exists.
    return low if abs(excess(low)) <= abs(excess(high)) else high


def reference_backtest(
    bars: Bars, targets: np.ndarray, model: ExecutionModel
) -> tuple[list[RefSleeve], list[float]]:
    opens, highs, lows, closes = (a.tolist() for a in (bars.open, bars.high, bars.low, bars.close))
    decisions = np.asarray(targets, dtype=np.float64).reshape(bars.n_bars, -1).tolist()
    symbols = bars.n_symbols
    sleeves = [RefSleeve(model.starting_cash / symbols) for _ in range(symbols)]
    n = bars.n_bars
    for k in range(n):
        for s, sleeve in enumerate(sleeves):
            bar_range = highs[k][s] - lows[k][s]
            if model.fill is FillTiming.NEXT_OPEN:
                if k > 0:
                    execute(model, sleeve, k, opens[k][s], bar_range)
                decide(sleeve, decisions[k][s])
            else:
                decide(sleeve, decisions[k][s])
                execute(model, sleeve, k, closes[k][s], bar_range)
            sleeve.equity.append(sleeve.cash + sleeve.position * closes[k][s])
    for s, sleeve in enumerate(sleeves):
        trade = sleeve.open_trade
        if trade is not None:
            remaining = abs(sleeve.position)
            trade.left += remaining
            trade.exit_value += remaining * closes[n - 1][s]
            trade.exit_bar = n - 1
            sleeve.trades.append(trade)
    portfolio = [math.fsum(s.equity[k] for s in sleeves) for k in range(n)]
    return sleeves, portfolio


def decide(sleeve: RefSleeve, target: float) -> None:
    if not math.isnan(target):
        sleeve.decided = target


def execute(model: ExecutionModel, sleeve: RefSleeve, k: int, p: float, bar_range: float) -> None:
    target = sleeve.decided
    if target == sleeve.traded_to or sleeve.ruined:
        return
    sleeve.traded_to = target
    held = sleeve.position
    if model.sizing.kind is SizingKind.FIXED:
        new = target * model.sizing.quantity
    elif sleeve.cash + held * p <= 0.0:
        sleeve.ruined = True
        new = 0.0
    else:
        new = all_in_quantity(model, target, sleeve.cash, held, p, bar_range)
    if new == held:
        return
    price = fill_price(model, p, new > held, bar_range)
    fee = order_fee(model, new - held, price)
    sleeve.cash -= (new - held) * price + fee
    sleeve.position = new
    sleeve.fills.append((k, new - held, price, fee))
    record_trades(sleeve, k, held, new, price, fee)


def record_trades(
    sleeve: RefSleeve, k: int, held: float, new: float, price: float, fee: float
) -> None:
    same_side = held * new > 0.0
    if same_side:
        trade = sleeve.open_trade
        assert trade is not None
        if abs(new) > abs(held):
            trade.entered += abs(new) - abs(held)
            trade.entry_value += (abs(new) - abs(held)) * price
        else:
            trade.left += abs(held) - abs(new)
            trade.exit_value += (abs(held) - abs(new)) * price
            trade.exit_bar = k
        trade.fees += fee
        return
    closing, opening = abs(held), abs(new)
    closing_fee = fee * closing / (closing + opening)
    if held != 0.0:
        trade = sleeve.open_trade
        assert trade is not None
        trade.left += closing
        trade.exit_value += closing * price
        trade.fees += closing_fee
        trade.exit_bar = k
        trade.closed = True
        sleeve.trades.append(trade)
        sleeve.open_trade = None
    if new != 0.0:
        trade = RefTrade(1 if new > 0 else -1, k)
        trade.entered = opening
        trade.entry_value = opening * price
        trade.fees = fee - closing_fee
        sleeve.open_trade = trade


# -- comparison ------------------------------------------------------------------------------

REL = 1e-9


def close_to(a: float, b: float, scale: float) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=REL * scale)


def assert_agrees(bars: Bars, targets: np.ndarray, model: ExecutionModel) -> Any:
    result = backtest(bars, targets, model)
    sleeves, portfolio = reference_backtest(bars, targets, model)
    scale = model.starting_cash
    assert close_to(float(result.equity[-1]), portfolio[-1], scale)
    worst = max(
        abs(a - b) / max(abs(b), scale * 1e-3)
        for a, b in zip(result.equity.tolist(), portfolio, strict=True)
    )
    assert worst < REL, f"equity differs by {worst:.2e} relative"
    expected = [
        (s, t) for s, sleeve in enumerate(sleeves) for t in sorted(sleeve.trades, key=_start)
    ]
    trades = list(result.trades)
    assert len(trades) == len(expected)
    for got, (s, want) in zip(trades, expected, strict=True):
        assert got.symbol == bars.symbols[s]
        assert (got.direction, got.entry_bar, got.exit_bar, got.closed) == (
            want.direction,
            want.entry_bar,
            want.exit_bar,
            want.closed,
        )
        notional = want.entry_value + want.exit_value
        assert close_to(got.quantity, want.entered, want.entered)
        assert close_to(got.entry_price, want.entry_value / want.entered, 1.0)
        assert close_to(got.exit_price, want.exit_value / want.left, 1.0)
        assert close_to(got.fees, want.fees, notional)
        assert close_to(got.pnl, want.pnl, notional)
    fills = [f for sleeve in sleeves for f in sleeve.fills]
    assert len(result.fills) == len(fills)
    for i, (bar, quantity, price, fee) in enumerate(fills):
        assert int(result.fills.bar[i]) == bar
        assert close_to(float(result.fills.quantity[i]), quantity, abs(quantity))
        assert close_to(float(result.fills.price[i]), price, price)
        assert close_to(float(result.fills.fee[i]), fee, abs(quantity) * price)
    return result


def _start(trade: RefTrade) -> int:
    return trade.entry_bar


# -- data ------------------------------------------------------------------------------------


def synthetic_bars(n: int, seed: int, symbols: int = 1, vol: float = 0.01) -> Bars:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, vol, (n, symbols)), axis=0))
    gap = np.exp(rng.normal(0.0, vol / 4, (n, symbols)))
    open_ = np.vstack([close[:1], close[:-1]]) * gap
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, vol / 2, (n, symbols))))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, vol / 2, (n, symbols))))
    names = ["AAA", "BBB", "CCC"][:symbols]
    return Bars.of(close, open=open_, high=high, low=low, symbols=names)


def pair_bars(n: int, seed: int) -> Bars:
    """Two cointegrated legs, so the pairs strategy trades."""
    rng = np.random.default_rng(seed)
    a = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    b = 0.5 * a * np.exp(rng.normal(0.0, 0.02, n))
    close = np.stack([a, b], axis=1)
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0.0, 0.002, (n, 2)))
    high = np.maximum(open_, close) * 1.003
    low = np.minimum(open_, close) * 0.997
    return Bars.of(close, open=open_, high=high, low=low, symbols=["KO", "PEP"])


STRATEGIES: dict[str, Callable[[], AnyStrategy]] = {
    "sma long/flat": lambda: SmaCrossover("AAA", 5, 20),
    "sma long/short": lambda: SmaCrossover("AAA", 5, 20, allow_short=True),
    "ema long/flat": lambda: EmaCrossover("AAA", 6, 24),
    "ema long/short": lambda: EmaCrossover("AAA", 6, 24, allow_short=True),
    "zscore": lambda: ZScoreReversion("AAA", 20, entry_z=1.5, exit_z=0.3),
    "zscore long only": lambda: ZScoreReversion("AAA", 20, 1.5, 0.3, allow_short=False),
    "pairs": lambda: PairsSpread("KO", "PEP", hedge_ratio=2.0, window=30, entry_z=1.5, exit_z=0.3),
}

MODELS = {
    "-".join(str(part) for part in options): ExecutionModel(
        fill=options[0],
        commission=Commission(
            options[1], {"bps": 10.0, "per_share": 0.02, "per_order": 1.5}[options[1].value]
        ),
        slippage=Slippage(options[2], 5.0 if options[2] is SlippageKind.BPS else 0.1),
        sizing=Sizing(options[3], 40.0),
        starting_cash=10_000.0,
    )
    for options in itertools.product(FillTiming, CommissionKind, SlippageKind, SizingKind)
}


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("strategy_name", list(STRATEGIES))
def test_engine_agrees_with_the_bar_by_bar_reference(strategy_name: str, model_name: str) -> None:
    strategy = STRATEGIES[strategy_name]()
    bars = pair_bars(500, 11) if strategy_name == "pairs" else synthetic_bars(500, 3)
    targets = strategy.targets(bars.close)
    result = assert_agrees(bars, targets, MODELS[model_name])
    assert len(result.trades) >= 5, "the data must make the strategy trade"


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    symbols=st.integers(1, 3),
    fill=st.sampled_from(FillTiming),
    commission=st.sampled_from(CommissionKind),
    commission_amount=st.floats(0.0, 20.0),
    slippage=st.sampled_from(SlippageKind),
    slippage_amount=st.floats(0.0, 0.5),
    sizing=st.sampled_from(SizingKind),
    whole=st.booleans(),
)
def test_random_targets_and_costs_agree_with_the_reference(
    seed: int,
    symbols: int,
    fill: FillTiming,
    commission: CommissionKind,
    commission_amount: float,
    slippage: SlippageKind,
    slippage_amount: float,
    sizing: SizingKind,
    whole: bool,
) -> None:
    rng = np.random.default_rng(seed)
    bars = synthetic_bars(120, seed, symbols)
    if whole:
        # Whole targets take the closed form; runs of equal targets keep positions open.
        targets = rng.choice([-1.0, 0.0, 1.0], size=(120, symbols), p=[0.2, 0.4, 0.4])
        targets[rng.random((120, symbols)) < 0.7] = np.nan
    else:
        targets = np.round(rng.uniform(-1.0, 1.0, (120, symbols)), 2)
        targets[rng.random((120, symbols)) < 0.5] = np.nan
    if commission is CommissionKind.BPS:
        commission_amount *= 2.0  # up to 40 bps
    elif commission is CommissionKind.PER_SHARE:
        commission_amount /= 100.0
    model = ExecutionModel(
        fill=fill,
        commission=Commission(commission, commission_amount),
        slippage=Slippage(
            slippage, slippage_amount * (20.0 if slippage is SlippageKind.BPS else 1.0)
        ),
        sizing=Sizing(sizing, float(rng.integers(1, 100))),
        starting_cash=float(rng.uniform(1_000.0, 1_000_000.0)),
    )
    assert_agrees(bars, targets, model)


def test_a_ruined_short_closes_out_and_stops_trading_as_the_reference_does() -> None:
    n = 60
    close = np.concatenate([np.full(10, 10.0), np.linspace(10.0, 40.0, 20), np.full(30, 40.0)])
    bars = Bars.of(close)
    targets = np.zeros(n)
    targets[2:] = -1.0
    targets[40:] = 1.0  # the ruined sleeve must not come back
    model = ExecutionModel(commission=Commission(CommissionKind.BPS, 10.0), starting_cash=1000.0)
    result = assert_agrees(bars, targets, model)
    assert result.equity[-1] < 0.0
    assert len(result.fills) == 2  # the short, then the close-out; no long at bar 41
    assert result.fills.position[-1] == 0.0


def test_a_per_order_fee_with_whole_targets_agrees_with_the_reference() -> None:
    bars = synthetic_bars(400, 9)
    targets = SmaCrossover("AAA", 3, 12, allow_short=True).targets(bars.close)
    model = ExecutionModel(commission=Commission(CommissionKind.PER_ORDER, 25.0))
    assert len(assert_agrees(bars, targets, model).trades) > 10
