"""A backtest's report: one self-contained HTML file.

Everything is drawn on the server as inline SVG (no script, no stylesheet or font from
elsewhere, no URL at all), so the file opens the same in any browser, offline, years later,
and can be attached to a ticket. It holds:

* the portfolio's equity curve and its drawdown, and each symbol's sleeve when there are
  several; a million-bar curve is cut into at most ``max_points / 2`` buckets keeping each
  bucket's lowest and highest point, so no drawdown disappears and the file stays small;
* the metrics, for the portfolio and each symbol;
* the trades, the first and last ``max_trades / 2`` of them with the count of the rest;
* for a sweep, a heat-map of a metric over two of its parameters (the best cell outlined;
  with more than two parameters varying, each cell shows the best over the others) and the
  leaderboard; for a walk-forward, its windows and their chosen parameters.

``write_report(path, result, sweep=..., walk_forward=...)`` takes the engine's results, or
the JSON shapes they serialise to (``BacktestResult.to_dict()``, ``SweepResult.to_dict()``
or its rows), so a report can also be written from what an orchestration returned.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domain.backtest_jobs import HIGHER_IS_BETTER
from domain.errors import ValidationError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from domain.backtest import BacktestResult, SweepResult, WalkForwardResult

    FloatArray = NDArray[np.float64]
    IndexArray = NDArray[np.intp]

# The metrics in the order the table shows them, with their labels and formats.
METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("starting_equity", "Starting equity", "money"),
    ("final_equity", "Final equity", "money"),
    ("total_return", "Total return", "percent"),
    ("annualised_return", "Annualised return", "percent"),
    ("volatility", "Volatility (annualised)", "percent"),
    ("sharpe", "Sharpe", "ratio"),
    ("sortino", "Sortino", "ratio"),
    ("max_drawdown", "Max drawdown", "percent"),
    ("max_drawdown_duration", "Max drawdown duration (bars)", "count"),
    ("longest_drawdown", "Longest drawdown (bars)", "count"),
    ("trades", "Closed trades", "count"),
    ("win_rate", "Win rate", "percent"),
    ("profit_factor", "Profit factor", "ratio"),
    ("exposure", "Exposure", "percent"),
    ("turnover", "Turnover (x mean equity)", "ratio"),
    ("fees", "Fees", "money"),
    ("bars", "Bars", "count"),
)
FORMAT_OF = {name: kind for name, _, kind in METRIC_ROWS}
LABEL_OF = {name: label for name, label, _ in METRIC_ROWS}
EQUITY_COLOUR = "#2f6fde"
DRAWDOWN_COLOUR = "#c4320a"
SYMBOL_COLOURS = ("#2f6fde", "#12805c", "#b54708", "#7a5af8", "#c4320a", "#0e9384", "#667085")
MAX_SYMBOL_CURVES = len(SYMBOL_COLOURS)
# Viridis-like anchors: dark purple (worst) to yellow (best), readable in grey scale too.
SCALE = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
EMPTY_CELL = "#e4e7ec"
LEADERBOARD_ROWS = 20

STYLE = """
:root { --bg: #f4f5f7; --card: #fff; --ink: #1d2330; --muted: #667085; --line: #d0d5dd;
  --grid: #eaecf0; --gain: #12805c; --loss: #c4320a; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { padding: 16px 24px; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 20px; margin: 0 0 8px; }
main { display: grid; gap: 16px; padding: 16px 24px 32px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 16px; min-width: 0; }
h2 { font-size: 14px; margin: 0 0 10px; text-transform: uppercase; letter-spacing: .04em;
  color: var(--muted); }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--grid); text-align: right;
  white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
