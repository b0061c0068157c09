"""Strategies: one ``Strategy`` protocol, each strategy in two forms that give the same
targets: incremental (tick in, signal out when the target changes) for live trading, and
vectorised (price arrays in, target positions out) for backtests.

Targets are -1 (short), 0 (flat) or +1 (long) per symbol. A strategy ignores a tick that
is not newer than the last one it saw for that symbol (a replay or an out-of-order
delivery), so redelivered batches cannot produce signals twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from domain import indicators
from domain.errors import ValidationError
from domain.ids import stable_id
from domain.market import Tick
from domain.model import parse_symbol
from domain.serde import parse_ts, ts_str

if TYPE_CHECKING:
    # numpy only where the vectorised forms run (see domain.indicators).
    import numpy as np
    from numpy.typing import NDArray

    Targets = NDArray[np.int8]


@dataclass(frozen=True, slots=True)
class Signal:
    """A change of target position, with the prices it was decided at."""

    strategy_id: str
    symbols: tuple[str, ...]
    targets: tuple[int, ...]
    prices: tuple[float, ...]
    ts_signal: datetime
    # Derived from the fields above, once: planning and the audit trail both need them
    # (``ts_signal_text`` is ``ts_str(ts_signal)``, which the signal's id, its intent's id
    # and its audit record all hold).
    signal_id: str = field(init=False, repr=False, compare=False)
    ts_signal_text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ts_text = ts_str(self.ts_signal)
        signal_id = stable_id(
            "sig", self.strategy_id, list(self.symbols), ts_text, list(self.targets)
        )
        object.__setattr__(self, "signal_id", signal_id)
        object.__setattr__(self, "ts_signal_text", ts_text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal_id": self.signal_id,
            "strategy_id": self.strategy_id,
            "symbols": list(self.symbols),
            "targets": list(self.targets),
            "prices": list(self.prices),
            "ts_signal": self.ts_signal_text,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signal:
        symbols = tuple(parse_symbol(s) for s in data.get("symbols") or [])
        targets = tuple(int(t) for t in data.get("targets") or [])
        prices = tuple(float(p) for p in data.get("prices") or [])
        if not symbols or len(targets) != len(symbols) or len(prices) != len(symbols):
            raise ValidationError("symbols", "symbols, targets and prices must pair up")
        if any(t not in (-1, 0, 1) for t in targets):
            raise ValidationError("targets", "each target must be -1, 0 or 1")
        return cls(
            strategy_id=str(data.get("strategy_id")),
            symbols=symbols,
            targets=targets,
            prices=prices,
            ts_signal=parse_ts(data.get("ts_signal"), "ts_signal"),
        )


class Strategy(Protocol):
    @property
    def strategy_id(self) -> str: ...

    @property
    def symbols(self) -> tuple[str, ...]: ...

    def on_tick(self, tick: Tick) -> Signal | None:
        """Update with one trade; a signal when the target position changes."""
        ...

    def targets(self, prices: NDArray[np.float64]) -> Targets:
        """Target positions for a whole series: ``prices`` has one column per symbol, one
        row per update; the result has the same shape."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Configuration and state, so another process continues exactly."""
        ...


def _positive_int(config: Mapping[str, Any], name: str) -> int:
    value = config.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(name, "must be an integer of at least 1")
    return value


def _number(config: Mapping[str, Any], name: str, default: float | None = None) -> float:
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, "must be a number")
    return float(value)


def _last_ts(state: Mapping[str, Any]) -> dict[str, datetime]:
    return {str(k): parse_ts(v, "last_ts") for k, v in (state.get("last_ts") or {}).items()}


class _Base:
    """Tick ordering, the current target and signal emission, shared by every strategy."""

    kind = ""

    def __init__(self, symbols: tuple[str, ...], allow_short: bool) -> None:
        self._symbols = symbols
        self.allow_short = allow_short
        self.position = 0
        self.last_ts: dict[str, datetime] = {}

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    def _fresh(self, tick: Tick) -> bool:
        last = self.last_ts.get(tick.symbol)
        if last is not None and tick.ts_event <= last:
            return False
        self.last_ts[tick.symbol] = tick.ts_event
        return True

    def _clip(self, target: int) -> int:
        return target if (target >= 0 or self.allow_short) else 0

    def _base_state(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "last_ts": {k: ts_str(v) for k, v in self.last_ts.items()},
        }

    def _restore_base(self, state: Mapping[str, Any]) -> None:
        position = state.get("position", 0)
        if position not in (-1, 0, 1):
            raise ValidationError("position", "must be -1, 0 or 1")
        self.position = int(position)
        self.last_ts = _last_ts(state)


