"""The backtest orchestration: a parameter grid over one data set, fanned out as slices to
activities running in parallel, merged into a leaderboard.

Slices go out in waves so the custom status can say how far the run is; within a wave they
all run at once (on as many workers as the host has). The input and every slice carry the
data by reference only: the history stays small whatever the size of the bars.
"""

from __future__ import annotations

from typing import Any

from orchestrators.blueprint import bp
from orchestrators.steps import Ctx, Steps, retry_options

WAVE = 32


def run_backtest(context: Ctx) -> Steps:
    # Imported on the first run rather than at start-up: a cost only backtests pay. A pure
    # domain module, so replays stay deterministic.
    from domain.backtest_jobs import BacktestJob, leaderboard

    job = BacktestJob.from_dict(context.get_input() or {})
    request = job.to_dict()
    context.set_custom_status({"stage": "planning"})
    plan = yield context.call_activity_with_retry("plan_backtest", retry_options(), request)
    if "error" in plan:
        return _refused(context, plan["error"])
    pieces: list[list[int]] = plan["slices"]
    rows: list[dict[str, Any]] = []
    for start in range(0, len(pieces), WAVE):
        wave = pieces[start : start + WAVE]
        results = yield context.task_all(
            [
                context.call_activity_with_retry(
                    "backtest_slice",
                    retry_options(),
                    {"job": request, "offset": offset, "count": count},
                )
                for offset, count in wave
            ]
        )
        for result in results:
            if "error" in result:
                return _refused(context, result["error"])
            rows.extend(result["rows"])
        context.set_custom_status(
            {"stage": "running", "slices_done": start + len(wave), "slices": len(pieces)}
        )
    board = leaderboard(rows, job.metric, job.top, higher_is_better=plan["higher_is_better"])
    context.set_custom_status({"stage": "done", "slices": len(pieces)})
    return {
        "metric": job.metric,
        "combinations": plan["combinations"],
        "skipped": plan["skipped"],
        "slices": len(pieces),
        "leaderboard": board,
    }


def _refused(context: Ctx, error: dict[str, Any]) -> dict[str, Any]:
    """The request cannot run: say why (the output) and stop."""
    context.set_custom_status({"stage": "refused", "error": error})
    return {"error": error}


@bp.orchestration_trigger(context_name="context")
def backtest(context: Ctx) -> Steps:
    return (yield from run_backtest(context))
