"""``python -m activities.backtest_cli``: one backtest, a sweep and a walk-forward on a CSV
file, the synthetic market and Alpaca (a local server speaking its protocol), their figures
the engine's own, the report written, a progress line only when asked for, and input it
cannot use refused with exit 2 and the flag named."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from activities.backtest_cli import grid_axis, main
from activities.backtest_data import load_bars
from activities.backtest_report import fmt
from devhost.server import BackgroundServer
from domain.backtest import (
    Commission,
    CommissionKind,
    ExecutionModel,
    FillTiming,
    ParameterGrid,
    Slippage,
    SlippageKind,
    backtest_strategy,
    sweep,
)
from tests.alpaca.data_server import FakeAlpacaData, make_bars

ROOT = Path(__file__).resolve().parents[2]


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "activities.backtest_cli", *argv],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
        env=env,
    )
    # Decoded by hand: text mode would turn the progress line's carriage returns into
    # newlines.
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture(scope="module")
def spy_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 daily bars of SPY: a trend with two cycles on it, so crossovers trade."""
    path = tmp_path_factory.mktemp("data") / "spy.csv"
    lines = ["date,open,high,low,close,volume"]
    close = 100.0
    for day in range(300):
        open_ = close
        close = 100.0 + 0.05 * day + 8.0 * math.sin(day / 8.0) + 2.0 * math.sin(day / 3.1)
        high, low = max(open_, close) + 0.5, min(open_, close) - 0.5
        when = datetime.fromordinal(datetime(2025, 1, 1).toordinal() + day).date()
        lines.append(
            f"{when.isoformat()},{open_:.4f},{high:.4f},{low:.4f},{close:.4f},{1000 + day}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def metric_line(out: str, label: str) -> str:
    # The label, then the column's padding (two spaces at least), then the figure.
    [figure] = re.findall(rf"^{re.escape(label)}  +(\S+)$", out, re.MULTILINE)
    return str(figure)


def test_one_backtest_of_a_csv_prints_the_engines_figures_and_writes_the_report(
    spy_csv: Path, tmp_path: Path
) -> None:
    report = tmp_path / "out" / "run.html"
    done = cli(
        "run",
        "--csv",
        str(spy_csv),
        "--strategy",
        "sma_cross",
        "--param",
        "fast=5",
        "--param",
        "slow=20",
        "--commission-bps",
        "10",
        "--report",
        str(report),
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not a terminal: no progress line
    bars = load_bars({"source": "file", "path": str(spy_csv)})
    expected = backtest_strategy(
        bars,
        {"kind": "sma_cross", "symbol": "SPY", "fast": 5, "slow": 20},
        ExecutionModel(commission=Commission(CommissionKind.BPS, 10.0)),
        bars_per_year=252.0,
    )
    out = done.stdout
    assert out.startswith("sma_cross SPY fast=5 slow=20 on 300 bars of SPY from 2025-01-01")
    assert "252 bars a year; fill at next open, commission 10 bps" in out
    figures = expected.metrics
    assert figures.trades >= 5
    assert metric_line(out, "final equity") == fmt(figures.final_equity, "money")
    assert metric_line(out, "sharpe") == fmt(figures.sharpe, "ratio")
    assert metric_line(out, "max drawdown") == fmt(figures.max_drawdown, "percent")
    assert metric_line(out, "closed trades") == f"{figures.trades:,}"
    assert f"trades: {len(expected.trades):,}" in out
    last = expected.trades[len(expected.trades) - 1]
    assert fmt(last.pnl, "money") in out.splitlines()[-3]  # the last of the trades listed
    assert f"report: {report}" in out
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert 'id="equity-chart"' in page and 'id="trades-table"' in page
    assert "Backtest: sma_cross SPY fast=5 slow=20" in page


def test_json_figures_of_a_synthetic_run_match_the_engines() -> None:
    done = cli(
        "run",
        "--synthetic",
        "20000",
        "--seed",
        "3",
        "--symbol",
        "SPY",
        "--strategy",
        "ema_cross",
        "--param",
        "fast=10",
        "--param",
        "slow=40",
        "--param",
        "allow_short=true",
        "--fill",
        "this_close",
        "--slippage-bps",
        "2",
        "--cash",
        "50000",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    bars = load_bars({"source": "synthetic", "symbols": ["SPY"], "bars": 20000, "seed": 3})
    config = {"kind": "ema_cross", "symbol": "SPY", "fast": 10, "slow": 40, "allow_short": True}
    model = ExecutionModel(
        fill=FillTiming.THIS_CLOSE,
        slippage=Slippage(SlippageKind.BPS, 2.0),
        starting_cash=50_000.0,
    )
    expected = backtest_strategy(bars, config, model, bars_per_year=252 * 390)
    assert printed["strategy"] == config
    assert printed["bars"] == 20000 and printed["bars_per_year"] == 252 * 390
    assert printed["execution"] == model.to_dict()
    assert printed["metrics"] == expected.metrics.to_dict()
    assert printed["trades"] == len(expected.trades) > 10
    assert printed["open_trades"] == int((~expected.trades.closed).sum())


SWEEP = ("--grid", "fast=5:20:5", "--grid", "slow=10:40:10")


def test_a_sweep_ranks_the_grid_as_the_engine_does_and_reports_its_heatmap(
    tmp_path: Path,
) -> None:
    report = tmp_path / "sweep.html"
    args = ["sweep", "--synthetic", "30000", "--seed", "5", "--symbol", "QQQ"]
    args += ["--strategy", "sma_cross", *SWEEP, "--commission-bps", "1", "--top", "5"]
    done = cli(*args, "--json", "--report", str(report))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    bars = load_bars({"source": "synthetic", "symbols": ["QQQ"], "bars": 30000, "seed": 5})
    model = ExecutionModel(commission=Commission(CommissionKind.BPS, 1.0))
    table = sweep(
        bars,
        ParameterGrid(
            {"kind": "sma_cross", "symbol": "QQQ"},
            {"fast": [5, 10, 15, 20], "slow": [10, 20, 30, 40]},
        ),
        model,
        bars_per_year=252 * 390,
    )
    # 16 combinations, 4 with fast >= slow refused.
    assert (printed["configurations"], printed["skipped"]) == (12, 4)
    order = table.ranked("sharpe")
    assert [row["config"] for row in printed["leaderboard"]] == [
        table.configs[i] for i in order[:5]
    ]
    assert [row["metrics"] for row in printed["leaderboard"]] == [
        table.metrics[i].to_dict() for i in order[:5]
    ]
    assert printed["best"]["config"] == table.configs[table.best("sharpe")]
    page = report.read_text(encoding="utf-8")
    assert page.count('class="cell"') == 12 and page.count('class="cell empty"') == 4
    assert 'id="heatmap"' in page and 'id="leaderboard"' in page and 'id="equity-chart"' in page

    text = cli(*args)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("sweep of sma_cross QQQ on 30,000 bars of QQQ")
    assert lines[0].endswith("12 configurations (4 refused), ranked by sharpe")
    header = lines.index(next(x for x in lines if x.startswith("rank")))
    assert lines[header].split() == [
        "rank",
        "fast",
        "slow",
        "sharpe",
        "total_return",
        "max_drawdown",
        "trades",
        "final_equity",
    ]
    best = table.configs[order[0]]
    first = lines[header + 1].split()
    assert first[:3] == ["1", str(best["fast"]), str(best["slow"])]
    assert first[3] == fmt(table.metrics[order[0]].sharpe, "ratio")
    assert f"best: fast={best['fast']} slow={best['slow']}" in text.stdout


def test_a_sweep_of_a_few_metrics_shows_only_those_and_ranks_the_same(tmp_path: Path) -> None:
    report = tmp_path / "lean.html"
    args = ["sweep", "--synthetic", "30000", "--seed", "5", "--symbol", "QQQ"]
    args += ["--strategy", "sma_cross", *SWEEP, "--commission-bps", "1", "--top", "5"]
    args += ["--metric", "total_return"]
    full = json.loads(cli(*args, "--json").stdout)
    done = cli(*args, "--metrics", "trades,final_equity", "--json", "--report", str(report))
    assert done.returncode == 0, done.stderr
    lean = json.loads(done.stdout)
    assert [r["config"] for r in lean["leaderboard"]] == [r["config"] for r in full["leaderboard"]]
    for got, want in zip(lean["leaderboard"], full["leaderboard"], strict=True):
        assert "sharpe" not in got["metrics"] and "max_drawdown" not in got["metrics"]
        for name in ("total_return", "final_equity", "trades"):
            assert got["metrics"][name] == want["metrics"][name]
    page = report.read_text(encoding="utf-8")
    assert 'id="leaderboard"' in page and "Sharpe" not in page.split('id="leaderboard"')[1]
    text = cli(*args, "--metrics", "trades")
    lines = text.stdout.splitlines()
    header = next(x for x in lines if x.startswith("rank"))
    assert header.split() == ["rank", "fast", "slow", "total_return", "trades"]
    refused = cli(*args, "--metrics", "beauty")
    assert refused.returncode == 2 and "--metrics" in refused.stderr


def test_the_progress_line_is_drawn_only_when_asked_for_or_on_a_terminal() -> None:
    args = ["sweep", "--synthetic", "5000", "--symbol", "SPY", "--strategy", "sma_cross"]
    drawn = cli(*args, *SWEEP, "--progress", "--chunk", "4")
    assert drawn.returncode == 0, drawn.stderr
    steps = drawn.stderr.split("\r")
    assert "loading synthetic bars" in steps[0]
    assert [s.split("]")[1].split()[0] for s in steps[1:]] == ["0/12", "4/12", "8/12", "12/12"]
    assert "100%" in steps[-1] and steps[-1].endswith("\n")
    quiet = cli(*args, *SWEEP)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.splitlines()[-1] == drawn.stdout.splitlines()[-1]  # the same best


def test_a_walk_forward_lists_its_windows(spy_csv: Path, tmp_path: Path) -> None:
    report = tmp_path / "wf.html"
    done = cli(
        "walk-forward",
        "--csv",
        str(spy_csv),
        "--strategy",
        "sma_cross",
        "--grid",
        "fast=3,5",
        "--grid",
        "slow=10,20",
        "--train-bars",
        "100",
        "--test-bars",
        "50",
        "--json",
        "--report",
        str(report),
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert [(w["train_start"], w["train_stop"], w["test_stop"]) for w in printed["windows"]] == [
        (0, 100, 150),
        (50, 150, 200),
        (100, 200, 250),
        (150, 250, 300),
    ]
    assert printed["metrics"]["bars"] == 200
    page = report.read_text(encoding="utf-8")
    assert page.count("<tr><td>") >= 4 and 'id="windows"' in page


@pytest.fixture
def alpaca_data() -> Iterator[tuple[FakeAlpacaData, str]]:
    start = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    fake = FakeAlpacaData(bars={"SPY": make_bars(start, 400, seed=4)}, max_page=150)
    with BackgroundServer(fake.app()) as server:
        yield fake, server.url


def test_bars_from_alpaca(alpaca_data: tuple[FakeAlpacaData, str]) -> None:
    fake, url = alpaca_data
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    args = ["run", "--alpaca", "--start", "2026-03-02T14:30:00Z", "--end", "2026-03-03T00:00:00Z"]
    args += ["--symbol", "SPY", "--strategy", "sma_cross", "--param", "fast=5", "--param"]
    args += ["slow=20", "--json"]
    refused = cli(*args, env=env)
    assert refused.returncode == 2
    assert "error: --alpaca: ALPACA_KEY_ID: historical bars from Alpaca need" in refused.stderr
    env |= {"ALPACA_KEY_ID": "key", "ALPACA_SECRET_KEY": "secret", "ALPACA_DATA_URL": url}
    done = cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["bars"] == 400 and printed["bars_per_year"] == 252 * 390
    assert len(fake.requests) == 3  # 400 bars, 150 a page
    assert printed["trades"] > 0


# -- input it cannot use ---------------------------------------------------------------------


def test_bad_flags_exit_2_naming_the_flag_from_the_shell(spy_csv: Path) -> None:
    bad_grid = cli(
        "sweep", "--csv", str(spy_csv), "--strategy", "sma_cross", "--grid", "fast=9:1:1"
    )
    assert bad_grid.returncode == 2
    assert "argument --grid: fast: needs STOP >= START" in bad_grid.stderr
    no_file = cli("run", "--csv", "/nonexistent/bars.csv", "--strategy", "sma_cross")
    assert no_file.returncode == 2
    assert "error: --csv: no such file: /nonexistent/bars.csv" in no_file.stderr
    assert no_file.stdout == ""


def refusal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    out = io.StringIO()
    try:
        code = main(list(argv), out=out)
    except SystemExit as exit_:  # argparse's own refusals
        code = int(exit_.code or 0)
    assert code == 2
    assert out.getvalue() == ""
    err: str = capsys.readouterr().err
    return err


SYNTHETIC = ("--synthetic", "500", "--strategy", "sma_cross")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("run", "--strategy", "sma_cross"), "one of the arguments --csv --parquet"),
        (("run", "--synthetic", "0", "--strategy", "sma_cross"), "argument --synthetic: must be"),
        (("run", "--synthetic", "9", "--strategy", "momentum"), "argument --strategy: invalid"),
        (("run", *SYNTHETIC, "--symbol", "SPY", "--param", "fast"), "argument --param: must be"),
        (("run", *SYNTHETIC, "--commission-bps", "-1"), "argument --commission-bps: must be"),
        (
            ("run", *SYNTHETIC, "--commission-bps", "1", "--commission-per-order", "1"),
            "argument --commission-per-order: not allowed with argument --commission-bps",
        ),
        (("run", *SYNTHETIC), "error: --symbol: name the symbol to trade"),
        (
            ("run", *SYNTHETIC, "--symbols", "SPY,QQQ", "--param", "fast=5", "--param", "slow=9"),
            "error: --symbol: name the symbol to trade; the data has SPY, QQQ",
        ),
        (
            ("run", *SYNTHETIC, "--symbol", "SPY", "--param", "fast=0", "--param", "slow=9"),
            "error: --param: fast: must be an integer of at least 1",
        ),
        (
            ("run", *SYNTHETIC, "--symbol", "SPY", "--param", "fast=9", "--param", "slow=5"),
            "error: --param: fast: must be shorter than slow (9 >= 5)",
        ),
        (("run", *SYNTHETIC, "--symbol", "spy"), "error: --symbol: not a valid symbol"),
        (("run", *SYNTHETIC, "--symbols", "SPY,qqq"), "error: --symbols: not a valid symbol"),
        (
            ("run", *SYNTHETIC, "--symbol", "SPY", "--start", "2026-01-02"),
            "error: --start: must carry its zone",
        ),
        (("run", "--alpaca", "--strategy", "sma_cross", "--symbol", "SPY"), "error: --start:"),
        (
            ("sweep", *SYNTHETIC, "--symbol", "SPY", "--grid", "fast=1,2", "--param", "fast=3"),
            "error: --grid: fast is also a --param",
        ),
        (
            ("sweep", *SYNTHETIC, "--symbol", "SPY", "--grid", "fast=50,60", "--grid", "slow=5"),
            "error: --grid: no combination is a valid strategy",
        ),
        (
            ("walk-forward", *SYNTHETIC, "--symbol", "SPY", *SWEEP, "--train-bars", "600"),
            "the following arguments are required: --test-bars",
        ),
        (
            (
                "walk-forward",
                *SYNTHETIC,
                "--symbol",
                "SPY",
                *SWEEP,
                "--train-bars",
                "600",
                "--test-bars",
                "10",
            ),
            "error: --train-bars: must leave bars to test (600 >= 500)",
        ),
    ],
)
def test_input_it_cannot_use_exits_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    assert message in refusal(capsys, *argv)


def test_bad_data_in_a_file_names_the_flag_the_line_and_the_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, spy_csv: Path
) -> None:
    lines = spy_csv.read_text(encoding="utf-8").splitlines()
    fields = lines[3].split(",")
    fields[4] = "-2"
    lines[3] = ",".join(fields)
    bad = tmp_path / "spy.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = refusal(capsys, "run", "--csv", str(bad), "--strategy", "sma_cross")
    assert "error: --csv: close: line 4: must be a positive price, got -2" in err
    other = refusal(
        capsys, "run", "--csv", str(spy_csv), "--strategy", "sma_cross", "--symbol", "QQQ"
    )
    assert "error: --symbol: QQQ is not in the data (SPY)" in other
    missing = refusal(capsys, "run", "--parquet", str(spy_csv), "--strategy", "sma_cross")
    assert "error: --parquet: spy.csv is not a Parquet file" in missing


@pytest.mark.parametrize(
    ("spec", "values"),
    [
        ("fast=5:50:5", [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]),
        ("slow=20:200:20", [20, 40, 60, 80, 100, 120, 140, 160, 180, 200]),
        ("entry_z=1.5:2.5:0.5", [1.5, 2.0, 2.5]),
        ("z=0.1:0.3:0.1", [0.1, 0.2, 0.3]),  # no drift past 0.3 from adding steps
        ("fast=5,10,20", [5, 10, 20]),
        ("allow_short=true,false", [True, False]),
    ],
)
def test_grid_specs(spec: str, values: list[Any]) -> None:
    assert grid_axis(spec)[1] == values
