"""The backtest engine against the tools people use, in one run on the same data: vectorbt,
backtesting.py and a plain-numpy reference written here. Seeded synthetic one-minute bars;
SMA(10/50) long/flat, 0.1% commission per side, fills at the next bar's open, all-in sizing;
one backtest on 1M bars, and a 90-combination sweep (fast 5..45 x slow 50..185).

    python -m bench.backtest [--bars N] [--repeats R] [--bt-bars M] [--skip-sweep]

Needs the bench requirements (``make bench`` installs them in their own environment).
Times are medians of several runs, each from the raw arrays to the figures compared:
final equity and closed-trade count (plus the metrics on the "+ metrics" rows). vectorbt's
first calls compile its functions (numba); they are made once before timing, outside it.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import multiprocessing
import os
import platform
import resource
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from domain.backtest import (
    Bars,
    Commission,
    CommissionKind,
    ExecutionModel,
    ParameterGrid,
    StrategySignals,
    backtest_strategy,
    sweep,
)
from domain.strategies import SmaCrossover

FloatArray = NDArray[np.float64]

FEE = 0.001  # 0.1% of the traded value, each side
CASH = 1_000_000.0
FAST, SLOW = 10, 50
FASTS = list(range(5, 50, 5))  # 9 values
SLOWS = list(range(50, 200, 15))  # 10 values: 90 combinations, every fast < slow
BARS_PER_YEAR = 252.0 * 390.0  # regular-hours minutes
MODEL = ExecutionModel(commission=Commission(CommissionKind.BPS, FEE * 1e4), starting_cash=CASH)

# Targets, from this machine's issue: multiples of the other tool's time over ours (or, for
# the numpy reference, the most ours may take relative to it).
TARGET_VECTORBT_SINGLE = 5.0
TARGET_BACKTESTING_SINGLE = 50.0
TARGET_VECTORBT_SWEEP = 20.0
TARGET_NUMPY_WITHIN = 4.0


@dataclass
class Market:
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    ts: NDArray[np.datetime64]

    def head(self, n: int) -> Market:
        return Market(
            self.open[:n], self.high[:n], self.low[:n], self.close[:n], self.volume[:n], self.ts[:n]
        )


def synthetic_minutes(n: int, seed: int = 7) -> Market:
    """Geometric Brownian motion closes (0.05% a minute), opens a small gap from the
    previous close, highs and lows beyond both, one bar a minute from 2025-01-02 14:30 UTC."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0005, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.0001, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.0002, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.0002, n)))
    volume = rng.integers(100, 10_000, n).astype(np.float64)
    ts = np.datetime64("2025-01-02T14:30", "ns") + np.arange(n) * np.timedelta64(1, "m")
    return Market(open_, high, low, close, volume, ts)


@dataclass
class Outcome:
    final: float
    trades: int
    metrics: dict[str, float] | None = None
    portfolio: Any = None  # vectorbt's, to read its equity curve after the timing


def median_ms(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    samples = []
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples), result


# -- ours -------------------------------------------------------------------------------------


def ours_single(market: Market, cash: float = CASH, metrics: bool = False) -> Outcome:
    bars = Bars.of(market.close, open=market.open, high=market.high, low=market.low)
    config = {"kind": "sma_cross", "symbol": "S1", "fast": FAST, "slow": SLOW}
    model = ExecutionModel(commission=MODEL.commission, starting_cash=cash)
    result = backtest_strategy(bars, config, model, bars_per_year=BARS_PER_YEAR)
    trades = int(np.count_nonzero(result.trades.closed))
    outcome = Outcome(float(result.equity[-1]), trades)
    if metrics:
        m = result.metrics
        outcome.metrics = {"sharpe": m.sharpe, "max_drawdown": m.max_drawdown}
    return outcome


def ours_targets(market: Market) -> NDArray[np.int8]:
    bars = Bars.of(market.close)
    return StrategySignals(bars, [SmaCrossover("S1", FAST, SLOW)]).targets(0)[:, 0]


LEAN = ("final_equity", "trades")  # what vectorbt's sweep row computes too


def ours_sweep(market: Market, workers: int = 1, lean: bool = False) -> list[Outcome]:
    """Every metric of every combination, or (``lean``) the final equity and trade count
    only, which need no per-bar curve."""
    bars = Bars.of(market.close, open=market.open, high=market.high, low=market.low)
    grid = ParameterGrid({"kind": "sma_cross", "symbol": "S1"}, {"fast": FASTS, "slow": SLOWS})
    result = sweep(
        bars,
        grid,
        MODEL,
        bars_per_year=BARS_PER_YEAR,
        workers=workers,
        metrics=LEAN if lean else None,
    )
    return [
        Outcome(m.final_equity, m.trades, {"sharpe": m.sharpe, "max_drawdown": m.max_drawdown})
        for m in result.metrics
    ]


