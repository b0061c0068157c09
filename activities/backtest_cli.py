"""``python -m activities.backtest_cli``: backtest a strategy, sweep its parameters, or
walk it forward, on bars from a file, the synthetic market or Alpaca.

    python -m activities.backtest_cli run --synthetic 1000000 --strategy sma_cross \\
        --symbol SPY --param fast=10 --param slow=50 --commission-bps 1 --report out.html
    python -m activities.backtest_cli sweep --csv data/spy.csv --strategy sma_cross \\
        --grid fast=5:50:5 --grid slow=20:200:20 --metric sharpe --report sweep.html
    python -m activities.backtest_cli walk-forward --parquet bars.parquet --strategy \\
        sma_cross --symbol SPY --grid fast=5:50:5 --grid slow=20:200:20 \\
        --train-bars 50000 --test-bars 10000

It prints the metrics (or the leaderboard, or the walk-forward windows), ``--json`` prints
them as JSON instead, and ``--report`` writes the HTML report. Long runs draw a progress
line on stderr when it is a terminal (or with ``--progress``). Exits 2 on input it cannot
use, naming the flag; 1 when a data source fails (Alpaca unreachable).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from activities.backtest_data import (
    ALPACA_FEEDS,
    Missing,
    Timeframe,
    bars_per_year,
    load_bars,
)
from activities.backtest_report import FORMAT_OF, LABEL_OF, METRIC_ROWS, fmt, write_report
from domain.errors import TradingError, ValidationError

if TYPE_CHECKING:
    from domain.backtest import (
        BacktestResult,
        Bars,
        ExecutionModel,
        Metrics,
        WalkForwardResult,
    )

STRATEGIES = ("sma_cross", "ema_cross", "zscore", "pairs")
METRICS = (
    "sharpe",
    "sortino",
    "total_return",
    "annualised_return",
    "final_equity",
    "max_drawdown",
    "volatility",
    "win_rate",
    "profit_factor",
    "max_drawdown_duration",
    "longest_drawdown",
    "exposure",
    "turnover",
    "fees",
)
# Bars in a year for each of Alpaca's timeframes (252 sessions of 6.5 hours).
TIMEFRAME_BARS_PER_YEAR = {"1Min": 252 * 390.0, "1Hour": 252 * 6.5, "1Day": 252.0}
LEADERBOARD_COLUMNS = ("total_return", "sharpe", "max_drawdown", "trades", "final_equity")
# Sweeps run in about this many chunks when a progress line is drawn: enough steps to see
# it move, few enough that sharing indicator work within a chunk still pays.
PROGRESS_CHUNKS = 20


# -- flags -----------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than zero, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than zero, got {text!r}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def _value(text: str) -> bool | int | float | str:
    """A parameter's value: true/false, a whole number, a number, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if isinstance(number, float) and not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        return number
    return text.strip()


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name or not value.strip():
        raise argparse.ArgumentTypeError(f"must be NAME=VALUE, got {text!r}")
    return name, value


def param(text: str) -> tuple[str, bool | int | float | str]:
    """``--param fast=10``."""
    name, value = _assignment(text)
    return name, _value(value)


