"""A test-only app for crash tests: every activity applies an effect to a separate SQLite
file (``DEVHOST_EFFECTS_DB``) keyed by an idempotency key, and counts its attempts."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Generator
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

EFFECTS_PER_WORKFLOW = 6
LOOP_GENERATIONS = 3
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS attempts (key TEXT PRIMARY KEY, count INTEGER NOT NULL)",
)


def open_effects(path: str | Path) -> sqlite3.Connection:
    # After a host was killed, the first connection recovers the write-ahead log, and
    # SQLite can refuse a concurrent switch to WAL mode with "database is locked" without
    # waiting for the busy timeout; the next try finds the log recovered.
    attempts = 0
    while True:
        db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                db.execute(statement)
            return db
        except sqlite3.OperationalError as error:
            db.close()
            attempts += 1
            if "locked" not in str(error) or attempts == 100:
                raise
            time.sleep(0.01)


@app.activity_trigger(input_name="request")
def apply_effect(request: dict[str, Any]) -> str:
    """Applies the effect at most once per key, however often the activity runs."""
    key = str(request["key"])
    db = open_effects(os.environ["DEVHOST_EFFECTS_DB"])
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO attempts (key, count) VALUES (?, 1) "
            "ON CONFLICT(key) DO UPDATE SET count = count + 1",
            (key,),
        )
        db.execute(
            "INSERT OR IGNORE INTO effects (key, value) VALUES (?, ?)", (key, int(request["value"]))
        )
        db.execute("COMMIT")
    finally:
        db.close()
    # Widen the window in which the host can die between the effect and its result.
    time.sleep(0.004)
    return key


@app.entity_trigger(context_name="context", entity_name="tally")
def tally(context: df.DurableEntityContext) -> None:
    total = context.get_state(lambda: 0) + context.get_input()
    context.set_state(total)
    context.set_result(total)


@app.orchestration_trigger(context_name="context")
def crash_workflow(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    me = context.instance_id
    fan = [
        context.call_activity("apply_effect", {"key": f"{me}:fan:{i}", "value": i})
        for i in range(3)
    ]
    yield context.task_all(fan)
    for step in range(2):
        yield context.call_activity("apply_effect", {"key": f"{me}:chain:{step}", "value": step})
    yield context.create_timer(context.current_utc_datetime + timedelta(milliseconds=50))
    yield context.call_entity(df.EntityId("tally", "all"), "add", 1)
    result = yield context.call_sub_orchestrator("crash_child", {"key": f"{me}:child"})
    return result


@app.orchestration_trigger(context_name="context")
def crash_child(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    request = context.get_input()
    return (yield context.call_activity("apply_effect", {"key": request["key"], "value": 9}))


@app.orchestration_trigger(context_name="context")
def crash_loop(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """One effect per generation, continuing as new until the last."""
    generation = int(context.get_input() or 0)
    if generation >= LOOP_GENERATIONS:
        return generation
    key = f"{context.instance_id}:gen:{generation}"
    yield context.call_activity("apply_effect", {"key": key, "value": generation})
    context.continue_as_new(generation + 1)
    return None
