from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from domain.errors import ValidationError
from domain.market import Tick
from domain.strategies import (
    AnyStrategy,
    EmaCrossover,
    PairsSpread,
    Signal,
    SmaCrossover,
    ZScoreReversion,
    build_strategy,
)

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def walk(n: int, seed: int, start: float = 100.0, vol: float = 0.4) -> list[float]:
    rng = np.random.default_rng(seed)
    path: list[float] = (start + np.cumsum(rng.normal(0.0, vol, n))).round(2).tolist()
    return path


def ticks_for(symbol: str, prices: list[float]) -> list[Tick]:
    return [Tick(symbol, p, 100.0, T0 + timedelta(seconds=i)) for i, p in enumerate(prices)]


def incremental_positions(strategy: AnyStrategy, ticks: list[Tick]) -> list[tuple[int, ...]]:
    """The target held after each tick, rebuilt from the signals alone."""
    current = tuple(0 for _ in strategy.symbols)
    held = []
    for tick in ticks:
        signal = strategy.on_tick(tick)
        if signal is not None:
            assert signal.targets != current, "a signal must change the target"
            current = signal.targets
        held.append(current)
    return held


SINGLE = [
    lambda: SmaCrossover("AAPL", 5, 20),
    lambda: SmaCrossover("AAPL", 5, 20, allow_short=True),
    lambda: EmaCrossover("AAPL", 8, 30),
    lambda: EmaCrossover("AAPL", 8, 30, allow_short=True),
    lambda: ZScoreReversion("AAPL", 30, entry_z=1.5, exit_z=0.3),
    lambda: ZScoreReversion("AAPL", 30, entry_z=1.5, exit_z=0.3, allow_short=False),
]


@pytest.mark.parametrize("make", SINGLE)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_and_vectorised_targets_are_identical(make: Any, seed: int) -> None:
    prices = walk(3000, seed)
    strategy = make()
    held = incremental_positions(strategy, ticks_for("AAPL", prices))
    targets = make().targets(np.asarray(prices).reshape(-1, 1))
    assert [t[0] for t in held] == targets[:, 0].tolist()
    assert len({t[0] for t in held}) > 1, "the data must make the strategy trade"


@pytest.mark.parametrize("seed", [4, 5])
def test_pairs_incremental_and_vectorised_targets_are_identical(seed: int) -> None:
    a = walk(2000, seed, start=100.0)
    b = [
        round(0.5 * p + float(n), 2)
        for p, n in zip(a, np.random.default_rng(seed + 10).normal(0, 0.6, 2000), strict=True)
    ]
    ticks = []
    for i in range(2000):
        ticks.append(Tick("KO", a[i], 1.0, T0 + timedelta(seconds=2 * i)))
        ticks.append(Tick("PEP", b[i], 1.0, T0 + timedelta(seconds=2 * i + 1)))
    strategy = PairsSpread("KO", "PEP", hedge_ratio=2.0, window=40, entry_z=1.5, exit_z=0.2)
    held = incremental_positions(strategy, ticks)
    # Rows as the incremental form sees them: the last price of each leg after each tick,
    # from the first tick at which both legs have a price.
    rows, last = [], {}
    for tick in ticks:
        last[tick.symbol] = tick.price
        if len(last) == 2:
            rows.append((last["KO"], last["PEP"]))
    targets = PairsSpread("KO", "PEP", 2.0, 40, 1.5, 0.2).targets(np.asarray(rows))
    assert held[1:] == [tuple(r) for r in targets.tolist()]
    assert {t[0] for t in held} == {-1, 0, 1}
    assert all(t[0] == -t[1] for t in held)


def test_stale_and_duplicate_ticks_are_ignored() -> None:
    strategy = SmaCrossover("AAPL", 2, 3)
    prices = [10.0, 10.0, 10.0, 11.0, 12.0]
    ticks = ticks_for("AAPL", prices)
    signals = [strategy.on_tick(t) for t in ticks]
    assert [s.targets if s else None for s in signals] == [None, None, None, (1,), None]
    before = json.dumps(strategy.to_dict())
    assert strategy.on_tick(ticks[-1]) is None  # the same tick again
    assert strategy.on_tick(Tick("AAPL", 1.0, 1.0, T0)) is None  # an old one
    assert strategy.on_tick(Tick("MSFT", 1.0, 1.0, T0 + timedelta(days=1))) is None
    assert json.dumps(strategy.to_dict()) == before