th:first-child, td:first-child { text-align: left; }
td.text, th.text { text-align: left; }
tr.gap td { text-align: center; color: var(--muted); font-style: italic; }
tr.best td { font-weight: 600; }
.details th { text-align: left; }
.details td { text-align: left; white-space: normal; }
.scroll { overflow-x: auto; }
.note { color: var(--muted); font-size: 12px; margin: 6px 0 0; }
.gain { color: var(--gain); }
.loss { color: var(--loss); }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .grid { stroke: var(--grid); stroke-width: 1; }
svg.chart .axis { stroke: var(--line); stroke-width: 1; }
svg.chart text { fill: var(--muted); font-size: 11px; }
svg.chart text.cell-value { font-size: 10px; }
svg.chart text.axis-title { fill: var(--ink); font-size: 12px; font-weight: 600; }
svg.chart .series { fill: none; stroke-width: 1.5; stroke-linejoin: round; }
svg.chart .area { stroke: none; }
svg.chart .best { fill: none; stroke: #000; stroke-width: 3; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12px; margin-top: 4px; }
.legend span::before { content: ""; display: inline-block; width: 12px; height: 3px;
  margin-right: 6px; vertical-align: middle; background: var(--swatch); }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


# -- numbers as people read them -------------------------------------------------------------


def fmt(value: object, kind: str) -> str:
    """A figure for the page: NaN as a dash, infinity as the sign."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return str(value)
    number = float(value) + 0.0  # -0.0 shows as 0
    if math.isnan(number):
        return "—"
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if kind == "money":
        return f"{number:,.2f}"
    if kind == "percent":
        return f"{number * 100:,.2f}%"
    if kind == "count":
        return f"{round(number):,}"
    if kind == "price":
        return f"{number:,.4f}".rstrip("0").rstrip(".") if abs(number) < 1e6 else f"{number:,.0f}"
    return f"{number:,.3f}"


def _number(value: object) -> float:
    """A metric as a float: None (how JSON carries NaN and infinities) is NaN."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _tone(value: float) -> str:
    if math.isnan(value) or value == 0:
        return ""
    return "gain" if value > 0 else "loss"


# -- what a report is drawn from ---------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """One backtest, whichever form it came in."""

    symbols: tuple[str, ...]
    equity: FloatArray
    starting_equity: float
    ts: NDArray[np.datetime64] | None
    symbol_equity: FloatArray | None  # (bars, symbols)
    metrics: dict[str, float]
    symbol_metrics: dict[str, dict[str, float]]
    trade_count: int
    trades: list[tuple[int, dict[str, Any]]]  # (number, trade) of the rows shown
    execution: dict[str, Any] | None


@dataclass(slots=True)
class _Sweep:
    configs: list[dict[str, Any]]
    values: list[dict[str, float]]  # metrics of each configuration
    skipped: int = 0


@dataclass(slots=True)
class _Windows:
    select_by: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def _metric_values(metrics: Any) -> dict[str, float]:
    if isinstance(metrics, Mapping):
        return {str(k): _number(v) for k, v in metrics.items()}
    return {name: _number(getattr(metrics, name)) for name in FORMAT_OF if hasattr(metrics, name)}


def _shown(count: int, cap: int) -> list[int]:
    """The indices of the trades to list: all of them, or the first and last halves."""
    if count <= cap:
        return list(range(count))
    head = cap - cap // 2
    return [*range(head), *range(count - cap // 2, count)]


def _parse_times(texts: Sequence[str]) -> NDArray[np.datetime64]:
    import numpy as np

    values = []
    for text in texts:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        values.append(parsed)
    return np.array(values, dtype="datetime64[ns]")


def _run_of(result: Any, max_trades: int) -> _Run:
    import numpy as np

    from domain.backtest import BacktestResult

    if isinstance(result, BacktestResult):
        trades = result.trades
        shown = [(i + 1, trades[i].to_dict()) for i in _shown(len(trades), max_trades)]
        metrics = _metric_values(result.metrics)
        return _Run(
            symbols=result.symbols,
            equity=result.equity,
            starting_equity=result.model.starting_cash,
            ts=result.ts,
            symbol_equity=result.symbol_equity if len(result.symbols) > 1 else None,
            metrics=metrics,
            symbol_metrics={s: _metric_values(m) for s, m in result.symbol_metrics.items()},
            trade_count=len(trades),
            trades=shown,
            execution=result.model.to_dict(),
        )
    if not isinstance(result, Mapping):
        raise ValidationError("result", "must be a BacktestResult or its to_dict()")
    equity_list = result.get("equity")
    if not isinstance(equity_list, Sequence) or len(equity_list) == 0:
        raise ValidationError("result.equity", "must be the equity curve (to_dict(curve=True))")
    equity = np.asarray(equity_list, dtype=np.float64)
    metrics = _metric_values(result.get("metrics") or {})
    ts_list = result.get("ts")
    ts = None
    if isinstance(ts_list, Sequence) and len(ts_list) == len(equity):
        try:
            ts = _parse_times([str(t) for t in ts_list])
        except ValueError:
            raise ValidationError("result.ts", "must be ISO 8601 times") from None
    trades_list = list(result.get("trades") or [])
    starting = metrics.get("starting_equity", math.nan)
    execution = result.get("execution")
    if math.isnan(starting) and isinstance(execution, Mapping):
        starting = _number(execution.get("starting_cash"))
    return _Run(
        symbols=tuple(str(s) for s in result.get("symbols") or ()),
        equity=equity,
        starting_equity=starting if math.isfinite(starting) else float(equity[0]),
        ts=ts,
        symbol_equity=None,
        metrics=metrics,
        symbol_metrics={
            str(s): _metric_values(m) for s, m in (result.get("symbol_metrics") or {}).items()
        },
        trade_count=len(trades_list),
        trades=[(i + 1, dict(trades_list[i])) for i in _shown(len(trades_list), max_trades)],
        execution=dict(execution) if isinstance(execution, Mapping) else None,
    )


def _sweep_of(sweep: Any) -> _Sweep:
    from domain.backtest import SweepResult

    if isinstance(sweep, SweepResult):
        computed = sweep.rows()  # only the figures the sweep computed
        return _Sweep(
            [row["config"] for row in computed],
            [_metric_values(row["metrics"]) for row in computed],
            sweep.skipped,
        )
    skipped = 0
    rows: Any = sweep
    if isinstance(sweep, Mapping):
        rows = sweep.get("results", sweep.get("rows"))
        skipped = int(sweep.get("skipped") or 0)
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence) or not rows:
        raise ValidationError("sweep", "must be a SweepResult or a list of {config, metrics}")
    configs, values = [], []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("config"), Mapping):
            raise ValidationError(f"sweep[{index}]", "must have a config and its metrics")
        configs.append(dict(row["config"]))
        values.append(_metric_values(row.get("metrics") or {}))
    return _Sweep(configs, values, skipped)


def _windows_of(result: WalkForwardResult) -> _Windows:
    windows = _Windows(result.select_by)
    for window in result.windows:
        windows.rows.append(
            {
                "train": (window.train_start, window.train_stop),
                "test": (window.train_stop, window.test_stop),
                "ts": window.ts_test_start,
                "config": window.config,
                "in_sample": _metric_values(window.in_sample),
                "out_of_sample": _metric_values(window.out_of_sample),
            }
        )
    return windows


# -- curves ----------------------------------------------------------------------------------


def downsample(values: FloatArray, buckets: int) -> IndexArray:
    """Indices of the points to draw: every point when there are at most ``2 * buckets``,
    else the lowest and highest of each of ``buckets`` equal runs (and the first and last
    point), in order. A line through them has the curve's full range in every bucket."""
    import numpy as np

    n = len(values)
    if n <= 2 * buckets:
        return np.arange(n, dtype=np.intp)
    width = -(-n // buckets)
    padded = np.empty(width * buckets)
    padded[:n] = values
    padded[n:] = values[-1]  # repeats of the last point change no bucket's extremes
    table = padded.reshape(buckets, width)
    base = np.arange(buckets) * width
    lows = base + np.argmin(table, axis=1)
    highs = base + np.argmax(table, axis=1)
    picked = np.concatenate(([0, n - 1], lows, highs))
    return np.unique(np.minimum(picked, n - 1)).astype(np.intp)


def drawdown(equity: FloatArray, start: float) -> FloatArray:
    """Fraction below the running peak (the peak starts at the starting equity), <= 0."""
    import numpy as np

    peak = np.maximum.accumulate(np.maximum(equity, start))
    with np.errstate(divide="ignore", invalid="ignore"):
        result: FloatArray = np.where(peak > 0, equity / peak - 1.0, 0.0)
    return result


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12) + 0.0)
        value += step
    return ticks


