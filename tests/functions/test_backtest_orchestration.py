"""POST /api/backtests: a parameter grid fanned out as slices to activities and merged into
a leaderboard that matches one sweep over the same data."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.backtest_data import bars_per_year, load_bars
from devhost.durable import RuntimeStatus
from domain.backtest import ExecutionModel, ParameterGrid, sweep
from tests.functions.desk import Desk, make_desk

DATA = {"source": "synthetic", "symbols": ["AAPL"], "bars": 3_000, "seed": 11}
GRID = {
    "base": {"kind": "sma_cross", "symbol": "AAPL"},
    "axes": {"fast": [3, 5, 8, 13], "slow": [21, 34, 55]},
}
EXECUTION = {"commission": {"kind": "bps", "amount": 10.0}}


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    made = make_desk(tmp_path)
    yield made
    made.close()


def start(desk: Desk, body: dict[str, Any]) -> str:
    response = desk.http("POST", "backtests", json=body)
    assert response.status_code == 202, response.text
    instance_id: str = response.json()["id"]
    return instance_id


def test_the_leaderboard_is_the_sweep_ranked(desk: Desk) -> None:
    body = {"data": DATA, "grid": GRID, "execution": EXECUTION, "slice_size": 5, "top": 6}
    instance_id = start(desk, body)
    desk.settle(5)
    status = desk.status(instance_id)
    assert status.runtime_status is RuntimeStatus.COMPLETED, status.output
    output = status.output
    assert (output["combinations"], output["slices"], output["skipped"]) == (12, 3, 0)

    bars = load_bars(DATA)
    direct = sweep(
        bars,
        ParameterGrid.from_dict(GRID),
        ExecutionModel.from_dict(EXECUTION),
        bars_per_year=bars_per_year(bars),
    )
    expected = [direct.rows()[i] for i in direct.ranked("sharpe")[:6]]
    board = output["leaderboard"]
    assert [row["config"] for row in board] == [row["config"] for row in expected]
    for got, want in zip(board, expected, strict=True):
        assert math.isclose(got["metrics"]["sharpe"], want["metrics"]["sharpe"], rel_tol=1e-12)
        assert got["metrics"]["total_return"] == pytest.approx(want["metrics"]["total_return"])


def test_a_job_asking_for_fewer_metrics_ranks_the_same_and_reports_only_those(
    desk: Desk,
) -> None:
    common = {"data": DATA, "grid": GRID, "execution": EXECUTION, "slice_size": 5, "top": 12}
    boards = []
    for extra in ({}, {"metric": "total_return", "metrics": ["final_equity", "trades"]}):
        instance_id = start(desk, {**common, "metric": "total_return", **extra})
        desk.settle(5)
        status = desk.status(instance_id)
        assert status.runtime_status is RuntimeStatus.COMPLETED, status.output
        boards.append(status.output["leaderboard"])
    full, lean = boards
    assert [row["config"] for row in lean] == [row["config"] for row in full]
    assert set(lean[0]["metrics"]) >= {"final_equity", "trades", "total_return"}
    assert "sharpe" not in lean[0]["metrics"]
    for got, want in zip(lean, full, strict=True):
        assert got["metrics"]["final_equity"] == want["metrics"]["final_equity"]
    refused = desk.http("POST", "backtests", json={**common, "metrics": ["beauty"]})
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == "metrics"


def test_the_bars_never_travel_in_the_history(desk: Desk) -> None:
    body = {"data": {**DATA, "bars": 20_000}, "grid": GRID, "slice_size": 4}
    instance_id = start(desk, body)
    desk.settle(5)
    assert desk.status(instance_id).runtime_status is RuntimeStatus.COMPLETED
    history = desk.engine.store.history(instance_id)
    largest = max(len(event) for event in history)  # each event as stored, JSON
    assert largest < 16_000  # the leaderboard at the end is the largest thing in it


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"grid": GRID}, "data"),
        ({"data": DATA}, "grid"),
        ({"data": {"source": "ftp"}, "grid": GRID}, "data.source"),
        ({"data": DATA, "grid": GRID, "top": 0}, "top"),
        ({"data": {**DATA, "bars": "many"}, "grid": GRID}, "data.bars"),
        ({"data": DATA, "grid": GRID, "colour": "blue"}, "colour"),
        (
            {
                "data": DATA,
                "grid": {
                    "base": {"kind": "sma_cross"},
                    "axes": {"fast": list(range(400)), "slow": list(range(400))},
                },
            },
            "grid.axes",
        ),
    ],
)
def test_bad_requests_are_400s_naming_the_field(
    desk: Desk, body: dict[str, Any], field: str
) -> None:
    response = desk.http("POST", "backtests", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_file_data_needs_a_data_directory(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKTEST_DATA_DIR", raising=False)
    body = {"data": {"source": "file", "path": "spy.csv"}, "grid": GRID}
    response = desk.http("POST", "backtests", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "data.source"


def test_files_are_read_only_inside_the_data_directory(
    desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (tmp_path / "secret.csv").write_text("not for you\n")
    monkeypatch.setenv("BACKTEST_DATA_DIR", str(data_dir))
    for path in ("../secret.csv", str(tmp_path / "secret.csv"), "missing.csv"):
        response = desk.http(
            "POST", "backtests", json={"data": {"source": "file", "path": path}, "grid": GRID}
        )
        assert response.status_code == 400, path
        assert response.json()["error"]["field"] == "data.path"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"data": DATA, "grid": {"base": {"kind": "sma_cross", "symbol": "AAPL"},
                                    "axes": {"fast": [50], "slow": [10]}}},
            "axes",
        ),
        ({"data": DATA, "grid": GRID, "metric": "luck"}, "metric"),
        ({"data": {**DATA, "symbols": ["MSFT"]}, "grid": GRID}, "symbol"),
    ],
)  # fmt: skip
def test_a_request_that_cannot_run_ends_at_once_saying_why(
    desk: Desk, body: dict[str, Any], field: str
) -> None:
    instance_id = start(desk, body)
    desk.settle(1)
    status = desk.status(instance_id)
    assert status.runtime_status is RuntimeStatus.COMPLETED
    assert field in status.output["error"]["field"]
