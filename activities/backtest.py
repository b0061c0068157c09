"""The backtest orchestration's activities: plan a grid into slices, and run one slice.

Both re-derive the grid's configurations from the request (the same code, the same order),
so a slice travels as (offset, count) and the bars as a reference; each process keeps the
bars it loaded last, since the slices of one request all read the same data. numpy, the
engine and the job model load on the first call, not when the function app starts.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from activities.blueprint import bp
from domain.errors import ValidationError
from domain.serde import require

if TYPE_CHECKING:
    from domain.backtest import Bars
    from domain.backtest_jobs import BacktestJob

_bars_lock = threading.Lock()


@functools.lru_cache(maxsize=2)
def _bars(reference: str) -> Bars:
    from activities.backtest_data import load_bars

    return load_bars(json.loads(reference))


def bars_for(data: Mapping[str, Any]) -> Bars:
    with _bars_lock:  # one load per reference even when slices start together
        return _bars(json.dumps(data, sort_keys=True))


def _configs(job: BacktestJob) -> tuple[list[dict[str, Any]], int]:
    from domain.backtest import ParameterGrid

    return ParameterGrid.from_dict(job.grid).configs()


def plan(job: BacktestJob) -> dict[str, Any]:
    """Checks the request all the way (grid, execution model, metric) and splits it."""
    from domain.backtest import ExecutionModel
    from domain.backtest.metrics import check_metric, check_metric_names
    from domain.backtest_jobs import HIGHER_IS_BETTER, slices

    check_metric(job.metric)
    if job.wanted is not None:
        check_metric_names(job.wanted)
    ExecutionModel.from_dict(job.execution)
    configs, skipped = _configs(job)
    return {
        "combinations": len(configs),
        "skipped": skipped,
        "slices": [list(piece) for piece in slices(len(configs), job.slice_size)],
        "higher_is_better": HIGHER_IS_BETTER[job.metric],
    }


def run_slice(job: BacktestJob, offset: int, count: int) -> dict[str, Any]:
    """The slice's best ``job.top`` rows: all the leaderboard can take from it."""
    from domain.backtest import ExecutionModel, sweep
    from domain.backtest_jobs import HIGHER_IS_BETTER, leaderboard

    configs, _skipped = _configs(job)
    if not 0 <= offset < len(configs) or count < 1:
        raise ValidationError("offset", f"no configurations at {offset} (of {len(configs)})")
    chosen = configs[offset : offset + count]
    from activities.backtest_data import bars_per_year

    bars = bars_for(job.data)
    result = sweep(
        bars,
        chosen,
        ExecutionModel.from_dict(job.execution),
        bars_per_year=job.bars_per_year or bars_per_year(bars),
        metrics=job.wanted,
    )
    best = leaderboard(
        result.rows(), job.metric, job.top, higher_is_better=HIGHER_IS_BETTER[job.metric]
    )
    return {"offset": offset, "count": len(chosen), "rows": best}


# A request that cannot run (a grid the strategy refuses, data that does not load) is an
# answer, not a fault: retrying would only fail again. Anything else raises and is retried.


@bp.activity_trigger(input_name="payload")
def plan_backtest(payload: dict[str, Any]) -> dict[str, Any]:
    from domain.backtest_jobs import BacktestJob

    try:
        return plan(BacktestJob.from_dict(payload))
    except ValidationError as error:
        return {"error": error.to_dict()}


@bp.activity_trigger(input_name="payload")
def backtest_slice(payload: dict[str, Any]) -> dict[str, Any]:
    from domain.backtest_jobs import BacktestJob

    try:
        job = BacktestJob.from_dict(require(payload, "job"))
        offset, count = require(payload, "offset"), require(payload, "count")
        if not isinstance(offset, int) or not isinstance(count, int):
            raise ValidationError("offset", "offset and count must be whole numbers")
        return run_slice(job, offset, count)
    except ValidationError as error:
        return {"error": error.to_dict()}