@dataclass(frozen=True, slots=True)
class _Plot:
    width: int = 960
    height: int = 260
    left: int = 78
    right: int = 16
    top: int = 12
    bottom: int = 30

    @property
    def inner_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> int:
        return self.height - self.top - self.bottom


@dataclass(frozen=True, slots=True)
class _Series:
    name: str
    colour: str
    values: FloatArray  # every bar's value
    points: IndexArray  # the bars drawn


def _time_label(ns: int, span_ns: int) -> str:
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    if span_ns >= 3 * 86_400 * 10**9:
        return when.strftime("%Y-%m-%d")
    return when.strftime("%m-%d %H:%M")


def _x_ticks(n: int, ts: NDArray[np.datetime64] | None, plot: _Plot) -> str:
    """Six labels along the bottom: the time of the bar there, else its number."""
    import numpy as np

    parts = []
    span = 0
    if ts is not None and n > 1:
        span = int(ts[-1].astype("datetime64[ns]").astype(np.int64)) - int(
            ts[0].astype("datetime64[ns]").astype(np.int64)
        )
    for k in range(6):
        bar = round(k * (n - 1) / 5) if n > 1 else 0
        x = plot.left + (bar / max(n - 1, 1)) * plot.inner_width
        label = (
            _time_label(int(ts[bar].astype("datetime64[ns]").astype(np.int64)), span)
            if ts is not None
            else f"bar {bar:,}"
        )
        anchor = "start" if k == 0 else "end" if k == 5 else "middle"
        parts.append(
            f'<text x="{x:.1f}" y="{plot.height - 10}" text-anchor="{anchor}">{_e(label)}</text>'
        )
    return "".join(parts)