def grid_axis(text: str) -> tuple[str, list[bool | int | float | str]]:
    """``--grid fast=5:50:5`` (start:stop:step, both ends included) or ``fast=5,10,20``."""
    name, spec = _assignment(text)
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"{name}: a range is START:STOP:STEP, got {spec!r}")
        values = [_value(p) for p in parts]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise argparse.ArgumentTypeError(f"{name}: START:STOP:STEP must be numbers")
        start, stop, step = (float(v) for v in values)
        if step <= 0 or stop < start:
            raise argparse.ArgumentTypeError(
                f"{name}: needs STOP >= START and a positive STEP, got {spec!r}"
            )
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > 10_000:
            raise argparse.ArgumentTypeError(f"{name}: {count:,} values is too many (10,000)")
        whole = all(isinstance(v, int) for v in values)
        # Each value from the start, not by adding steps, so 0.1 steps do not drift.
        return name, [
            int(start) + k * int(step) if whole else round(start + k * step, 10)
            for k in range(count)
        ]
    items = [_value(p) for p in spec.split(",") if p.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{name}: no values in {spec!r}")
    return name, items


def _symbol_list(text: str) -> list[str]:
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError("must name at least one symbol, e.g. SPY,QQQ")
    return symbols


def _common(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (one of)")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, metavar="PATH", help="bars from a CSV file")
    source.add_argument("--parquet", type=Path, metavar="PATH", help="bars from a Parquet file")
    source.add_argument(
        "--synthetic",
        type=_positive_int,
        metavar="BARS",
        help="BARS seeded synthetic bars (geometric Brownian motion)",
    )
    source.add_argument(
        "--alpaca",
        action="store_true",
        help="Alpaca's historical bars (ALPACA_KEY_ID and ALPACA_SECRET_KEY set)",
    )
    data.add_argument(
        "--symbols",
        type=_symbol_list,
        metavar="A,B",
        help="symbols to load (default: the strategy's; a file's: all of them)",
    )
    data.add_argument("--seed", type=_non_negative_int, default=7, help="synthetic seed (7)")
    data.add_argument(
        "--minutes", type=_positive_int, default=1, help="synthetic minutes per bar (1)"
    )
    data.add_argument("--start", metavar="ISO", help="first bar (synthetic, Alpaca)")
    data.add_argument("--end", metavar="ISO", help="end of the bars (Alpaca)")
    data.add_argument(
        "--timeframe",
        choices=[t.value for t in Timeframe],
        default=Timeframe.MINUTE.value,
        help="Alpaca bar length (1Min)",
    )
    data.add_argument("--feed", choices=ALPACA_FEEDS, help="Alpaca data feed (iex on free plans)")
    data.add_argument(
        "--missing",
        choices=[m.value for m in Missing],
        default=Missing.FILL.value,
        help="a time one symbol lacks: fill (last close, no volume), drop it, or error",
    )

    strategy = parser.add_argument_group("strategy")
    strategy.add_argument("--strategy", required=True, choices=STRATEGIES)
    strategy.add_argument("--symbol", help="the symbol it trades (pairs: --param symbol_a=...)")
    strategy.add_argument(
        "--param",
        type=param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a strategy parameter, e.g. fast=10 (repeat)",
    )

    execution = parser.add_argument_group("execution")
    execution.add_argument("--fill", choices=("next_open", "this_close"), default="next_open")
    commission = execution.add_mutually_exclusive_group()
    commission.add_argument("--commission-bps", type=_non_negative, metavar="BPS")
    commission.add_argument("--commission-per-share", type=_non_negative, metavar="AMOUNT")
    commission.add_argument("--commission-per-order", type=_non_negative, metavar="AMOUNT")
    slippage = execution.add_mutually_exclusive_group()
    slippage.add_argument("--slippage-bps", type=_non_negative, metavar="BPS")
    slippage.add_argument(
        "--slippage-range", type=_non_negative, metavar="FRACTION", help="of the bar's range"
    )
    execution.add_argument("--cash", type=_positive, default=100_000.0, help="(100000)")
    execution.add_argument("--sizing", choices=("all_in", "fixed"), default="all_in")
    execution.add_argument(
        "--quantity", type=_positive, default=1.0, help="shares per unit of target (fixed)"
    )
    execution.add_argument(
        "--bars-per-year", type=_positive, help="annualises metrics (default: from the bars)"
    )
    execution.add_argument("--risk-free", type=_finite, default=0.0, help="annual rate (0)")

    output = parser.add_argument_group("output")
    output.add_argument("--report", type=Path, metavar="PATH", help="write the HTML report")
    output.add_argument("--title", help="the report's title")
    output.add_argument("--json", action="store_true", help="print JSON instead of tables")
    progress = output.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", action="store_true", default=None, help="draw the progress line"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m activities.backtest_cli",
        description="Backtest a strategy, sweep its parameters, or walk it forward.",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="one backtest")
    _common(run)
    run.add_argument("--trades", type=_non_negative_int, default=5, help="last trades shown")
    for name, help_text in (
        ("sweep", "every combination of a parameter grid, ranked"),
        ("walk-forward", "rolling in-sample choice, stitched out-of-sample run"),
    ):
        command = commands.add_parser(name, help=help_text)
        _common(command)
        command.add_argument(
            "--grid",
            type=grid_axis,
            action="append",
            required=True,
            metavar="NAME=START:STOP:STEP",
            help="a parameter's values (or NAME=A,B,C); repeat for each parameter",
        )
        command.add_argument("--metric", choices=METRICS, default="sharpe", help="(sharpe)")
        if name == "sweep":
            command.add_argument("--top", type=_positive_int, default=10, help="rows shown (10)")
            command.add_argument(
                "--metrics",
                type=_metric_names,
                metavar="NAME,NAME",
                help="only these figures (and --metric); without a curve figure (sharpe, "
                "sortino, volatility, drawdowns, turnover) no equity curve is built: faster",
            )
            command.add_argument(
                "--chunk", type=_positive_int, help="combinations per progress step"
            )
        else:
            command.add_argument("--train-bars", type=_positive_int, required=True)
            command.add_argument("--test-bars", type=_positive_int, required=True)
            command.add_argument("--anchored", action="store_true", help="train from bar 0")
    return root


def _metric_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in (*METRICS, "trades")]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"not metrics: {', '.join(unknown) or text!r}")
    return names