# -- the plain numpy reference ---------------------------------------------------------------


def numpy_sma(close: FloatArray, window: int) -> FloatArray:
    """A cumsum rolling mean over values taken about the first (to keep the sums small)."""
    sums = np.cumsum(close - close[0])
    out = np.full(len(close), np.nan)
    out[window - 1] = sums[window - 1] / window
    out[window:] = (sums[window:] - sums[:-window]) / window
    out += close[0]
    return out


def numpy_backtest(
    open_: FloatArray, close: FloatArray, fast: FloatArray, slow: FloatArray, metrics: bool
) -> Outcome:
    """Long/flat all-in with a proportional fee, from the arrays alone: long after a bar
    whose fast average closed above the slow, bought at the next open with all the cash
    (fee included), sold at the open after it no longer is."""
    n = len(close)
    held = np.zeros(n, dtype=np.int8)
    held[1:] = fast[:-1] > slow[:-1]  # the position through bar t, decided at t - 1
    change = np.flatnonzero(np.diff(held, prepend=np.int8(0)))
    entries, exits = change[::2], change[1::2]
    growth = open_[exits] / open_[entries[: len(exits)]] * ((1.0 - FEE) / (1.0 + FEE))
    before = CASH * np.concatenate(([1.0], np.cumprod(growth)))[: len(entries)]
    units = before / (open_[entries] * (1.0 + FEE))
    after = units[: len(exits)] * open_[exits] * (1.0 - FEE)
    # Per bar: cash between trades, units * close within them.
    bounds = np.sort(np.concatenate(([0], change)))
    lengths = np.diff(bounds, append=n)
    cash_seg = np.zeros(len(bounds))
    units_seg = np.zeros(len(bounds))
    cash_seg[0] = CASH
    units_seg[1::2] = units
    cash_seg[2::2] = after
    equity = np.repeat(cash_seg, lengths) + np.repeat(units_seg, lengths) * close
    outcome = Outcome(float(equity[-1]), len(exits))
    if metrics:
        returns = np.diff(equity, prepend=CASH) / np.concatenate(([CASH], equity[:-1]))
        peak = np.maximum(np.maximum.accumulate(equity), CASH)
        outcome.metrics = {
            "sharpe": float(returns.mean() / returns.std(ddof=1) * math.sqrt(BARS_PER_YEAR)),
            "max_drawdown": float(np.max(1.0 - equity / peak)),
        }
    return outcome


def numpy_single(market: Market, metrics: bool = False) -> Outcome:
    fast, slow = numpy_sma(market.close, FAST), numpy_sma(market.close, SLOW)
    return numpy_backtest(market.open, market.close, fast, slow, metrics)


def numpy_sweep(market: Market) -> list[Outcome]:
    means = {w: numpy_sma(market.close, w) for w in sorted(set(FASTS) | set(SLOWS))}
    return [
        numpy_backtest(market.open, market.close, means[f], means[s], True)
        for f in FASTS
        for s in SLOWS
    ]


# -- vectorbt ---------------------------------------------------------------------------------


def _vbt() -> Any:
    return importlib.import_module("vectorbt")


def _signals(fast: Any, slow: Any) -> tuple[Any, Any]:
    """Entries and exits from the state "fast above slow" (as our targets), decided at a
    close and traded at the next open: the same rule for every contender."""
    above = fast > slow
    previous = np.zeros_like(above)
    previous[1:] = above[:-1]
    entries = np.zeros_like(above)
    exits = np.zeros_like(above)
    entries[1:] = (above & ~previous)[:-1]
    exits[1:] = (~above & previous)[:-1]
    return entries, exits


def vbt_single(market: Market, metrics: bool = False) -> Outcome:
    vbt = _vbt()
    fast = vbt.MA.run(market.close, FAST).ma.to_numpy()
    slow = vbt.MA.run(market.close, SLOW).ma.to_numpy()
    entries, exits = _signals(fast, slow)
    portfolio = vbt.Portfolio.from_signals(
        market.close, entries, exits, price=market.open, fees=FEE, init_cash=CASH, freq="1min"
    )
    outcome = Outcome(
        float(portfolio.final_value()), int(portfolio.trades.closed.count()), None, portfolio
    )
    if metrics:
        outcome.metrics = {
            "sharpe": float(portfolio.sharpe_ratio()),
            "max_drawdown": float(-portfolio.max_drawdown()),
        }
    return outcome