def _line_chart(
    ident: str,
    title: str,
    series: Sequence[_Series],
    n: int,
    ts: NDArray[np.datetime64] | None,
    y_kind: str,
    *,
    area: bool = False,
) -> str:
    """An SVG line chart of ``series`` over ``n`` bars (x is the bar; its labels are times)."""
    import numpy as np

    plot = _Plot()
    drawn = [s.values[s.points] for s in series]
    finite = [v[np.isfinite(v)] for v in drawn]
    low = min((float(v.min()) for v in finite if len(v)), default=0.0)
    high = max((float(v.max()) for v in finite if len(v)), default=1.0)
    if area:
        high = max(high, 0.0)
    if high - low < 1e-12 * max(abs(high), 1.0):
        low, high = low - max(abs(low) * 0.01, 1e-9), high + max(abs(high) * 0.01, 1e-9)
    pad = (high - low) * 0.04
    low, high = (low if area and low == 0.0 else low - pad), high + (0.0 if area else pad)

    def y_of(value: FloatArray) -> FloatArray:
        scaled: FloatArray = plot.top + (high - value) / (high - low) * plot.inner_height
        return scaled

    parts = [
        f'<svg id="{ident}" class="chart" viewBox="0 0 {plot.width} {plot.height}" '
        f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
    ]
    for tick in nice_ticks(low, high):
        y = float(y_of(np.asarray(tick)))
        parts.append(
            f'<line class="grid" x1="{plot.left}" x2="{plot.width - plot.right}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{plot.left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_e(fmt(tick, y_kind))}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{plot.left}" x2="{plot.left}" y1="{plot.top}" '
        f'y2="{plot.height - plot.bottom}"/>'
        f'<line class="axis" x1="{plot.left}" x2="{plot.width - plot.right}" '
        f'y1="{plot.height - plot.bottom}" y2="{plot.height - plot.bottom}"/>'
    )
    parts.append(_x_ticks(n, ts, plot))
    scale_x = plot.inner_width / max(n - 1, 1)
    for s, values in zip(series, drawn, strict=True):
        keep = np.isfinite(values)
        xs = plot.left + s.points[keep] * scale_x
        ys = y_of(values[keep])
        coordinates = " ".join(
            f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True)
        )
        if not coordinates:
            continue
        if area:
            base = float(y_of(np.asarray(0.0)))
            parts.append(
                f'<path class="area" fill="{s.colour}" fill-opacity="0.25" '
                f'd="M{xs[0]:.1f},{base:.1f} L{coordinates} L{xs[-1]:.1f},{base:.1f} Z"/>'
            )
        parts.append(
            f'<path class="series" data-series="{_e(s.name)}" data-points="{len(xs)}" '
            f'data-bars="{n}" stroke="{s.colour}" d="M{coordinates.replace(" ", " L", 1)}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


# -- sections --------------------------------------------------------------------------------


def _details(details: Mapping[str, Any] | None, run: _Run | None) -> str:
    rows = dict(details or {})
    if run is not None and run.execution is not None and "execution" not in rows:
        rows["execution"] = _execution_text(run.execution)
    if run is not None:
        rows.setdefault("symbols", ", ".join(run.symbols))
        if run.ts is not None and len(run.ts):
            rows.setdefault(
                "period",
                f"{_iso_ns(run.ts[0])} to {_iso_ns(run.ts[-1])} ({len(run.equity):,} bars)",
            )
        else:
            rows.setdefault("bars", f"{len(run.equity):,}")
    if not rows:
        return ""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows.items())
    return f'<table class="details" id="details">{body}</table>'


def _iso_ns(value: np.datetime64) -> str:
    import numpy as np

    ns = int(value.astype("datetime64[ns]").astype(np.int64))
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return when.isoformat().replace("+00:00", "Z")


def _execution_text(execution: Mapping[str, Any]) -> str:
    parts = [f"fill {execution.get('fill', '?')}"]
    for name in ("commission", "slippage"):
        part = execution.get(name)
        if isinstance(part, Mapping) and _number(part.get("amount")) > 0:
            parts.append(f"{name} {fmt(part.get('amount'), 'price')} {part.get('kind')}")
    sizing = execution.get("sizing")
    if isinstance(sizing, Mapping):
        kind = sizing.get("kind")
        parts.append(
            f"sizing {kind}"
            + (f" x {fmt(sizing.get('quantity'), 'price')}" if kind == "fixed" else "")
        )
    cash = execution.get("starting_cash")
    if cash is not None:
        parts.append(f"starting cash {fmt(cash, 'money')}")
    return ", ".join(parts)