class _Crossover(_Base):
    """Long when the fast average is above the slow one; short (or flat) below. The two
    crossovers differ only in the average they use: ``average`` for live ticks and its
    vectorised twin ``vectorised``."""

    average: type[indicators.SMA] | type[indicators.EMA]
    vectorised: Callable[[NDArray[np.float64], int], NDArray[np.float64]]

    def __init__(self, symbol: str, fast: int, slow: int, allow_short: bool = False) -> None:
        if fast >= slow:
            raise ValidationError("fast", f"must be shorter than slow ({fast} >= {slow})")
        super().__init__((parse_symbol(symbol),), allow_short)
        self.fast = fast
        self.slow = slow
        self.fast_avg: indicators.SMA | indicators.EMA = self.average(fast)
        self.slow_avg: indicators.SMA | indicators.EMA = self.average(slow)

    @property
    def strategy_id(self) -> str:
        return f"{self.kind}:{self._symbols[0]}:{self.fast}:{self.slow}"

    def on_tick(self, tick: Tick) -> Signal | None:
        # The hot path of the Event Hub trigger: the tick-order check and the decision are
        # written out here rather than called, to save calls per tick.
        symbol = tick.symbol
        if symbol != self._symbols[0]:
            return None
        ts = tick.ts_event
        last = self.last_ts.get(symbol)
        if last is not None and ts <= last:
            return None
        self.last_ts[symbol] = ts
        price = tick.price
        fast = self.fast_avg.update(price)
        slow = self.slow_avg.update(price)
        if fast is None or slow is None or fast == slow:
            return None
        target = 1 if fast > slow else (-1 if self.allow_short else 0)
        if target == self.position:
            return None
        self.position = target
        return Signal(self.strategy_id, self._symbols, (target,), (price,), ts)

    def targets(self, prices: NDArray[np.float64]) -> Targets:
        import numpy as np

        column = np.asarray(prices, dtype=np.float64).reshape(len(prices), -1)[:, 0]
        fast = type(self).vectorised(column, self.fast)
        slow = type(self).vectorised(column, self.slow)
        return crossover_targets(fast, slow, self.allow_short).reshape(len(column), 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "symbol": self._symbols[0],
            "fast": self.fast,
            "slow": self.slow,
            "allow_short": self.allow_short,
            "state": {
                **self._base_state(),
                "fast": self.fast_avg.to_dict(),
                "slow": self.slow_avg.to_dict(),
            },
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._restore_base(state)
        self.fast_avg = self.average.from_dict(state["fast"])
        self.slow_avg = self.average.from_dict(state["slow"])


def crossover_targets(
    fast: NDArray[np.float64], slow: NDArray[np.float64], allow_short: bool = False
) -> Targets:
    """The crossover decision over two average series (1-D): +1 where ``fast`` is above
    ``slow``, -1 (or 0 when ``allow_short`` is false) where below; a tie or a bar still
    warming up (NaN) keeps the previous target, starting flat. Parameter sweeps call it with
    averages they computed once per window."""
    import numpy as np

    up = fast > slow
    down = fast < slow
    decided = up | down
    count = len(decided)
    first = int(np.argmax(decided)) if count else 0
    if count and decided[first] and np.count_nonzero(decided) == count - first:
        # Undecided bars are only the warm-up before ``first``, which is flat: nothing to
        # hold through, so the decision is the target (the common case, and much faster).
        targets = up.astype(np.int8)
        if allow_short:
            targets -= down.astype(np.int8)
        return targets
    raw = np.full(len(fast), np.nan)
    raw[up] = 1.0
    raw[down] = -1.0 if allow_short else 0.0
    return _hold(raw)


def _hold(raw: NDArray[np.float64]) -> Targets:
    """Forward-fill decisions (NaN = keep the previous target), starting flat."""
    import numpy as np

    index = np.where(np.isnan(raw), 0, np.arange(len(raw)))
    np.maximum.accumulate(index, out=index)
    filled = raw[index]
    filled[np.isnan(filled)] = 0.0
    return filled.astype(np.int8)


class SmaCrossover(_Crossover):
    kind = "sma_cross"
    average = indicators.SMA
    vectorised = staticmethod(indicators.sma)


class EmaCrossover(_Crossover):
    kind = "ema_cross"
    average = indicators.EMA
    vectorised = staticmethod(indicators.ema)


def _band_decision(z: float, position: int, entry: float, exit_: float) -> int:
    """Mean reversion with hysteresis: enter beyond ``entry``, leave inside ``exit_``."""
    if z <= -entry:
        return 1
    if z >= entry:
        return -1
    if abs(z) <= exit_:
        return 0
    return position


def _band_vectorised(
    z: NDArray[np.float64], entry: float, exit_: float, allow_short: bool = True
) -> Targets:
    import numpy as np

    raw = np.full(len(z), np.nan)
    warm = ~np.isnan(z)
    raw[warm & (np.abs(z) <= exit_)] = 0.0
    raw[warm & (z <= -entry)] = 1.0
    raw[warm & (z >= entry)] = -1.0 if allow_short else 0.0
    return _hold(raw)


def _check_band(entry: float, exit_: float) -> None:
    if not entry > exit_ >= 0.0:
        raise ValidationError(
            "entry_z", f"must exceed exit_z, and exit_z must be >= 0 ({entry}, {exit_})"
        )


class ZScoreReversion(_Base):
    """Long when the price is ``entry_z`` deviations below its rolling mean, short when
    above, flat once it is back within ``exit_z``."""

    kind = "zscore"

    def __init__(
        self,
        symbol: str,
        window: int,
        entry_z: float = 2.0,
        exit_z: float = 0.5,
        allow_short: bool = True,
    ) -> None:
        _check_band(entry_z, exit_z)
        super().__init__((parse_symbol(symbol),), allow_short)
        self.window = window
        self.entry_z = entry_z
        self.exit_z = exit_z
        self.z = indicators.ZScore(window)

    @property
    def strategy_id(self) -> str:
        return f"{self.kind}:{self._symbols[0]}:{self.window}:{self.entry_z:g}:{self.exit_z:g}"

    def on_tick(self, tick: Tick) -> Signal | None:
        # The hot path of the Event Hub trigger: the tick-order check is written out here
        # rather than called, as in the crossovers.
        symbol = tick.symbol
        if symbol != self._symbols[0]:
            return None
        ts = tick.ts_event
        last = self.last_ts.get(symbol)
        if last is not None and ts <= last:
            return None
        self.last_ts[symbol] = ts
        z = self.z.update(tick.price)
        if z is None:
            return None
        position = self.position
        target = self._clip(_band_decision(z, position, self.entry_z, self.exit_z))
        if target == position:
            return None
        self.position = target
        return Signal(self.strategy_id, self._symbols, (target,), (tick.price,), ts)

    def targets(self, prices: NDArray[np.float64]) -> Targets:
        import numpy as np

        column = np.asarray(prices, dtype=np.float64).reshape(len(prices), -1)[:, 0]
        z = indicators.zscore(column, self.window)
        return _band_vectorised(z, self.entry_z, self.exit_z, self.allow_short).reshape(-1, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "symbol": self._symbols[0],
            "window": self.window,
            "entry_z": self.entry_z,
            "exit_z": self.exit_z,
            "allow_short": self.allow_short,
            "state": {**self._base_state(), "z": self.z.to_dict()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._restore_base(state)
        self.z = indicators.ZScore.from_dict(state["z"])


class PairsSpread(_Base):
    """Trades the spread ``price_a - hedge_ratio * price_b``: long the spread (long A,
    short B) when its z-score is ``entry_z`` below its rolling mean, short the spread when
    above, flat within ``exit_z``. Updates on every tick of either leg once both have a
    price, with the last price of the other leg."""

    kind = "pairs"

    def __init__(
        self,
        symbol_a: str,
        symbol_b: str,
        hedge_ratio: float,
        window: int,
        entry_z: float = 2.0,
        exit_z: float = 0.5,
    ) -> None:
        if symbol_a == symbol_b:
            raise ValidationError("symbol_b", "must differ from symbol_a")
        if not hedge_ratio > 0:
            raise ValidationError("hedge_ratio", "must be greater than zero")
        _check_band(entry_z, exit_z)
        super().__init__((parse_symbol(symbol_a), parse_symbol(symbol_b)), True)
        self.hedge_ratio = hedge_ratio
        self.window = window
        self.entry_z = entry_z
        self.exit_z = exit_z
        self.z = indicators.ZScore(window)
        self.last_price: dict[str, float] = {}

    @property
    def strategy_id(self) -> str:
        a, b = self._symbols
        return f"{self.kind}:{a}:{b}:{self.hedge_ratio:g}:{self.window}"

    def on_tick(self, tick: Tick) -> Signal | None:
        if tick.symbol not in self._symbols or not self._fresh(tick):
            return None
        self.last_price[tick.symbol] = tick.price
        a, b = self._symbols
        if a not in self.last_price or b not in self.last_price:
            return None
        z = self.z.update(self.last_price[a] - self.hedge_ratio * self.last_price[b])
        if z is None:
            return None
        target = _band_decision(z, self.position, self.entry_z, self.exit_z)
        if target == self.position:
            return None
        self.position = target
        prices = (self.last_price[a], self.last_price[b])
        return Signal(self.strategy_id, self._symbols, (target, -target), prices, tick.ts_event)

    def targets(self, prices: NDArray[np.float64]) -> Targets:
        """``prices`` rows are (last price of A, last price of B) after each update."""
        import numpy as np

        pair = np.asarray(prices, dtype=np.float64)
        if pair.ndim != 2 or pair.shape[1] != 2:
            raise ValidationError("prices", "must have two columns, A and B")
        spread = pair[:, 0] - self.hedge_ratio * pair[:, 1]
        position = _band_vectorised(
            indicators.zscore(spread, self.window), self.entry_z, self.exit_z
        )
        return np.stack([position, -position], axis=1).astype(np.int8)

    def to_dict(self) -> dict[str, Any]:
        a, b = self._symbols
        return {
            "kind": self.kind,
            "symbol_a": a,
            "symbol_b": b,
            "hedge_ratio": self.hedge_ratio,
            "window": self.window,
            "entry_z": self.entry_z,
            "exit_z": self.exit_z,
            "state": {
                **self._base_state(),
                "z": self.z.to_dict(),
                "last_price": dict(self.last_price),
            },
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._restore_base(state)
        self.z = indicators.ZScore.from_dict(state["z"])
        self.last_price = {str(k): float(v) for k, v in (state.get("last_price") or {}).items()}


AnyStrategy = SmaCrossover | EmaCrossover | ZScoreReversion | PairsSpread


def build_strategy(config: Mapping[str, Any]) -> AnyStrategy:
    """A strategy from its configuration (and state, when ``config`` came from
    ``to_dict``). Errors name the field."""
    if not isinstance(config, Mapping):
        raise ValidationError("strategy", "must be an object")
    kind = config.get("kind")
    allow_short = config.get("allow_short")
    if allow_short is not None and not isinstance(allow_short, bool):
        raise ValidationError("allow_short", "must be true or false")
    strategy: AnyStrategy
    if kind in ("sma_cross", "ema_cross"):
        cls = SmaCrossover if kind == "sma_cross" else EmaCrossover
        strategy = cls(
            parse_symbol(config.get("symbol")),
            _positive_int(config, "fast"),
            _positive_int(config, "slow"),
            bool(allow_short),
        )
    elif kind == "zscore":
        strategy = ZScoreReversion(
            parse_symbol(config.get("symbol")),
            _positive_int(config, "window"),
            _number(config, "entry_z", 2.0),
            _number(config, "exit_z", 0.5),
            True if allow_short is None else allow_short,
        )
    elif kind == "pairs":
        strategy = PairsSpread(
            parse_symbol(config.get("symbol_a"), "symbol_a"),
            parse_symbol(config.get("symbol_b"), "symbol_b"),
            _number(config, "hedge_ratio"),
            _positive_int(config, "window"),
            _number(config, "entry_z", 2.0),
            _number(config, "exit_z", 0.5),
        )
    else:
        raise ValidationError(
            "kind", f"must be sma_cross, ema_cross, zscore or pairs, got {kind!r}"
        )
    state = config.get("state")
    if state is not None:
        if not isinstance(state, Mapping):
            raise ValidationError("state", "must be an object")
        try:
            strategy.restore(state)
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, ValidationError):
                raise
            raise ValidationError("state", f"cannot be restored: {error}") from None
    return strategy
