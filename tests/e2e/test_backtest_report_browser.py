"""The backtest report in a real browser: headless Chromium opens the written HTML file, and
the page it rendered (read back with ``--dump-dom``) must hold the equity, drawdown and
per-symbol curves with their points, the heat-map's cells with the sweep's values and the
best one outlined, and the metrics and trade tables; a screenshot must show the curves and
the colour scale painted. Artefacts are kept under ``tests/e2e/artifacts/``."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from activities.backtest_data import load_bars
from activities.backtest_report import (
    METRIC_ROWS,
    downsample,
    fmt,
    render_report,
    write_report,
)
from domain.backtest import (
    BacktestResult,
    Commission,
    CommissionKind,
    ExecutionModel,
    ParameterGrid,
    SweepResult,
    backtest,
    sweep,
)
from domain.errors import ValidationError
from tests.e2e.test_dashboard_browser import Dom, chromium, png_pixels

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WIDTH, HEIGHT = 1280, 2000
BARS = 200_000
MAX_POINTS = 1200
MAX_TRADES = 60
# The report's own colours: the equity curve, the drawdown, and the two ends of the scale.
EQUITY = (0x2F, 0x6F, 0xDE)
DRAWDOWN = (0xC4, 0x32, 0x0A)
BEST = (253, 231, 37)
WORST = (68, 1, 84)


@pytest.fixture(scope="module")
def made() -> tuple[BacktestResult, SweepResult]:
    bars = load_bars({"source": "synthetic", "symbols": ["SPY", "QQQ"], "bars": BARS, "seed": 9})
    # Long SPY and flat QQQ, then the other way round, every 2,000 bars: hundreds of trades.
    phase = (np.arange(BARS) // 2000) % 2
    targets = np.stack([phase, 1 - phase], axis=1).astype(np.int8)
    model = ExecutionModel(commission=Commission(CommissionKind.BPS, 1.0))
    result = backtest(bars, targets, model, bars_per_year=252 * 390)
    grid = ParameterGrid(
        {"kind": "sma_cross", "symbol": "SPY"},
        {"fast": [10, 20, 40, 80], "slow": [20, 40, 80, 160]},
    )
    table = sweep(bars.slice(0, 50_000), grid, model, bars_per_year=252 * 390)
    return result, table


@pytest.fixture(scope="module")
def report(made: tuple[BacktestResult, SweepResult]) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    result, table = made
    return write_report(
        ARTIFACTS / "backtest_report.html",
        result,
        sweep=table,
        metric="sharpe",
        title="Rotation SPY/QQQ",
        details={"strategy": "rotation every 2,000 bars"},
        max_points=MAX_POINTS,
        max_trades=MAX_TRADES,
    )


@pytest.fixture(scope="module")
def page(report: Path, tmp_path_factory: pytest.TempPathFactory) -> Dom:
    shown = chromium(tmp_path_factory.mktemp("chromium-dom"), "--dump-dom", report.as_uri())
    (ARTIFACTS / "backtest_report.dom.html").write_text(shown.stdout, encoding="utf-8")
    return Dom(shown.stdout)


def points(path: str) -> list[tuple[float, float]]:
    pairs = re.findall(r"(-?[0-9.]+),(-?[0-9.]+)", path)
    return [(float(x), float(y)) for x, y in pairs]


def test_the_file_is_self_contained_and_small(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"https?://|<script|<link|\ssrc=|@import|url\(", text)
    # 200,000 bars of two symbols and 60 of hundreds of trades, in well under a megabyte.
    assert report.stat().st_size < 400_000


def test_the_curves_are_drawn_with_their_points(
    page: Dom, made: tuple[BacktestResult, SweepResult]
) -> None:
    result, _ = made
    [equity] = page.find("path", within="equity-chart", cls="series")
    drawn = points(equity.attrs["d"])
    assert int(equity.attrs["data-points"]) == len(drawn)
    assert int(equity.attrs["data-bars"]) == BARS
    # Each bucket's lowest and highest bar, and the first and the last.
    assert MAX_POINTS // 2 < len(drawn) <= MAX_POINTS + 2
    xs = [x for x, _ in drawn]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 800  # across the plot, left to right
    ys = [y for _, y in drawn]
    assert max(ys) - min(ys) > 150  # the curve's range fills most of the plot's height
    # The lowest equity is the lowest point drawn (SVG y grows downwards).
    lowest = int(np.argmin(result.equity))
    x_lowest = 78 + lowest * (960 - 78 - 16) / (BARS - 1)
    assert any(abs(x - x_lowest) < 0.06 and y == max(ys) for x, y in drawn)

    [drawdown] = page.find("path", within="drawdown-chart", cls="series")
    assert len(points(drawdown.attrs["d"])) > MAX_POINTS // 2
    assert page.find("path", within="drawdown-chart", cls="area")

    sleeves = page.find("path", within="symbol-equity-chart", cls="series")
    assert [s.attrs["data-series"] for s in sleeves] == ["SPY", "QQQ"]
    assert all(len(points(s.attrs["d"])) > 100 for s in sleeves)


def test_the_heatmap_holds_the_sweeps_values_and_marks_the_best(
    page: Dom, made: tuple[BacktestResult, SweepResult]
) -> None:
    _, table = made
    cells = page.find("rect", within="heatmap", cls="cell")
    assert len(cells) == 16  # 4 x 4, of which fast >= slow is refused
    valid = [c for c in cells if "empty" not in c.attrs["class"].split()]
    assert len(valid) == len(table.configs) == 10
    by_cell = {(int(c.attrs["data-x"]), int(c.attrs["data-y"])): c for c in valid}
    for config, metrics in zip(table.configs, table.metrics, strict=True):
        cell = by_cell[(config["fast"], config["slow"])]
        assert float(cell.attrs["data-value"]) == metrics.sharpe
    assert len({c.attrs["fill"] for c in valid}) >= 8  # one colour scale, many shades
    [best] = page.find("rect", within="heatmap", cls="best")
    chosen = table.configs[table.best("sharpe")]
    assert (int(best.attrs["data-x"]), int(best.attrs["data-y"])) == (
        chosen["fast"],
        chosen["slow"],
    )
    labels = {"".join(t.text) for t in page.find("text", within="heatmap")}
    assert {"fast", "slow", "10", "80", "160"} <= labels
    assert page.find("rect", within="heatmap", cls="scale")
    leaders = [r for r in page.find("tr", within="leaderboard") if r.attrs.get("data-rank")]
    assert len(leaders) == 10 and leaders[0].attrs["data-rank"] == "1"


def test_the_tables_show_the_metrics_and_the_trades(
    page: Dom, made: tuple[BacktestResult, SweepResult]
) -> None:
    result, _ = made
    rows = [r for r in page.find("tr", within="metrics-table") if r.attrs.get("data-metric")]
    assert [r.attrs["data-metric"] for r in rows] == [name for name, _, _ in METRIC_ROWS]
    final = next(r for r in rows if r.attrs["data-metric"] == "final_equity")
    cells = [t.strip() for t in final.text if t.strip()]
    assert cells == [
        "Final equity",
        fmt(result.metrics.final_equity, "money"),
        fmt(result.symbol_metrics["SPY"].final_equity, "money"),
        fmt(result.symbol_metrics["QQQ"].final_equity, "money"),
    ]

    trades = result.trades
    assert len(trades) > MAX_TRADES
    listed = [r for r in page.find("tr", within="trades-table") if r.attrs.get("data-trade")]
    numbers = [int(r.attrs["data-trade"]) for r in listed]
    half = MAX_TRADES // 2
    assert numbers == [*range(1, half + 1), *range(len(trades) - half + 1, len(trades) + 1)]
    [gap] = page.find("tr", within="trades-table", cls="gap")
    assert f"{len(trades) - MAX_TRADES:,} more trades" in "".join(gap.text)
    first = [t.strip() for t in listed[0].text if t.strip()]
    assert first[1] == trades[0].symbol and first[4] == fmt(trades[0].entry_price, "price")
    assert "".join(page.by_id("trade-count").text).startswith(f"{len(trades):,} trades")


def colours(shot: Path) -> Counter[bytes]:
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    counts: Counter[bytes] = Counter()
    for row in rows:
        counts.update(row[x : x + 3] for x in range(0, len(row), 3))
    return counts


def near(counts: Counter[bytes], colour: tuple[int, int, int], within: int = 8) -> int:
    return sum(
        n
        for p, n in counts.items()
        if max(abs(a - b) for a, b in zip(p, colour, strict=True)) <= within
    )


def test_the_screenshots_show_the_curves_and_the_heatmap(
    report: Path, made: tuple[BacktestResult, SweepResult], tmp_path: Path
) -> None:
    shot = ARTIFACTS / "backtest_report.png"
    shot.unlink(missing_ok=True)
    chromium(
        tmp_path / "profile",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={shot}",
        report.as_uri(),
    )
    assert shot.is_file() and shot.stat().st_size > 20_000
    counts = colours(shot)
    assert len(counts) > 50, "the screenshot is (nearly) one colour"
    assert near(counts, EQUITY) > 3_000, "the equity curves were not painted"
    assert near(counts, DRAWDOWN) > 3_000, "the drawdown was not painted"

    # The sweep alone, so its heat-map is at the top of the window.
    _, table = made
    alone = write_report(ARTIFACTS / "backtest_sweep.html", sweep=table, title="Sweep")
    heat = ARTIFACTS / "backtest_sweep.png"
    heat.unlink(missing_ok=True)
    chromium(
        tmp_path / "profile-sweep",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={heat}",
        alone.as_uri(),
    )
    counts = colours(heat)
    # The best cell is the scale's bright end, the worst its dark end, both in the scale too.
    assert near(counts, BEST, 12) > 5_000, "the best cell was not painted"
    assert near(counts, WORST, 12) > 5_000, "the worst cell was not painted"
    assert near(counts, (0, 0, 0), 30) > 1_000, "the best cell's outline was not painted"


# -- what the page is drawn from (no browser needed) -----------------------------------------


def test_downsampling_keeps_every_buckets_lowest_and_highest_point() -> None:
    rng = np.random.default_rng(4)
    curve = 100.0 + np.cumsum(rng.normal(0.0, 1.0, 100_003))
    curve[54_321] = curve.min() - 50.0  # a one-bar crash between two drawn points
    kept = downsample(curve, 500)
    assert len(kept) <= 2 * 500 + 2 and kept[0] == 0 and kept[-1] == len(curve) - 1
    assert (np.diff(kept) > 0).all()
    assert 54_321 in kept
    width = -(-len(curve) // 500)
    for start in range(0, len(curve), width):
        bucket = curve[start : start + width]
        assert start + int(np.argmin(bucket)) in kept
        assert start + int(np.argmax(bucket)) in kept
    np.testing.assert_array_equal(downsample(curve[:900], 500), np.arange(900))


def section(page: str, start: str, end: str) -> str:
    [found] = re.findall(re.escape(start) + ".*?" + re.escape(end), page, re.DOTALL)
    return str(found)


def test_a_report_from_the_results_json_shows_the_same_figures(
    made: tuple[BacktestResult, SweepResult],
) -> None:
    result, table = made
    when = datetime(2026, 5, 1, tzinfo=UTC)
    direct = render_report(result, sweep=table, ts_generated=when, max_trades=MAX_TRADES)
    parts = render_report(
        result.to_dict(), sweep=table.to_dict(), ts_generated=when, max_trades=MAX_TRADES
    )
    for start, end in (
        ('<svg id="equity-chart"', "</svg>"),
        ('<svg id="drawdown-chart"', "</svg>"),
        ('<table id="metrics-table"', "</table>"),
        ('<svg id="heatmap"', "</svg>"),
        ('<table id="leaderboard"', "</table>"),
        ('<table id="trades-table"', "</table>"),
    ):
        assert section(parts, start, end) == section(direct, start, end)
    # The sleeves' curves are not in the JSON: that chart is the one thing missing.
    assert 'id="symbol-equity-chart"' in direct and 'id="symbol-equity-chart"' not in parts
    with pytest.raises(ValidationError) as refused:
        render_report({"metrics": {}})
    assert refused.value.field == "result.equity"
    with pytest.raises(ValidationError) as unknown:
        render_report(result, metric="alpha")
    assert unknown.value.field == "metric"