# -- errors name the flag --------------------------------------------------------------------


class UsageError(Exception):
    """Input the command cannot use: exit 2, naming the flag."""

    def __init__(self, flag: str, reason: str) -> None:
        super().__init__(f"{flag}: {reason}")
        self.flag = flag
        self.reason = reason


def _data_flag(args: argparse.Namespace) -> str:
    if args.csv is not None:
        return "--csv"
    if args.parquet is not None:
        return "--parquet"
    return "--synthetic" if args.synthetic is not None else "--alpaca"


DATA_FIELDS = {
    "symbols": "--symbols",
    "seed": "--seed",
    "minutes": "--minutes",
    "start": "--start",
    "end": "--end",
    "timeframe": "--timeframe",
    "feed": "--feed",
    "missing": "--missing",
}
EXECUTION_FIELDS = {
    "fill": "--fill",
    "starting_cash": "--cash",
    "sizing.quantity": "--quantity",
    "sizing.kind": "--sizing",
    "slippage.amount": "--slippage-bps",
    "bars_per_year": "--bars-per-year",
    "risk_free_rate": "--risk-free",
    "metric": "--metric",
    "train_bars": "--train-bars",
    "test_bars": "--test-bars",
    "axes": "--grid",
    "configs": "--grid",
}


def _data_error(error: ValidationError, args: argparse.Namespace) -> UsageError:
    base = error.field.split("[")[0]
    if base == "symbols" and args.symbols is None:
        # The symbols loaded were the strategy's own.
        return UsageError("--symbol" if args.strategy != "pairs" else "--param", error.reason)
    if base in DATA_FIELDS:
        return UsageError(DATA_FIELDS[base], error.reason)
    flag = _data_flag(args)
    if base in ("path", "bars", "source"):
        return UsageError(flag, error.reason)
    return UsageError(flag, f"{error.field}: {error.reason}")


def _strategy_error(error: ValidationError, grid: Sequence[str] = ()) -> UsageError:
    field = error.field
    if field.startswith("configs[") and "." in field:
        field = field.split(".", 1)[1]
    if field in ("kind", "strategy"):
        return UsageError("--strategy", error.reason)
    if field == "symbol":
        return UsageError("--symbol", error.reason)
    if field in grid:
        return UsageError("--grid", f"{field}: {error.reason}")
    if field in EXECUTION_FIELDS:
        return UsageError(EXECUTION_FIELDS[field], error.reason)
    return UsageError("--param", f"{field}: {error.reason}")