def vbt_curve_end(outcome: Outcome) -> Outcome:
    """vectorbt's final_value() is starting cash x (1 + total return), which loses digits
    when the equity falls by many orders of magnitude (as here, with ~14,000 round trips
    paying 0.2%); the last value of its equity curve has them all."""
    last = outcome.portfolio.value().to_numpy()[-1]
    if np.ndim(last) == 0:
        return Outcome(float(last), outcome.trades)
    raise ValueError("one column expected")


def vbt_given_signals(market: Market, targets: NDArray[np.int8]) -> Outcome:
    """vectorbt's simulation fed our targets: agreement of the two simulations alone."""
    vbt = _vbt()
    held = targets.astype(bool)
    previous = np.concatenate(([False], held[:-1]))
    entries = np.concatenate(([False], (held & ~previous)[:-1]))
    exits = np.concatenate(([False], (~held & previous)[:-1]))
    portfolio = vbt.Portfolio.from_signals(
        market.close, entries, exits, price=market.open, fees=FEE, init_cash=CASH
    )
    return Outcome(float(portfolio.value().to_numpy()[-1]), int(portfolio.trades.closed.count()))


def vbt_sweep(market: Market, metrics: bool = False) -> list[Outcome]:
    vbt = _vbt()
    windows = sorted(set(FASTS) | set(SLOWS))
    # Each distinct window once, then gathered into 90 columns: the cheap way to use it.
    means = vbt.MA.run(market.close, windows).ma.to_numpy()
    column = {w: i for i, w in enumerate(windows)}
    fast = means[:, [column[f] for f in FASTS for _ in SLOWS]]
    slow = means[:, [column[s] for _ in FASTS for s in SLOWS]]
    entries, exits = _signals(fast, slow)
    del fast, slow, means
    portfolio = vbt.Portfolio.from_signals(
        market.close[:, None],
        entries,
        exits,
        price=market.open[:, None],
        fees=FEE,
        init_cash=CASH,
        freq="1min",
    )
    finals = portfolio.final_value().to_numpy()
    trades = portfolio.trades.closed.count().to_numpy()
    outcomes = [
        Outcome(float(f), int(t), None, portfolio) for f, t in zip(finals, trades, strict=True)
    ]
    if metrics:
        sharpe = portfolio.sharpe_ratio().to_numpy()
        drawdown = portfolio.max_drawdown().to_numpy()
        for outcome, s, d in zip(outcomes, sharpe, drawdown, strict=True):
            outcome.metrics = {"sharpe": float(s), "max_drawdown": float(-d)}
            # Its cached curves (returns, drawdowns: 90 x bars each) would outlive the run.
            outcome.portfolio = None
    return outcomes


# -- backtesting.py ---------------------------------------------------------------------------


def backtesting_single(market: Market, cash: float) -> Outcome:
    os.environ["TQDM_DISABLE"] = "1"  # its progress bar would garble the table
    pandas = importlib.import_module("pandas")
    library = importlib.import_module("backtesting")
    frame = pandas.DataFrame(
        {
            "Open": market.open,
            "High": market.high,
            "Low": market.low,
            "Close": market.close,
            "Volume": market.volume,
        },
        index=pandas.DatetimeIndex(market.ts),
    )

    def rolling_mean(values: Any, window: int) -> Any:
        return pandas.Series(values).rolling(window).mean().to_numpy()

    def init(self: Any) -> None:
        self.fast = self.I(rolling_mean, self.data.Close, FAST)
        self.slow = self.I(rolling_mean, self.data.Close, SLOW)

    def next_(self: Any) -> None:
        if self.fast[-1] > self.slow[-1]:
            if not self.position:
                self.buy()  # all the equity, in whole units (its only choice)
        elif self.fast[-1] < self.slow[-1] and self.position:
            self.position.close()

    strategy = type("SmaCross", (library.Strategy,), {"init": init, "next": next_})
    with warnings.catch_warnings():
        # It warns that the last trade is still open; its count leaves that one out, as ours.
        warnings.simplefilter("ignore")
        stats = library.Backtest(
            frame, strategy, cash=cash, commission=FEE, trade_on_close=False
        ).run()
    return Outcome(float(stats["Equity Final [$]"]), int(stats["# Trades"]))


