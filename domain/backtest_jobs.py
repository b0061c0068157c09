"""A backtest request as the ``backtest`` orchestration runs it: a parameter grid over data
named by reference, split into slices of the grid that activities run in parallel, and the
leaderboard merged from their results.

Nothing here imports numpy: the orchestration imports this module, and orchestrations are
part of every cold start. Slices are (offset, count) into the grid's configurations, so a
100,000-combination sweep still puts only a few numbers into each activity's input; the
bars themselves never travel (the activity loads them from the reference).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from domain.errors import ValidationError

MAX_COMBINATIONS = 100_000
# Whether a higher value of each metric (``domain.backtest.metrics``) is better: how a sweep
# is ranked. Here, not with the metrics, so ranking needs no numpy.
HIGHER_IS_BETTER: dict[str, bool] = {
    "final_equity": True,
    "total_return": True,
    "annualised_return": True,
    "volatility": False,
    "sharpe": True,
    "sortino": True,
    "max_drawdown": False,
    "max_drawdown_duration": False,
    "longest_drawdown": False,
    "win_rate": True,
    "profit_factor": True,
    "exposure": False,
    "turnover": False,
    "fees": False,
}
# Every figure of ``domain.backtest.metrics.Metrics``: those ranked, and the counts.
METRIC_NAMES = frozenset(HIGHER_IS_BETTER) | {"trades", "bars", "starting_equity"}
MAX_REFERENCE_BYTES = 4_096
DATA_SOURCES = ("synthetic", "file", "alpaca")


def _mapping(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(name, "must be an object")
    return value


def _whole(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(name, f"must be a whole number from {low} to {high}")
    return value


@dataclass(frozen=True)
class BacktestJob:
    """``data``: where the bars are (``activities.backtest_data.load_bars`` takes it);
    ``grid``: ``{"base": strategy config, "axes": {parameter: [values]}}``;
    ``execution``: the execution model (``domain.backtest.ExecutionModel.to_dict`` form);
    ``metric``: what the leaderboard ranks by; ``top``: how many rows it keeps;
    ``slice_size``: grid configurations per activity; ``bars_per_year``: for annualised
    figures (None: from the data's bar spacing); ``metrics``: the figures wanted besides
    ``metric`` (None: all of them; without a curve figure the sweep runs much faster)."""

    data: Mapping[str, Any]
    grid: Mapping[str, Any]
    execution: Mapping[str, Any] = field(default_factory=dict)
    metric: str = "sharpe"
    top: int = 20
    slice_size: int = 25
    bars_per_year: float | None = None
    metrics: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        data = _mapping(self.data, "data")
        if data.get("source") not in DATA_SOURCES:
            raise ValidationError("data.source", f"must be one of {', '.join(DATA_SOURCES)}")
        if len(json.dumps(data, default=str)) > MAX_REFERENCE_BYTES:
            raise ValidationError("data", "is a reference to the bars, not the bars themselves")
        grid = _mapping(self.grid, "grid")
        _mapping(grid.get("base"), "grid.base")
        axes = _mapping(grid.get("axes") or {}, "grid.axes")
        combinations = math.prod(
            len(v) if isinstance(v, list | tuple) else 0 for v in axes.values()
        )
        if axes and not 0 < combinations <= MAX_COMBINATIONS:
            raise ValidationError(
                "grid.axes", f"must be lists giving 1 to {MAX_COMBINATIONS} combinations"
            )
        _mapping(self.execution, "execution")
        if not isinstance(self.metric, str) or not self.metric:
            raise ValidationError("metric", "must name a metric")
        _whole(self.top, "top", 1, 1_000)
        _whole(self.slice_size, "slice_size", 1, 10_000)
        if self.bars_per_year is not None and (
            isinstance(self.bars_per_year, bool)
            or not (isinstance(self.bars_per_year, int | float) and 0 < self.bars_per_year < 1e8)
        ):
            raise ValidationError("bars_per_year", "must be a positive number")
        if self.metrics is not None:
            if not isinstance(self.metrics, list | tuple) or not all(
                isinstance(m, str) for m in self.metrics
            ):
                raise ValidationError("metrics", "must be a list of metric names")
            unknown = sorted(set(self.metrics) - METRIC_NAMES)
            if unknown or not self.metrics:
                raise ValidationError(
                    "metrics", f"must name some of {', '.join(sorted(METRIC_NAMES))}: not {unknown}"
                )
            object.__setattr__(self, "metrics", tuple(self.metrics))

    @property
    def wanted(self) -> tuple[str, ...] | None:
        """The metrics a sweep of this job computes (None: all)."""
        if self.metrics is None:
            return None
        return (*self.metrics, *(() if self.metric in self.metrics else (self.metric,)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": dict(self.data),
            "grid": {"base": dict(self.grid["base"]), "axes": dict(self.grid.get("axes") or {})},
            "execution": dict(self.execution),
            "metric": self.metric,
            "top": self.top,
            "slice_size": self.slice_size,
            "bars_per_year": self.bars_per_year,
            "metrics": None if self.metrics is None else list(self.metrics),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        data = _mapping(data, "body")
        unknown = set(data) - {
            "data", "grid", "execution", "metric", "top", "slice_size", "bars_per_year",
            "metrics",
        }  # fmt: skip
        if unknown:
            raise ValidationError(sorted(unknown)[0], "is not a field of a backtest request")
        if "data" not in data or "grid" not in data:
            raise ValidationError("data" if "data" not in data else "grid", "is required")
        return cls(
            data=data["data"],
            grid=data["grid"],
            execution=data.get("execution") or {},
            metric=data.get("metric", "sharpe"),
            top=data.get("top", 20),
            slice_size=data.get("slice_size", 25),
            bars_per_year=data.get("bars_per_year"),
            metrics=data.get("metrics"),
        )


def slices(total: int, size: int) -> list[tuple[int, int]]:
    """(offset, count) pieces covering ``total`` configurations, ``size`` at a time."""
    return [(start, min(size, total - start)) for start in range(0, total, size)]


def leaderboard(
    rows: Iterable[Mapping[str, Any]], metric: str, top: int, *, higher_is_better: bool
) -> list[dict[str, Any]]:
    """The ``top`` rows (``{"config", "metrics"}``) by ``metric``, best first; a missing or
    NaN value ranks last, ties keep the order given (grid order)."""

    def key(item: tuple[int, Mapping[str, Any]]) -> tuple[bool, float, int]:
        index, row = item
        value = (row.get("metrics") or {}).get(metric)
        if not isinstance(value, int | float) or math.isnan(value):
            return (True, 0.0, index)
        return (False, -value if higher_is_better else value, index)

    ranked = sorted(enumerate(rows), key=key)
    return [dict(row) for _index, row in ranked[:top]]