# -- progress --------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a stream (stderr), redrawn at each step (a sweep takes
    about twenty)."""

    def __init__(self, label: str, total: int, stream: IO[str], *, enabled: bool) -> None:
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.enabled = enabled
        self.started = time.monotonic()
        self.draw()

    def advance(self, count: int) -> None:
        self.done = min(self.done + count, self.total)
        self.draw()

    def draw(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        share = self.done / self.total
        width = 28
        filled = round(share * width)
        elapsed = now - self.started
        eta = f", {elapsed / share - elapsed:,.0f}s left" if 0 < share < 1 else ""
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done:,}/{self.total:,} {share:4.0%} {elapsed:,.1f}s{eta}  "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


# -- running ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What the flags ask for, validated."""

    source: dict[str, Any]
    config: dict[str, Any]  # the strategy's configuration (the grid's base for sweeps)
    axes: dict[str, list[Any]]


def _strategy_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {"kind": args.strategy}
    for name, value in args.param:
        if name in ("kind", "symbol"):
            flag = "--strategy" if name == "kind" else "--symbol"
            raise UsageError("--param", f"{name} is set with {flag}")
        config[name] = value
    if args.strategy != "pairs":
        symbol = args.symbol
        if symbol is None and args.symbols is not None and len(args.symbols) == 1:
            symbol = args.symbols[0]
        if symbol is not None:
            config["symbol"] = symbol
    elif args.symbol is not None:
        raise UsageError("--symbol", "pairs trade two: --param symbol_a=A --param symbol_b=B")
    return config


def _traded_symbols(config: Mapping[str, Any]) -> list[str] | None:
    if config.get("kind") == "pairs":
        pair = [config.get("symbol_a"), config.get("symbol_b")]
        return [s for s in pair if isinstance(s, str)] or None
    symbol = config.get("symbol")
    return [symbol] if isinstance(symbol, str) else None


def _source(args: argparse.Namespace, config: Mapping[str, Any]) -> dict[str, Any]:
    symbols = args.symbols or _traded_symbols(config)
    if args.csv is not None or args.parquet is not None:
        path = args.csv if args.csv is not None else args.parquet
        source: dict[str, Any] = {
            "source": "file",
            "path": str(path),
            "format": "csv" if args.csv is not None else "parquet",
            "missing": args.missing,
        }
        if args.symbols is not None:
            source["symbols"] = args.symbols
        return source
    if symbols is None:
        raise UsageError("--symbol", "name the symbol to trade (or --symbols to load)")
    if args.synthetic is not None:
        source = {
            "source": "synthetic",
            "symbols": symbols,
            "bars": args.synthetic,
            "seed": args.seed,
            "minutes": args.minutes,
        }
        if args.start is not None:
            source["start"] = args.start
        return source
    for flag, value in (("--start", args.start), ("--end", args.end)):
        if value is None:
            raise UsageError(flag, "is needed with --alpaca")
    source = {
        "source": "alpaca",
        "symbols": symbols,
        "start": args.start,
        "end": args.end,
        "timeframe": args.timeframe,
        "missing": args.missing,
    }
    if args.feed is not None:
        source["feed"] = args.feed
    return source


def _model(args: argparse.Namespace) -> ExecutionModel:
    from domain.backtest import (
        Commission,
        CommissionKind,
        ExecutionModel,
        Sizing,
        SizingKind,
        Slippage,
        SlippageKind,
    )

    commission = Commission()
    for kind, value in (
        (CommissionKind.BPS, args.commission_bps),
        (CommissionKind.PER_SHARE, args.commission_per_share),
        (CommissionKind.PER_ORDER, args.commission_per_order),
    ):
        if value is not None:
            commission = Commission(kind, value)
    slippage = Slippage()
    if args.slippage_bps is not None:
        slippage = Slippage(SlippageKind.BPS, args.slippage_bps)
    elif args.slippage_range is not None:
        slippage = Slippage(SlippageKind.RANGE_FRACTION, args.slippage_range)
    return ExecutionModel(
        fill=args.fill,
        commission=commission,
        slippage=slippage,
        sizing=Sizing(SizingKind(args.sizing), args.quantity),
        starting_cash=args.cash,
    )


