"""``POST /api/backtests``: start a backtest orchestration (a parameter grid over one data
set) and answer with its status links; its output is the leaderboard.

A request names its data by reference. From the outside only references that cannot reach
the host's files are taken as they are: synthetic data, Alpaca's historical bars; a file is
named relative to the ``BACKTEST_DATA_DIR`` setting and must stay inside it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from domain.errors import ValidationError
from triggers.http_api import HttpError, body_of, desk_route

BACKTEST_ORCHESTRATOR = "backtest"


def confined(data: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """The reference, with a file's path resolved inside ``data_dir``; HttpError else."""
    if data.get("source") != "file":
        return data
    if not data_dir:
        raise HttpError(400, "data.source", "file data needs BACKTEST_DATA_DIR to be set")
    path = data.get("path")
    if not isinstance(path, str) or not path or Path(path).is_absolute():
        raise HttpError(400, "data.path", f"must be a path relative to {data_dir}")
    root = Path(data_dir).resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise HttpError(400, "data.path", "must stay inside the data directory")
    if not resolved.is_file():
        raise HttpError(400, "data.path", "no such file in the data directory")
    return {**data, "path": str(resolved)}


@desk_route("backtests", ["POST"], func.AuthLevel.FUNCTION)
async def start_backtest(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    # Imported here: the data loaders and the job model are a cost only this route pays,
    # not every cold start of the app.
    from activities.backtest_data import parse_source
    from domain.backtest_jobs import BacktestJob

    body = body_of(req)
    if not isinstance(body, dict):
        raise HttpError(400, "body", "must be a JSON object")
    job = BacktestJob.from_dict(body)
    request = job.to_dict()
    request["data"] = confined(request["data"], os.environ.get("BACKTEST_DATA_DIR"))
    try:
        parse_source(request["data"])  # the whole reference, checked before anything starts
    except ValidationError as error:
        raise HttpError(400, f"data.{error.field}", error.reason) from None
    instance_id = f"backtest-{uuid.uuid4().hex}"
    await client.start_new(BACKTEST_ORCHESTRATOR, instance_id, request)
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response
