"""``python -m activities.cost_cli``: the seed's three scenarios with their verdicts, a desk of
your own, a measured run, and a clear refusal of input it cannot use. Also: the dated price
file cites its sources, and the model's defaults describe the deployment the template makes."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from activities.cost_cli import main
from domain.costs import PRICE_KEYS, SEED_SCENARIOS, PriceSheet, Scenario, Verdict, compare

ROOT = Path(__file__).resolve().parents[2]
PRICES = ROOT / "infra" / "prices.json"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_module_runs_and_prints_the_three_seed_scenarios() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "activities.cost_cli"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for name in ("retail bot:", "mid-frequency desk:", "high-frequency firm:"):
        assert name in out
    assert out.count("verdict: ") == 3
    assert "eastus list prices as of" in out


def test_the_verdicts_follow_the_scale_of_the_desk(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 0
    blocks = out.split("\n\n")
    retail = next(b for b in blocks if b.startswith("retail bot:"))
    firm = next(b for b in blocks if b.startswith("high-frequency firm:"))
    assert "verdict: serverless is cheaper by" in retail
    assert "verdict: the VM is cheaper by" in firm
    sheet = PriceSheet.from_dict(json.loads(PRICES.read_text(encoding="utf-8")))
    verdicts = [compare(s, sheet).verdict for s in SEED_SCENARIOS]
    assert verdicts[0] is Verdict.SERVERLESS and verdicts[-1] is Verdict.VM


def test_a_desk_of_your_own(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "--name",
        "pairs desk",
        "--ticks-per-second",
        "25",
        "--trades-per-day",
        "40",
        "--trading-hours",
        "8",
        "--days-per-month",
        "22",
        "--memory-mb",
        "512",
        "--always-ready",
        "0",
        "--vm",
        "Standard_B2s",
        "--detail",
    )
    assert code == 0
    assert "pairs desk: 25 ticks a second, 40 trades a day, 8 hours a day, 22 days a month" in out
    assert "no always-ready instances" in out
    assert "Standard_B2s, always on: 730 hours" in out  # --detail shows the lines
    assert "request units:" in out and out.count("verdict: ") == 1
    assert "retail bot" not in out


def test_a_measured_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    measured = tmp_path / "run.json"
    measured.write_text(
        json.dumps(
            {
                "period_days": 1,
                "ticks": 23_400,
                "trades": 12,
                "functions": {
                    "ticks": {"trigger": "eventHub", "count": 2000, "total_duration_ms": 40000},
                    "trade": {"trigger": "orchestration", "count": 90, "total_duration_ms": 900},
                    "submit_order": {
                        "trigger": "activity",
                        "count": 24,
                        "total_duration_ms": 3600,
                        "memory_mb": 2048,
                    },
                },
            }
        ),
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "--measured", str(measured))
    assert code == 0
    assert "measured: 1 trading day, scaled to 21 trading days" in out
    assert "measured (run.json): 1 tick a second, 12 trades a day" in out
    assert out.count("verdict: ") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ticks-per-second", "-3", "--trades-per-day", "5"], "--ticks-per-second: must not"),
        (["--trades-per-day", "5"], "--ticks-per-second: a desk of your own needs"),
        (["--vm", "Standard_Z99"], "--ticks-per-second: a desk of your own needs"),
        (["--ticks-per-second", "1", "--trades-per-day", "1", "--vm", "Nope"], "--vm: 'Nope'"),
        (
            ["--ticks-per-second", "1", "--trades-per-day", "1", "--days-per-month", "40"],
            "--days-per-month: must be between 1 and 31",
        ),
        (
            ["--ticks-per-second", "90000", "--trades-per-day", "1"],
            "--ticks-per-second: needs 90 Event Hubs throughput units",
        ),
        (
            ["--ticks-per-second", "1", "--trades-per-day", "1", "--poll-interval-s", "0"],
            "--poll-interval-s: must be greater than zero",
        ),
        (
            ["--ticks-per-second", "1", "--trades-per-day", "1", "--always-ready", "-1"],
            "--always-ready: must not be negative",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ticks-per-second", "lots"], "not a number: 'lots'"),
        (["--memory-mb", "1000"], "invalid choice: 1000"),
        (["--days-per-month", "x"], "invalid int value"),
        (["--frequency", "high"], "unrecognized arguments"),
    ],
)
def test_unparsable_flags_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_files_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    code, _, err = run(capsys, "--measured", str(missing))
    assert code == 2 and f"--measured: no such file: {missing}" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    code, _, err = run(capsys, "--prices", str(broken))
    assert code == 2 and "--prices:" in err and "not valid JSON" in err
    no_trades = tmp_path / "no_trades.json"
    no_trades.write_text(
        json.dumps({"functions": {"t": {"trigger": "timer", "count": 1, "total_duration_ms": 5}}}),
        encoding="utf-8",
    )
    code, _, err = run(capsys, "--measured", str(no_trades), "--ticks-per-second", "1")
    assert code == 2 and "--trades-per-day: give it" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"functions": {"t": {"trigger": "timer"}}}), encoding="utf-8")
    code, _, err = run(capsys, "--measured", str(bad), "--ticks-per-second", "1")
    assert code == 2 and "error: count: is required" in err


def test_the_price_file_is_dated_and_cites_a_source_for_every_price() -> None:
    data = json.loads(PRICES.read_text(encoding="utf-8"))
    sheet = PriceSheet.from_dict(data)  # refuses a price without a listed source
    assert sheet.as_of.isoformat() == data["as_of"]
    assert (sheet.region, sheet.currency) == ("eastus", "USD")
    assert set(data["prices"]) == set(PRICE_KEYS)
    for source in data["sources"].values():
        assert source["url"].startswith("https://") and source["what"]
    for scenario in SEED_SCENARIOS:
        sheet.vm(scenario.vm_size)


def test_the_models_defaults_are_the_deployment_the_template_makes() -> None:
    parameters = json.loads((ROOT / "infra" / "main.parameters.json").read_text(encoding="utf-8"))
    given = {name: entry["value"] for name, entry in parameters["parameters"].items()}
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    default = Scenario(name="default", ticks_per_second=Decimal(0), trades_per_day=Decimal(0))
    ready = {group["name"]: group["instanceCount"] for group in given["alwaysReady"]}
    assert ready == {
        "function:ticks": default.always_ready_ticks,
        "durable": default.always_ready_durable,
    }
    assert given["instanceMemoryMB"] == default.instance_memory_mb
    assert given["ticksPartitions"] == default.profile.ticks_partitions
    assert given["tradeUpdatesPartitions"] == default.profile.trade_updates_partitions
    assert host["extensions"]["eventHubs"]["maxEventBatchSize"] == default.profile.max_batch