# -- memory -----------------------------------------------------------------------------------


def _memory_child(connection: Any, kind: str, bars: int) -> None:
    """In a fresh interpreter: make the data, then run one sweep and report how far the
    peak resident set grew over what the data and the imports had taken."""
    market = synthetic_minutes(bars)
    if kind == "vectorbt":
        vbt_sweep(market.head(5_000))  # compile first, as in the timings
    runs: dict[str, Callable[[], Any]] = {
        "ours": lambda: ours_sweep(market),
        "numpy": lambda: numpy_sweep(market),
        "vectorbt": lambda: vbt_sweep(market),
    }
    before = _peak_rss()
    tracemalloc.start()
    runs[kind]()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    connection.send((_peak_rss() - before, traced))
    connection.close()


def _peak_rss() -> int:
    """This process's peak resident set, in bytes. Linux's VmHWM belongs to the process's
    own memory map; getrusage's maxrss also keeps the peak of the process that started it
    (a spawned child inherits its parent's), which would hide a smaller sweep's."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory(kind: str, bars: int) -> tuple[int, int]:
    """(growth of the peak resident set, tracemalloc's peak) of one sweep, in bytes, each
    measured in a new process so no earlier run's peak hides it. tracemalloc sees numpy's
    arrays but not what numba allocates, hence both."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_memory_child, args=(sender, kind, bars))
    child.start()
    result: tuple[int, int] = receiver.recv()
    child.join()
    return result


# -- report -----------------------------------------------------------------------------------


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def agreement(ours: Outcome, other: Outcome, tolerance: float = 1e-6) -> str:
    trades = "same trades" if ours.trades == other.trades else f"trades {other.trades}"
    equity = relative(other.final, ours.final)
    verdict = "agrees" if ours.trades == other.trades and equity <= tolerance else "differs"
    return f"{verdict}: {trades}, final equity {equity:.1e} rel"


def vbt_sweep_curve_ends(outcomes: list[Outcome]) -> list[Outcome]:
    """As ``vbt_curve_end``, for every column of a sweep (read after the timing)."""
    last = outcomes[0].portfolio.value().to_numpy()[-1]
    return [Outcome(float(v), o.trades) for v, o in zip(last, outcomes, strict=True)]


def sweep_agreement(ours: list[Outcome], other: list[Outcome], tolerance: float = 1e-6) -> str:
    same = sum(
        1
        for a, b in zip(ours, other, strict=True)
        if a.trades == b.trades and relative(b.final, a.final) <= tolerance
    )
    worst = max(relative(b.final, a.final) for a, b in zip(ours, other, strict=True))
    return f"{same}/{len(ours)} combinations agree (worst final equity {worst:.1e} rel)"


def row(name: str, ms: float, ours_ms: float | None, note: str = "") -> None:
    ratio = "" if ours_ms is None else f"{ms / ours_ms:.1f}x"
    print(f"  {name:<46} {ms:10.1f} ms {ratio:>7}  {note}".rstrip())


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sweep-repeats", type=int, default=3)
    parser.add_argument(
        "--bt-bars", type=int, default=0, help="time backtesting.py on this many bars, scaled"
    )
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args(argv)
    os.environ["TQDM_DISABLE"] = "1"  # backtesting.py's progress bar would garble the table

    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("numpy", "vectorbt", "numba", "backtesting")
    )
    print(f"Python {platform.python_version()}, {versions}; {os.cpu_count()} cores")
    market = synthetic_minutes(args.bars)
    print(
        f"{args.bars:,} synthetic one-minute bars (seed 7); SMA({FAST}/{SLOW}) long/flat, "
        f"{FEE:.1%} fees a side, next-open fills, all-in from {CASH:,.0f}"
    )

    # Warm-ups, outside every timing: numba compiles vectorbt's functions on first use.
    vbt_single(market.head(5_000), metrics=True)
    vbt_sweep(market.head(5_000), metrics=True)
    ours_single(market.head(5_000), metrics=True)
    backtesting_single(market.head(2_000), CASH)

    print(f"\nOne backtest (median of {args.repeats}; x = its time over ours)")
    ours_ms, ours = median_ms(lambda: ours_single(market), args.repeats)
    ours_m_ms, ours_m = median_ms(lambda: ours_single(market, metrics=True), args.repeats)
    numpy_ms, reference = median_ms(lambda: numpy_single(market), args.repeats)
    numpy_m_ms, _ = median_ms(lambda: numpy_single(market, metrics=True), args.repeats)
    vbt_ms, vectorbt = median_ms(lambda: vbt_single(market), args.repeats)
    vbt_m_ms, _ = median_ms(lambda: vbt_single(market, metrics=True), args.repeats)
    bt_bars = min(args.bt_bars or args.bars, args.bars)
    bt_repeats = max(1, min(3, args.repeats))
    bt_ms, _ = median_ms(lambda: backtesting_single(market.head(bt_bars), CASH), bt_repeats)
    bt_scaled = bt_ms * args.bars / bt_bars
    # backtesting.py sizes in whole units, so it stops trading once the equity is below one
    # share; its agreement is checked where it can still trade, with a large starting cash.
    check_bars = min(100_000, args.bars)
    check = market.head(check_bars)
    bt_check = backtesting_single(check, 1e10)
    ours_check = ours_single(check, cash=1e10)
    given = vbt_given_signals(market, ours_targets(market))

    print(f"  {'':<46} {'time':>13} {'x':>7}")
    row("ours: bars in, final equity + trade count", ours_ms, None, f"{ours.trades} trades")
    row("ours: + every metric", ours_m_ms, None)
    row("plain numpy reference", numpy_ms, ours_ms, agreement(ours, reference))
    row("plain numpy reference + Sharpe, max drawdown", numpy_m_ms, ours_m_ms)
    row(
        "vectorbt (compiled before timing)",
        vbt_ms,
        ours_ms,
        agreement(ours, vbt_curve_end(vectorbt)),
    )
    row("vectorbt + Sharpe, max drawdown", vbt_m_ms, ours_m_ms)
    if bt_bars == args.bars:
        row("backtesting.py", bt_ms, ours_ms)
    else:
        row(f"backtesting.py, {bt_bars:,} bars x {args.bars / bt_bars:g}", bt_scaled, ours_ms)
    print(
        f"  backtesting.py vs ours on the first {check_bars:,} bars from {1e10:,.0f} "
        f"(whole units): {agreement(ours_check, bt_check, 1e-6)}"
    )
    print(f"  vectorbt's simulation fed our targets: {agreement(ours, given)}")
    drift = relative(vectorbt.final, ours.final)
    if drift > 1e-9:
        print(
            f"  vectorbt's final_value() is {drift:.1e} off: it is cash x (1 + total return), "
            "which loses digits when the equity falls by orders of magnitude (as here); the "
            "agreement uses the last value of its equity curve"
        )
    if ours_m.metrics:
        print(
            f"  ours: Sharpe {ours_m.metrics['sharpe']:.3f}, "
            f"max drawdown {ours_m.metrics['max_drawdown']:.2%}"
        )

    results = {
        "single_vbt": vbt_ms / ours_ms,
        "single_bt": bt_scaled / ours_ms,
        "single_numpy": ours_ms / numpy_ms,
    }
    if not args.skip_sweep:
        combos = len(FASTS) * len(SLOWS)
        print(f"\nSweep: {combos} combinations (median of {args.sweep_repeats})")
        sweep_ms, sweep_ours = median_ms(lambda: ours_sweep(market), args.sweep_repeats)
        lean_ms, sweep_lean = median_ms(lambda: ours_sweep(market, lean=True), args.sweep_repeats)
        sweep2_ms, _ = median_ms(lambda: ours_sweep(market, workers=2), args.sweep_repeats)
        np_sweep_ms, sweep_numpy = median_ms(lambda: numpy_sweep(market), args.sweep_repeats)
        vbt_sweep_ms, sweep_vbt = median_ms(lambda: vbt_sweep(market), args.sweep_repeats)
        vbt_ends = vbt_sweep_curve_ends(sweep_vbt)
        del sweep_vbt
        gc.collect()  # vectorbt's gigabytes go before its next run and the memory runs
        vbt_sweep_m_ms, _ = median_ms(lambda: vbt_sweep(market, metrics=True), 1)
        del _
        gc.collect()
        memory = {kind: peak_memory(kind, args.bars) for kind in ("ours", "numpy", "vectorbt")}
        mb = {k: v[0] / 2**20 for k, v in memory.items()}
        row("ours, one thread (every metric)", sweep_ms, None, f"peak +{mb['ours']:,.0f} MB")
        row(
            "ours: final equity + trade count (metrics=...)",
            lean_ms,
            sweep_ms,
            sweep_agreement(sweep_ours, sweep_lean, tolerance=0.0),
        )
        row("ours, two threads (workers=2)", sweep2_ms, sweep_ms)
        row(
            "plain numpy reference (+ Sharpe, max drawdown)",
            np_sweep_ms,
            sweep_ms,
            f"peak +{mb['numpy']:,.0f} MB; {sweep_agreement(sweep_ours, sweep_numpy)}",
        )
        row(
            "vectorbt: final equity + trade count",
            vbt_sweep_ms,
            sweep_ms,
            f"peak +{mb['vectorbt']:,.0f} MB; {sweep_agreement(sweep_ours, vbt_ends)}",
        )
        row("vectorbt + Sharpe, max drawdown (one run)", vbt_sweep_m_ms, sweep_ms)
        print(
            f"  backtesting.py: not run ({combos} backtests of {args.bars:,} bars would take "
            f"~{combos * bt_scaled / 6e4:,.0f} min at its one-backtest speed)"
        )
        print(
            "  peak = growth of the peak resident set during the sweep, each in a new process "
            f"(tracemalloc's peaks: ours {memory['ours'][1] / 2**20:,.0f} MB, numpy "
            f"{memory['numpy'][1] / 2**20:,.0f} MB, vectorbt {memory['vectorbt'][1] / 2**20:,.0f}"
            " MB without what numba allocates)"
        )
        differ = [
            (a.final, b.final)
            for a, b in zip(sweep_ours, vbt_ends, strict=True)
            if a.trades != b.trades or relative(b.final, a.final) > 1e-6
        ]
        if differ:
            print(
                f"  the {len(differ)} combinations where vectorbt differs are those whose equity "
                f"falls below {max(a for a, _ in differ):.1e} in ours: vectorbt stops trading "
                f"near {min(b for _, b in differ):.1e} (it drops orders under its size tolerance)"
            )
        results["sweep_vbt"] = vbt_sweep_ms / sweep_ms
        results["sweep_vbt_lean"] = vbt_sweep_ms / lean_ms
        results["sweep_vbt_metrics"] = vbt_sweep_m_ms / sweep_ms
        results["sweep_vbt_2"] = vbt_sweep_ms / sweep2_ms
        results["sweep_numpy"] = sweep_ms / np_sweep_ms

    print("\nTargets")
    single_vbt, single_bt = results["single_vbt"], results["single_bt"]
    print(
        f"  one backtest vs vectorbt: {single_vbt:.1f}x "
        f"(>= {TARGET_VECTORBT_SINGLE:g}x: {verdict(single_vbt >= TARGET_VECTORBT_SINGLE)})"
    )
    print(
        f"  one backtest vs backtesting.py: {single_bt:,.0f}x "
        f"(>= {TARGET_BACKTESTING_SINGLE:g}x: {verdict(single_bt >= TARGET_BACKTESTING_SINGLE)})"
    )
    print(
        f"  one backtest, ours over the numpy reference: {results['single_numpy']:.2f}x "
        f"(within {TARGET_NUMPY_WITHIN:g}x: "
        f"{verdict(results['single_numpy'] <= TARGET_NUMPY_WITHIN)})"
    )
    if "sweep_vbt" in results:
        one, two = results["sweep_vbt"], results["sweep_vbt_2"]
        print(
            f"  sweep vs vectorbt: {one:.1f}x on one thread, {two:.1f}x on two "
            f"(>= {TARGET_VECTORBT_SWEEP:g}x: one thread {verdict(one >= TARGET_VECTORBT_SWEEP)}, "
            f"two {verdict(two >= TARGET_VECTORBT_SWEEP)}; vectorbt runs on one)"
        )
        lean, rich = results["sweep_vbt_lean"], results["sweep_vbt_metrics"]
        print(
            f"  sweep vs vectorbt, like for like: {lean:.1f}x computing what vectorbt's row "
            f"computes (final equity, trade count), {rich:.1f}x with Sharpe and max drawdown "
            f"against every metric of ours (>= {TARGET_VECTORBT_SWEEP:g}x: "
            f"{verdict(lean >= TARGET_VECTORBT_SWEEP)}, {verdict(rich >= TARGET_VECTORBT_SWEEP)})"
        )
        print(
            f"  sweep, ours over the numpy reference: {results['sweep_numpy']:.2f}x "
            f"(within {TARGET_NUMPY_WITHIN:g}x: "
            f"{verdict(results['sweep_numpy'] <= TARGET_NUMPY_WITHIN)})"
        )


if __name__ == "__main__":
    main()