def _curves(run: _Run, max_points: int) -> str:
    buckets = max(max_points // 2, 2)
    n = len(run.equity)
    equity = _Series("portfolio", EQUITY_COLOUR, run.equity, downsample(run.equity, buckets))
    dd = drawdown(run.equity, run.starting_equity)
    lowest = int(dd.argmin()) if n else 0
    parts = [
        '<section id="equity"><h2>Equity</h2>',
        _line_chart("equity-chart", "Portfolio equity", [equity], n, run.ts, "money"),
        f'<p class="note">{n:,} bars; {len(equity.points):,} points drawn (each bucket\'s '
        "lowest and highest).</p></section>",
        '<section id="drawdown"><h2>Drawdown</h2>',
        _line_chart(
            "drawdown-chart",
            "Portfolio drawdown",
            [_Series("drawdown", DRAWDOWN_COLOUR, dd, downsample(dd, buckets))],
            n,
            run.ts,
            "percent",
            area=True,
        ),
        f'<p class="note">Deepest: {_e(fmt(float(dd[lowest]), "percent"))} at bar {lowest:,}'
        + (f" ({_e(_iso_ns(run.ts[lowest]))})" if run.ts is not None else "")
        + ".</p></section>",
    ]
    if run.symbol_equity is not None and run.symbol_equity.shape[1] > 1:
        symbols = run.symbols[:MAX_SYMBOL_CURVES]
        per_symbol = max(buckets // 2, 2)
        series = [
            _Series(
                symbol,
                SYMBOL_COLOURS[i],
                run.symbol_equity[:, i],
                downsample(run.symbol_equity[:, i], per_symbol),
            )
            for i, symbol in enumerate(symbols)
        ]
        legend = "".join(f'<span style="--swatch: {s.colour}">{_e(s.name)}</span>' for s in series)
        more = len(run.symbols) - len(symbols)
        parts += [
            '<section id="symbols"><h2>Equity by symbol (each sleeve)</h2>',
            _line_chart(
                "symbol-equity-chart", "Equity of each symbol's sleeve", series, n, run.ts, "money"
            ),
            f'<div class="legend">{legend}</div>',
            f'<p class="note">{more} more symbols not drawn.</p>' if more > 0 else "",
            "</section>",
        ]
    return "".join(parts)


def _metrics_table(run: _Run) -> str:
    columns = ["Portfolio", *run.symbol_metrics] if len(run.symbol_metrics) > 1 else ["Portfolio"]
    sources = [run.metrics, *(run.symbol_metrics[s] for s in columns[1:])]
    head = "".join(f"<th>{_e(c)}</th>" for c in ["Metric", *columns])
    rows = []
    for name, label, kind in METRIC_ROWS:
        if not any(name in m for m in sources):
            continue
        cells = []
        for metrics in sources:
            value = metrics.get(name, math.nan)
            tone = _tone(value) if name in ("total_return", "annualised_return") else ""
            cells.append(f'<td class="{tone}">{_e(fmt(value, kind))}</td>')
        rows.append(f'<tr data-metric="{name}"><td>{_e(label)}</td>{"".join(cells)}</tr>')
    return (
        '<section id="metrics"><h2>Metrics</h2><div class="scroll"><table id="metrics-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _trade_time(trade: Mapping[str, Any], key: str, bar_key: str) -> str:
    value = trade.get(key)
    if isinstance(value, str) and value:
        return value.replace("+00:00", "Z")
    return f"bar {trade.get(bar_key, '?')}"


def _trades_table(run: _Run) -> str:
    heads = [
        "#",
        "Symbol",
        "Side",
        "Entry",
        "Entry price",
        "Exit",
        "Exit price",
        "Quantity",
        "P&L",
        "Fees",
        "Return",
        "Status",
    ]
    text = ("Symbol", "Side", "Entry", "Exit", "Status")
    head = "".join(f'<th class="{"text" if h in text else ""}">{_e(h)}</th>' for h in heads)
    rows = []
    previous = 0
    for number, trade in run.trades:
        if number != previous + 1:
            rows.append(
                f'<tr class="gap"><td colspan="{len(heads)}">… {number - previous - 1:,} more '
                "trades …</td></tr>"
            )
        previous = number
        pnl = _number(trade.get("pnl"))
        entry, quantity = _number(trade.get("entry_price")), _number(trade.get("quantity"))
        value = entry * quantity
        ret = pnl / value if value else math.nan
        side = "long" if trade.get("direction", 1) == 1 else "short"
        status = "closed" if trade.get("closed", True) else "open"
        rows.append(
            f'<tr data-trade="{number}"><td>{number:,}</td>'
            f'<td class="text">{_e(trade.get("symbol", ""))}</td><td class="text">{side}</td>'
            f'<td class="text">{_e(_trade_time(trade, "ts_entry", "entry_bar"))}</td>'
            f"<td>{_e(fmt(entry, 'price'))}</td>"
            f'<td class="text">{_e(_trade_time(trade, "ts_exit", "exit_bar"))}</td>'
            f"<td>{_e(fmt(_number(trade.get('exit_price')), 'price'))}</td>"
            f"<td>{_e(fmt(quantity, 'price'))}</td>"
            f'<td class="{_tone(pnl)}">{_e(fmt(pnl, "money"))}</td>'
            f"<td>{_e(fmt(_number(trade.get('fees')), 'money'))}</td>"
            f'<td class="{_tone(ret)}">{_e(fmt(ret, "percent"))}</td>'
            f'<td class="text">{status}</td></tr>'
        )
    if previous < run.trade_count:
        rows.append(
            f'<tr class="gap"><td colspan="{len(heads)}">… {run.trade_count - previous:,} more '
            "trades …</td></tr>"
        )
    shown = len(run.trades)
    note = (
        f"{run.trade_count:,} trades (round trips), all shown."
        if shown == run.trade_count
        else f"{run.trade_count:,} trades (round trips); the first {shown - shown // 2:,} "
        f"and the last {shown // 2:,} shown."
    )
    if run.trade_count == 0:
        return '<section id="trades"><h2>Trades</h2><p class="note">No trades.</p></section>'
    return (
        f'<section id="trades"><h2>Trades</h2><p class="note" id="trade-count" '
        f'data-count="{run.trade_count}">{_e(note)}</p>'
        '<div class="scroll"><table id="trades-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _varying(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Parameters whose value differs between configurations, in their first order."""
    names: list[str] = []
    for config in configs:
        for name in config:
            if name not in names:
                names.append(name)
    return [
        name
        for name in names
        if all(_scalar(c.get(name)) for c in configs)
        and len({repr(c.get(name)) for c in configs}) > 1
    ]


def _ordered(values: Iterable[Any]) -> list[Any]:
    unique: list[Any] = []
    for value in values:
        if value not in unique:
            unique.append(value)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in unique):
        return sorted(unique)
    return unique


def ranked(values: Sequence[Mapping[str, float]], metric: str) -> list[int]:
    """Indices best first by ``metric`` (NaN last, ties in the given order): the engine's
    ``SweepResult.ranked`` rule, for rows that came as JSON."""
    higher = HIGHER_IS_BETTER[metric]

    def key(i: int) -> tuple[bool, float, int]:
        value = values[i].get(metric, math.nan)
        if math.isnan(value):
            return (True, 0.0, i)
        return (False, -value if higher else value, i)

    return sorted(range(len(values)), key=key)


def _colour(t: float) -> str:
    t = min(max(t, 0.0), 1.0) * (len(SCALE) - 1)
    i = min(int(t), len(SCALE) - 2)
    f = t - i
    a, b = SCALE[i], SCALE[i + 1]
    r, g, bl = (round(a[c] + (b[c] - a[c]) * f) for c in range(3))
    return f"#{r:02x}{g:02x}{bl:02x}"


def _label(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _heatmap(sweep: _Sweep, metric: str, axes: tuple[str, str] | None) -> str:
    varying = _varying(sweep.configs)
    if axes is not None:
        for name in axes:
            if name not in varying:
                raise ValidationError("axes", f"{name!r} is not a parameter the sweep varies")
        x_name, y_name = axes
    elif not varying:
        return '<p class="note">The sweep varies no parameter: no heat-map.</p>'
    else:
        x_name = varying[0]
        y_name = varying[1] if len(varying) > 1 else ""
    others = [v for v in varying if v not in (x_name, y_name)]
    xs = _ordered(c.get(x_name) for c in sweep.configs)
    ys = _ordered(c.get(y_name) for c in sweep.configs) if y_name else [None]
    order = ranked(sweep.values, metric)
    rank_of = {index: place for place, index in enumerate(order)}
    # Each cell: the configuration ranked best among those on it (one, unless others vary).
    cell: dict[tuple[int, int], int] = {}
    for index, config in enumerate(sweep.configs):
        key = (xs.index(config.get(x_name)), ys.index(config.get(y_name)) if y_name else 0)
        if key not in cell or rank_of[index] < rank_of[cell[key]]:
            cell[key] = index
    best = order[0]
    finite = [v for i in cell.values() if math.isfinite(v := sweep.values[i].get(metric, math.nan))]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    higher = HIGHER_IS_BETTER[metric]

    def position(value: float) -> float:
        if math.isnan(value):
            return math.nan
        if math.isinf(value):
            return 1.0 if (value > 0) == higher else 0.0
        t = 0.5 if high == low else (value - low) / (high - low)
        return t if higher else 1.0 - t

    left, top, right = 70, 14, 20
    cell_w = max(min((960 - left - right) // max(len(xs), 1), 90), 8)
    cell_h = max(min(320 // max(len(ys), 1), 34), 8)
    grid_w, grid_h = cell_w * len(xs), cell_h * len(ys)
    legend_y = top + grid_h + 48
    width = max(left + grid_w + right, 420)
    height = legend_y + 44
    label_cells = cell_w >= 34 and cell_h >= 14
    parts = [
        f'<svg id="heatmap" class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(metric)} by {_e(x_name)} and {_e(y_name)}" data-metric="{_e(metric)}" '
        f'data-x="{_e(x_name)}" data-y="{_e(y_name)}"><title>{_e(LABEL_OF.get(metric, metric))}'
        f" by {_e(x_name)}{' and ' + _e(y_name) if y_name else ''}</title>"
    ]
    for j, y_value in enumerate(ys):
        for i, x_value in enumerate(xs):
            x, y = left + i * cell_w, top + j * cell_h
            chosen = cell.get((i, j))
            value = math.nan if chosen is None else sweep.values[chosen].get(metric, math.nan)
            t = position(value)
            colour = EMPTY_CELL if math.isnan(t) else _colour(t)
            kind = "cell" if chosen is not None else "cell empty"
            shown = "n/a" if chosen is None else fmt(value, FORMAT_OF.get(metric, "ratio"))
            tip = f"{x_name}={_label(x_value)}" + (
                f", {y_name}={_label(y_value)}" if y_name else ""
            )
            parts.append(
                f'<rect class="{kind}" x="{x}" y="{y}" width="{cell_w - 1}" height="{cell_h - 1}" '
                f'fill="{colour}" data-x="{_e(_label(x_value))}" data-y="{_e(_label(y_value))}"'
                + ("" if chosen is None or math.isnan(value) else f' data-value="{value!r}"')
                + f"><title>{_e(tip)}: {_e(shown)}</title></rect>"
            )
            if label_cells and chosen is not None:
                ink = "#ffffff" if (math.isnan(t) or t < 0.55) else "#1d2330"
                parts.append(
                    f'<text class="cell-value" x="{x + cell_w / 2:.1f}" '
                    f'y="{y + cell_h / 2 + 3:.1f}" '
                    f'text-anchor="middle" style="fill: {ink}">{_e(shown)}</text>'
                )
    best_x = xs.index(sweep.configs[best].get(x_name))
    best_y = ys.index(sweep.configs[best].get(y_name)) if y_name else 0
    best_shown = fmt(sweep.values[best].get(metric, math.nan), FORMAT_OF.get(metric, "ratio"))
    parts.append(
        f'<rect class="best" x="{left + best_x * cell_w - 1}" y="{top + best_y * cell_h - 1}" '
        f'width="{cell_w + 1}" height="{cell_h + 1}" data-x="{_e(_label(xs[best_x]))}" '
        f'data-y="{_e(_label(ys[best_y]))}"><title>best: {_e(best_shown)}</title></rect>'
    )
    step_x = max(1, -(-len(xs) * 40 // max(grid_w, 1)))
    for i, x_value in enumerate(xs):
        if i % step_x == 0:
            parts.append(
                f'<text x="{left + i * cell_w + cell_w / 2:.1f}" y="{top + grid_h + 14}" '
                f'text-anchor="middle">{_e(_label(x_value))}</text>'
            )
    step_y = max(1, -(-len(ys) * 14 // max(grid_h, 1)))
    for j, y_value in enumerate(ys):
        if y_name and j % step_y == 0:
            parts.append(
                f'<text x="{left - 6}" y="{top + j * cell_h + cell_h / 2 + 4:.1f}" '
                f'text-anchor="end">{_e(_label(y_value))}</text>'
            )
    parts.append(
        f'<text class="axis-title" x="{left + grid_w / 2:.1f}" y="{top + grid_h + 32}" '
        f'text-anchor="middle">{_e(x_name)}</text>'
    )
    if y_name:
        parts.append(
            f'<text class="axis-title" x="14" y="{top + grid_h / 2:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 14 {top + grid_h / 2:.1f})">{_e(y_name)}</text>'
        )
    # The colour scale, worse to better, with the values at its ends.
    steps = 40
    legend_w = 300
    worst, best_value = (low, high) if higher else (high, low)
    for k in range(steps):
        parts.append(
            f'<rect class="scale" x="{left + k * legend_w / steps:.1f}" y="{legend_y}" '
            f'width="{legend_w / steps + 0.5:.1f}" height="12" fill="{_colour(k / (steps - 1))}"/>'
        )
    kind = FORMAT_OF.get(metric, "ratio")
    parts.append(
        f'<text x="{left}" y="{legend_y + 26}">{_e(fmt(worst, kind))} (worse)</text>'
        f'<text x="{left + legend_w}" y="{legend_y + 26}" text-anchor="end">'
        f"{_e(fmt(best_value, kind))} (better)</text>"
        f'<text x="{left + legend_w + 12}" y="{legend_y + 10}">'
        f"{_e(LABEL_OF.get(metric, metric))}</text></svg>"
    )
    note = [f"Colour: {LABEL_OF.get(metric, metric)}; the outlined cell is the best."]
    if others:
        note.append(f"Each cell shows the best over {', '.join(others)}.")
    if any(k not in cell for k in ((i, j) for i in range(len(xs)) for j in range(len(ys)))):
        note.append("Grey cells: combinations the strategy refuses.")
    return "".join(parts) + f'<p class="note">{_e(" ".join(note))}</p>'


def _leaderboard(sweep: _Sweep, metric: str) -> str:
    order = ranked(sweep.values, metric)
    varying = _varying(sweep.configs) or sorted({k for c in sweep.configs for k in c})
    columns = [
        metric,
        *(
            m
            for m in ("total_return", "sharpe", "max_drawdown", "trades", "final_equity")
            if m != metric and any(m in values for values in sweep.values)  # computed
        ),
    ]
    head = "".join(
        [
            "<th>Rank</th>",
            *(f'<th class="text">{_e(v)}</th>' for v in varying),
            *(f"<th>{_e(LABEL_OF.get(c, c))}</th>" for c in columns),
        ]
    )
    rows = []
    for place, index in enumerate(order[:LEADERBOARD_ROWS]):
        config, values = sweep.configs[index], sweep.values[index]
        cells = "".join(f'<td class="text">{_e(_label(config.get(v)))}</td>' for v in varying)
        figures = "".join(
            f"<td>{_e(fmt(values.get(c, math.nan), FORMAT_OF.get(c, 'ratio')))}</td>"
            for c in columns
        )
        best = ' class="best"' if place == 0 else ""
        rows.append(f'<tr{best} data-rank="{place + 1}"><td>{place + 1}</td>{cells}{figures}</tr>')
    more = len(order) - min(len(order), LEADERBOARD_ROWS)
    note = f"{len(order):,} configurations" + (
        f", {sweep.skipped:,} refused" if sweep.skipped else ""
    )
    note += f"; the top {LEADERBOARD_ROWS} shown." if more else "."
    return (
        f'<div class="scroll"><table id="leaderboard"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div><p class="note">{_e(note)}</p>'
    )


def _windows_table(windows: _Windows) -> str:
    metric = windows.select_by
    head = "".join(
        f'<th class="{c}">{_e(h)}</th>'
        for h, c in (
            ("#", ""),
            ("Train bars", "text"),
            ("Test bars", "text"),
            ("Test from", "text"),
            ("Chosen", "text"),
            (f"In-sample {LABEL_OF.get(metric, metric)}", ""),
            ("Out-of-sample return", ""),
            (f"Out-of-sample {LABEL_OF.get(metric, metric)}", ""),
        )
    )
    configs = [w["config"] for w in windows.rows]
    varying = _varying(configs) if len(configs) > 1 else []
    rows = []
    for number, window in enumerate(windows.rows, 1):
        config = window["config"]
        chosen = ", ".join(
            f"{k}={_label(config.get(k))}"
            for k in (varying or [k for k in config if k not in ("kind", "symbol")])
        )
        ts = window["ts"]
        kind = FORMAT_OF.get(metric, "ratio")
        oos = window["out_of_sample"].get("total_return", math.nan)
        rows.append(
            f"<tr><td>{number}</td>"
            f'<td class="text">{window["train"][0]:,} to {window["train"][1]:,}</td>'
            f'<td class="text">{window["test"][0]:,} to {window["test"][1]:,}</td>'
            f'<td class="text">{_e(ts.isoformat().replace("+00:00", "Z") if ts else "—")}</td>'
            f'<td class="text">{_e(chosen)}</td>'
            f"<td>{_e(fmt(window['in_sample'].get(metric, math.nan), kind))}</td>"
            f'<td class="{_tone(oos)}">{_e(fmt(oos, "percent"))}</td>'
            f"<td>{_e(fmt(window['out_of_sample'].get(metric, math.nan), kind))}</td></tr>"
        )
    return (
        '<section id="walk-forward"><h2>Walk-forward windows</h2><div class="scroll">'
        f'<table id="windows"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        '</table></div><p class="note">The equity above is the out-of-sample windows '
        "stitched into one run.</p></section>"
    )


# -- the page --------------------------------------------------------------------------------


def render_report(
    result: BacktestResult | Mapping[str, Any] | None = None,
    *,
    sweep: SweepResult | Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    metric: str = "sharpe",
    axes: tuple[str, str] | None = None,
    walk_forward: WalkForwardResult | None = None,
    title: str = "Backtest report",
    details: Mapping[str, Any] | None = None,
    max_points: int = 1200,
    max_trades: int = 200,
    ts_generated: datetime | None = None,
) -> str:
    """The report's HTML (see the module docstring); :func:`write_report` saves it."""
    if metric not in HIGHER_IS_BETTER:
        raise ValidationError("metric", f"must be one of {', '.join(HIGHER_IS_BETTER)}")
    if not isinstance(max_points, int) or max_points < 4:
        raise ValidationError("max_points", "must be a whole number of at least 4")
    if not isinstance(max_trades, int) or max_trades < 2:
        raise ValidationError("max_trades", "must be a whole number of at least 2")
    if result is None and walk_forward is not None:
        result = walk_forward.result
    if result is None and sweep is None:
        raise ValidationError("result", "a report needs a result, a sweep or a walk-forward")
    run = None if result is None else _run_of(result, max_trades)
    when = (ts_generated or datetime.now(UTC)).astimezone(UTC)
    # The figures first, then the long tables: the trades come last.
    sections = []
    if run is not None:
        sections += [_curves(run, max_points), _metrics_table(run)]
    if sweep is not None:
        table = _sweep_of(sweep)
        sections.append(
            f'<section id="sweep"><h2>Sweep: {_e(LABEL_OF.get(metric, metric))}</h2>'
            f"{_heatmap(table, metric, axes)}{_leaderboard(table, metric)}</section>"
        )
    if walk_forward is not None:
        sections.append(_windows_table(_windows_of(walk_forward)))
    if run is not None:
        sections.append(_trades_table(run))
    generated = when.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>{_details(details, run)}"
        f'<p class="note">Generated {generated}.</p></header>'
        f"<main>{''.join(sections)}</main></body></html>\n"
    )


def write_report(
    path: str | Path,
    result: BacktestResult | Mapping[str, Any] | None = None,
    *,
    sweep: SweepResult | Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    metric: str = "sharpe",
    axes: tuple[str, str] | None = None,
    walk_forward: WalkForwardResult | None = None,
    title: str = "Backtest report",
    details: Mapping[str, Any] | None = None,
    max_points: int = 1200,
    max_trades: int = 200,
) -> Path:
    """Write the report to ``path`` (its folder is created) and return the path."""
    page = render_report(
        result,
        sweep=sweep,
        metric=metric,
        axes=axes,
        walk_forward=walk_forward,
        title=title,
        details=details,
        max_points=max_points,
        max_trades=max_trades,
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, so a reader never sees half a report.
    partial = target.with_name(target.name + ".partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(target)
    return target
