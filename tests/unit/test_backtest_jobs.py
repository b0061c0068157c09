"""Backtest requests: validated up front, split into slices, merged into a leaderboard."""

from __future__ import annotations

import math
from typing import Any

import pytest

from domain.backtest_jobs import METRIC_NAMES, BacktestJob, leaderboard, slices
from domain.errors import ValidationError

GRID = {"base": {"kind": "sma_cross", "symbol": "SPY"}, "axes": {"fast": [5, 10], "slow": [50]}}
DATA = {"source": "synthetic", "symbols": ["SPY"], "bars": 1000}


def test_slices_cover_every_configuration_once() -> None:
    assert slices(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert slices(4, 4) == [(0, 4)]
    covered = [i for offset, count in slices(1001, 7) for i in range(offset, offset + count)]
    assert covered == list(range(1001))


def row(config: int, sharpe: float | None) -> dict[str, Any]:
    return {"config": {"fast": config}, "metrics": {"sharpe": sharpe, "max_drawdown": sharpe}}


def test_the_leaderboard_ranks_best_first_with_nan_last_and_ties_in_order() -> None:
    rows = [row(1, 0.5), row(2, math.nan), row(3, 1.5), row(4, 0.5), row(5, None)]
    ranked = leaderboard(rows, "sharpe", 10, higher_is_better=True)
    assert [r["config"]["fast"] for r in ranked] == [3, 1, 4, 2, 5]
    lowest = leaderboard(rows, "max_drawdown", 2, higher_is_better=False)
    assert [r["config"]["fast"] for r in lowest] == [1, 4]


def test_a_request_round_trips_and_takes_defaults() -> None:
    job = BacktestJob.from_dict({"data": DATA, "grid": GRID})
    assert (job.metric, job.top, job.slice_size) == ("sharpe", 20, 25)
    assert BacktestJob.from_dict(job.to_dict()) == job
    assert job.wanted is None
    chosen = BacktestJob.from_dict({"data": DATA, "grid": GRID, "metrics": ["trades"]})
    assert chosen.wanted == ("trades", "sharpe")  # the ranking metric comes with them
    assert BacktestJob.from_dict(chosen.to_dict()) == chosen


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"data": {"source": "s3"}}, "data.source"),
        ({"data": {**DATA, "prices": [1.0] * 2_000}}, "data"),
        ({"grid": {"axes": {}}}, "grid.base"),
        ({"grid": {**GRID, "axes": {"fast": "5,10"}}}, "grid.axes"),
        ({"top": 0}, "top"),
        ({"slice_size": True}, "slice_size"),
        ({"bars_per_year": -1}, "bars_per_year"),
        ({"metric": ""}, "metric"),
        ({"metrics": "sharpe"}, "metrics"),
        ({"metrics": [1]}, "metrics"),
        ({"metrics": ["beauty"]}, "metrics"),
        ({"metrics": []}, "metrics"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_requests_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        BacktestJob.from_dict({"data": DATA, "grid": GRID, **changes})
    assert refused.value.field == field


def test_the_metric_names_a_job_takes_are_the_metrics_a_sweep_gives() -> None:
    from domain.backtest.metrics import ALL_METRICS

    assert METRIC_NAMES == ALL_METRICS