def _complete(config: dict[str, Any], bars: Bars, args: argparse.Namespace) -> dict[str, Any]:
    """The config with its symbol, once the bars are known: a file of one symbol needs none
    named."""
    if config["kind"] != "pairs" and "symbol" not in config:
        if bars.n_symbols != 1:
            raise UsageError(
                "--symbol", f"name the symbol to trade; the data has {', '.join(bars.symbols)}"
            )
        config = {**config, "symbol": bars.symbols[0]}
    for symbol in _traded_symbols(config) or ():
        if symbol not in bars.symbols:
            flag = "--symbol" if config["kind"] != "pairs" else "--param"
            raise UsageError(flag, f"{symbol} is not in the data ({', '.join(bars.symbols)})")
    return config


def _describe(config: Mapping[str, Any]) -> str:
    symbols = " ".join(_traded_symbols(config) or ())
    params = " ".join(f"{k}={v}" for k, v in config.items() if k not in ("kind", "symbol"))
    return " ".join(p for p in (str(config["kind"]), symbols, params) if p)


def _period(bars: Bars) -> str:
    if bars.ts is None:
        return f"{bars.n_bars:,} bars"
    first, last = bars.timestamp(0), bars.timestamp(bars.n_bars - 1)
    assert first is not None and last is not None
    return (
        f"{bars.n_bars:,} bars of {', '.join(bars.symbols)} from "
        f"{first.isoformat().replace('+00:00', 'Z')} to {last.isoformat().replace('+00:00', 'Z')}"
    )