@pytest.mark.parametrize(
    "make",
    [*SINGLE, lambda: PairsSpread("AAPL", "MSFT", 1.0, 20, 1.0, 0.2)],
)
def test_snapshot_and_restore_mid_stream_gives_the_same_signals(make: Any) -> None:
    prices = walk(1500, 9)
    ticks = ticks_for("AAPL", prices)
    if isinstance(make(), PairsSpread):
        other = ticks_for("MSFT", walk(1500, 10))
        ticks = [t for pair in zip(ticks, other, strict=True) for t in pair]
        ticks = [
            Tick(t.symbol, t.price, t.size, T0 + timedelta(seconds=i)) for i, t in enumerate(ticks)
        ]
    live = make()
    for tick in ticks[:700]:
        live.on_tick(tick)
    restored = build_strategy(json.loads(json.dumps(live.to_dict())))
    assert restored.strategy_id == live.strategy_id
    rest_live = [live.on_tick(t) for t in ticks[700:]]
    rest_restored = [restored.on_tick(t) for t in ticks[700:]]
    assert rest_live == rest_restored
    assert any(s is not None for s in rest_live)


def test_signal_ids_are_deterministic_and_distinguish_targets_and_times() -> None:
    signal = Signal("sma_cross:AAPL:5:20", ("AAPL",), (1,), (101.5,), T0)
    assert signal.signal_id == Signal("sma_cross:AAPL:5:20", ("AAPL",), (1,), (99.0,), T0).signal_id
    assert (
        signal.signal_id != Signal("sma_cross:AAPL:5:20", ("AAPL",), (0,), (101.5,), T0).signal_id
    )
    later = T0 + timedelta(microseconds=1)
    assert (
        signal.signal_id
        != Signal("sma_cross:AAPL:5:20", ("AAPL",), (1,), (101.5,), later).signal_id
    )
    assert Signal.from_dict(json.loads(json.dumps(signal.to_dict()))) == signal


def test_replaying_the_same_ticks_gives_the_same_signal_ids() -> None:
    ticks = ticks_for("AAPL", walk(800, 11))
    first = [s.signal_id for s in map(SmaCrossover("AAPL", 5, 20).on_tick, ticks) if s]
    second = [s.signal_id for s in map(SmaCrossover("AAPL", 5, 20).on_tick, ticks) if s]
    assert first == second and first


SMA_CONFIG = {"kind": "sma_cross", "symbol": "AAPL", "fast": 5, "slow": 20}
Z_CONFIG = {"kind": "zscore", "symbol": "AAPL", "window": 20}
PAIRS_CONFIG = {"kind": "pairs", "symbol_a": "KO", "symbol_b": "PEP", "hedge_ratio": 1, "window": 5}


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"kind": "momentum"}, "kind"),
        ({"kind": "sma_cross", "symbol": "aapl", "fast": 5, "slow": 20}, "symbol"),
        ({"kind": "sma_cross", "symbol": "AAPL", "fast": 20, "slow": 5}, "fast"),
        ({"kind": "sma_cross", "symbol": "AAPL", "fast": 0, "slow": 5}, "fast"),
        ({"kind": "ema_cross", "symbol": "AAPL", "fast": 5}, "slow"),
        (
            {"kind": "zscore", "symbol": "AAPL", "window": 20, "entry_z": 0.5, "exit_z": 1.0},
            "entry_z",
        ),
        ({"kind": "zscore", "symbol": "AAPL", "window": 1}, "window"),
        (
            {"kind": "pairs", "symbol_a": "KO", "symbol_b": "KO", "hedge_ratio": 1, "window": 5},
            "symbol_b",
        ),
        (
            {"kind": "pairs", "symbol_a": "KO", "symbol_b": "PEP", "hedge_ratio": -1, "window": 5},
            "hedge_ratio",
        ),
        (
            {"kind": "sma_cross", "symbol": "AAPL", "fast": 5, "slow": 20, "allow_short": "yes"},
            "allow_short",
        ),
        (
            {
                "kind": "sma_cross",
                "symbol": "AAPL",
                "fast": 5,
                "slow": 20,
                "state": {"position": 7},
            },
            "position",
        ),
    ],
)
def test_bad_configuration_names_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        build_strategy(config)
    assert error.value.field == field