def _table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(row, widths, right, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _metrics_text(columns: Mapping[str, Metrics]) -> str:
    rows = [["metric", *columns]]
    for name, label, kind in METRIC_ROWS:
        rows.append([label.lower(), *(fmt(getattr(m, name), kind) for m in columns.values())])
    return _table(rows, [False, *([True] * len(columns))])


def _metrics_json(metrics: Metrics) -> dict[str, Any]:
    return metrics.to_dict()


def _run(
    args: argparse.Namespace,
    bars: Bars,
    config: dict[str, Any],
    model: ExecutionModel,
    per_year: float,
    out: IO[str],
) -> None:
    from domain.backtest import backtest_strategy

    result: BacktestResult = backtest_strategy(
        bars, config, model, bars_per_year=per_year, risk_free_rate=args.risk_free
    )
    columns: dict[str, Metrics] = {"portfolio": result.metrics}
    if len(result.symbols) > 1:
        columns.update(result.symbol_metrics)
    trades = result.trades
    still_open = int((~trades.closed).sum())
    if args.json:
        payload = {
            "command": "run",
            "strategy": config,
            "bars": bars.n_bars,
            "symbols": list(result.symbols),
            "bars_per_year": per_year,
            "execution": model.to_dict(),
            "metrics": _metrics_json(result.metrics),
            "symbol_metrics": {s: _metrics_json(m) for s, m in result.symbol_metrics.items()},
            "trades": len(trades),
            "open_trades": still_open,
            "report": None if args.report is None else str(args.report),
        }
        out.write(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    else:
        out.write(f"{_describe(config)} on {_period(bars)}\n")
        out.write(f"{per_year:,.0f} bars a year; {_model_text(model)}\n\n")
        out.write(_metrics_text(columns) + "\n\n")
        out.write(f"trades: {len(trades):,} ({still_open} still open at the last bar)\n")
        shown = min(args.trades, len(trades))
        if shown:
            rows = [["symbol", "side", "entry", "exit", "entry price", "exit price", "p&l"]]
            for i in range(len(trades) - shown, len(trades)):
                trade = trades[i]
                rows.append(
                    [
                        trade.symbol,
                        "long" if trade.direction > 0 else "short",
                        _when(trade.ts_entry, trade.entry_bar),
                        _when(trade.ts_exit, trade.exit_bar) + ("" if trade.closed else " (open)"),
                        fmt(trade.entry_price, "price"),
                        fmt(trade.exit_price, "price"),
                        fmt(trade.pnl, "money"),
                    ]
                )
            out.write(f"last {shown}:\n")
            out.write(_table(rows, [False, False, False, False, True, True, True]) + "\n")
    if args.report is not None:
        write_report(
            args.report,
            result,
            title=args.title or f"Backtest: {_describe(config)}",
            details=_details(args, config, bars, per_year),
        )
        if not args.json:
            out.write(f"\nreport: {args.report}\n")


def _when(ts: Any, bar: int) -> str:
    return ts.isoformat().replace("+00:00", "Z") if ts is not None else f"bar {bar}"


def _model_text(model: ExecutionModel) -> str:
    parts = [f"fill at {model.fill.value.replace('_', ' ')}"]
    if model.commission.amount:
        parts.append(f"commission {model.commission.amount:g} {model.commission.kind.value}")
    if model.slippage.amount:
        parts.append(f"slippage {model.slippage.amount:g} {model.slippage.kind.value}")
    sizing = model.sizing.kind.value + (
        f" x {model.sizing.quantity:g}" if model.sizing.kind.value == "fixed" else ""
    )
    parts.append(f"sizing {sizing}")
    parts.append(f"cash {model.starting_cash:,.2f}")
    return ", ".join(parts)


def _details(
    args: argparse.Namespace, config: Mapping[str, Any], bars: Bars, per_year: float
) -> dict[str, str]:
    data = _data_flag(args)
    where = {
        "--csv": str(args.csv),
        "--parquet": str(args.parquet),
        "--synthetic": f"synthetic, seed {args.seed}",
        "--alpaca": f"Alpaca {args.timeframe} bars",
    }[data]
    return {
        "strategy": _describe(config),
        "data": f"{where}: {_period(bars)}",
        "annualised with": f"{per_year:,.0f} bars a year",
    }


def _sweep(
    args: argparse.Namespace,
    bars: Bars,
    base: dict[str, Any],
    axes: dict[str, list[Any]],
    model: ExecutionModel,
    per_year: float,
    out: IO[str],
    err: IO[str],
    drawing: bool,
) -> None:
    from domain.backtest import ParameterGrid, SweepResult, backtest_strategy, sweep

    grid = ParameterGrid(base, axes)
    configs, skipped = grid.configs()
    wanted = None if args.metrics is None else (*args.metrics, args.metric)
    chunk = args.chunk or (max(1, -(-len(configs) // PROGRESS_CHUNKS)) if drawing else len(configs))
    progress = Progress("sweep", len(configs), err, enabled=drawing)
    metrics: list[Metrics] = []
    computed: frozenset[str] = frozenset()
    try:
        for start in range(0, len(configs), chunk):
            part = sweep(
                bars,
                configs[start : start + chunk],
                model,
                bars_per_year=per_year,
                risk_free_rate=args.risk_free,
                metrics=wanted,
            )
            computed = part.computed
            metrics.extend(part.metrics)
            progress.advance(len(part.metrics))
    finally:
        progress.close()
    table = SweepResult(tuple(configs), tuple(metrics), skipped, None, computed)
    order = table.ranked(args.metric)
    best = order[0]
    names = list(axes)
    shown = LEADERBOARD_COLUMNS if args.metrics is None else args.metrics
    columns = [args.metric, *(c for c in shown if c != args.metric and c in computed)]
    if args.json:
        payload = {
            "command": "sweep",
            "strategy": base,
            "axes": axes,
            "bars": bars.n_bars,
            "bars_per_year": per_year,
            "execution": model.to_dict(),
            "metric": args.metric,
            "configurations": len(configs),
            "skipped": skipped,
            "best": table.rows()[best],
            "leaderboard": [
                {"rank": r + 1, **table.rows()[i]} for r, i in enumerate(order[: args.top])
            ],
            "report": None if args.report is None else str(args.report),
        }
        out.write(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    else:
        out.write(
            f"sweep of {_describe(base)} on {_period(bars)}: {len(configs):,} configurations"
            + (f" ({skipped:,} refused)" if skipped else "")
            + f", ranked by {args.metric}\n"
        )
        out.write(f"{per_year:,.0f} bars a year; {_model_text(model)}\n\n")
        rows = [["rank", *names, *columns]]
        for r, i in enumerate(order[: args.top]):
            config, figures = table.configs[i], table.metrics[i]
            rows.append(
                [
                    str(r + 1),
                    *(str(config.get(n)) for n in names),
                    *(fmt(getattr(figures, c), FORMAT_OF.get(c, "ratio")) for c in columns),
                ]
            )
        out.write(_table(rows, [True] * len(rows[0])) + "\n\n")
        chosen = " ".join(f"{n}={table.configs[best].get(n)}" for n in names)
        value = fmt(getattr(table.metrics[best], args.metric), FORMAT_OF.get(args.metric, "ratio"))
        out.write(f"best: {chosen} ({LABEL_OF.get(args.metric, args.metric).lower()} {value})\n")
    if args.report is not None:
        best_result = backtest_strategy(
            bars, table.configs[best], model, bars_per_year=per_year, risk_free_rate=args.risk_free
        )
        details = _details(args, base, bars, per_year)
        details["grid"] = ", ".join(f"{n}: {_values(v)}" for n, v in axes.items())
        details["curves and trades"] = (
            f"the best by {args.metric}: {_describe(table.configs[best])}"
        )
        write_report(
            args.report,
            best_result,
            sweep=table,
            metric=args.metric,
            axes=(names[0], names[1]) if len(names) >= 2 else None,
            title=args.title or f"Sweep: {_describe(base)}",
            details=details,
        )
        if not args.json:
            out.write(f"\nreport: {args.report}\n")


def _values(values: Sequence[Any]) -> str:
    if len(values) <= 6:
        return ", ".join(str(v) for v in values)
    return f"{values[0]} to {values[-1]} ({len(values)} values)"


def _walk_forward(
    args: argparse.Namespace,
    bars: Bars,
    base: dict[str, Any],
    axes: dict[str, list[Any]],
    model: ExecutionModel,
    per_year: float,
    out: IO[str],
    err: IO[str],
    drawing: bool,
) -> None:
    from domain.backtest import ParameterGrid, walk_forward

    windows = max(0, -(-(bars.n_bars - args.train_bars) // args.test_bars))
    if drawing:
        # walk_forward reports no steps of its own: say what runs, and how long it took.
        err.write(f"walk-forward: {windows:,} windows of {args.test_bars:,} bars ...")
        err.flush()
    started = time.monotonic()
    result: WalkForwardResult = walk_forward(
        bars,
        ParameterGrid(base, axes),
        model,
        train_bars=args.train_bars,
        test_bars=args.test_bars,
        select_by=args.metric,
        anchored=args.anchored,
        bars_per_year=per_year,
        risk_free_rate=args.risk_free,
    )
    if drawing:
        err.write(f" done in {time.monotonic() - started:,.1f}s\n")
    names = list(axes)
    if args.json:
        payload = {
            "command": "walk-forward",
            "strategy": base,
            "axes": axes,
            "bars": bars.n_bars,
            "bars_per_year": per_year,
            "execution": model.to_dict(),
            "select_by": args.metric,
            "windows": [w.to_dict() for w in result.windows],
            "metrics": result.metrics.to_dict(),
            "report": None if args.report is None else str(args.report),
        }
        out.write(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    else:
        out.write(
            f"walk-forward of {_describe(base)} on {_period(bars)}: {len(result.windows)} windows, "
            f"train {args.train_bars:,} bars{' (anchored)' if args.anchored else ''}, "
            f"test {args.test_bars:,}, chosen by {args.metric}\n"
        )
        out.write(f"{per_year:,.0f} bars a year; {_model_text(model)}\n\n")
        kind = FORMAT_OF.get(args.metric, "ratio")
        rows = [["window", "test from", *names, f"in-sample {args.metric}", "oos return"]]
        for number, window in enumerate(result.windows, 1):
            rows.append(
                [
                    str(number),
                    _when(window.ts_test_start, window.train_stop),
                    *(str(window.config.get(n)) for n in names),
                    fmt(getattr(window.in_sample, args.metric), kind),
                    fmt(window.out_of_sample.total_return, "percent"),
                ]
            )
        out.write(_table(rows, [True, False, *([True] * (len(rows[0]) - 2))]) + "\n\n")
        out.write("out of sample, stitched:\n")
        out.write(_metrics_text({"portfolio": result.metrics}) + "\n")
    if args.report is not None:
        details = _details(args, base, bars, per_year)
        details["grid"] = ", ".join(f"{n}: {_values(v)}" for n, v in axes.items())
        details["walk-forward"] = (
            f"train {args.train_bars:,} bars{' (anchored)' if args.anchored else ''}, "
            f"test {args.test_bars:,}, chosen by {args.metric}"
        )
        write_report(
            args.report,
            walk_forward=result,
            metric=args.metric,
            title=args.title or f"Walk-forward: {_describe(base)}",
            details=details,
        )
        if not args.json:
            out.write(f"\nreport: {args.report}\n")


def execute(args: argparse.Namespace, out: IO[str], err: IO[str], *, drawing: bool) -> None:
    """Run the parsed command; input it cannot use raises :class:`UsageError`."""
    config = _strategy_config(args)
    axes: dict[str, list[Any]] = {}
    for name, values in getattr(args, "grid", None) or []:
        if name in axes:
            raise UsageError("--grid", f"{name} is given twice")
        if name in ("kind", "symbol"):
            raise UsageError("--grid", f"{name} cannot vary in a grid")
        if name in config:
            raise UsageError("--grid", f"{name} is also a --param")
        axes[name] = values
    source = _source(args, config)
    try:
        model = _model(args)
    except ValidationError as error:
        raise _strategy_error(error) from None
    if drawing:
        err.write(f"loading {_data_flag(args)[2:]} bars ...\n")
        err.flush()
    try:
        bars = load_bars(source)
    except ValidationError as error:
        raise _data_error(error, args) from None
    config = _complete(config, bars, args)
    per_year = args.bars_per_year or (
        TIMEFRAME_BARS_PER_YEAR[args.timeframe] if args.alpaca else bars_per_year(bars)
    )
    try:
        if args.command == "run":
            _run(args, bars, config, model, per_year, out)
        elif args.command == "sweep":
            _sweep(args, bars, config, axes, model, per_year, out, err, drawing)
        else:
            _walk_forward(args, bars, config, axes, model, per_year, out, err, drawing)
    except ValidationError as error:
        raise _strategy_error(error, list(axes)) from None


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    err = sys.stderr
    args = parser().parse_args(argv)
    drawing = bool(args.progress) if args.progress is not None else err.isatty()
    try:
        execute(args, out, err, drawing=drawing)
    except UsageError as error:
        print(f"error: {error.flag}: {error.reason}", file=err)
        return 2
    except ValidationError as error:
        print(f"error: {error.field}: {error.reason}", file=err)
        return 2
    except TradingError as error:
        # A source that failed (Alpaca refused or unreachable): not the input's fault.
        print(f"error: {_data_flag(args)}: {error}", file=err)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=err)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
