"""A host killed with SIGKILL at arbitrary moments resumes every instance on restart, and
every activity's effect is applied exactly once (activities may run more than once: they
are delivered at least once, and their effects are keyed by an idempotency key)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import DurableEngine, RuntimeStatus
from tests.functions import crash_app

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = 12


def spawn(store: Path, effects: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.functions.crash_host",
            str(store),
            str(effects),
            str(WORKFLOWS),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def effect_count(effects: Path) -> int:
    if not effects.exists():
        return 0
    db = sqlite3.connect(str(effects), timeout=30)
    try:
        return int(db.execute("SELECT COUNT(*) FROM effects").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def kill_after(store: Path, effects: Path, threshold: int) -> bool:
    """Run the host until ``threshold`` effects exist, then SIGKILL it. True if it was killed
    while still working."""
    process = spawn(store, effects)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if effect_count(effects) >= threshold:
            break
        time.sleep(0.002)
    alive = process.poll() is None
    if alive:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    return alive


def completions_by_task(events: list[dict[str, Any]]) -> tuple[set[int], Counter[int]]:
    scheduled = {e["EventId"] for e in events if e["EventType"] in (4, 7)}
    completed = Counter(e["TaskScheduledId"] for e in events if e["EventType"] in (5, 6, 8, 9))
    return scheduled, completed


@pytest.mark.parametrize(
    "thresholds", [(3, 17, 33, 52, 80), (1, 9, 26, 45, 66, 90)], ids=["five-kills", "six-kills"]
)
def test_killed_host_resumes_every_instance_and_applies_each_effect_once(
    tmp_path: Path, thresholds: tuple[int, ...]
) -> None:
    store, effects = tmp_path / "durable.db", tmp_path / "effects.db"
    kills = sum(kill_after(store, effects, threshold) for threshold in thresholds)
    assert kills >= 3, "the host finished before it could be killed"

    final = spawn(store, effects)
    out, err = final.communicate(timeout=60)
    assert final.returncode == 0, f"{out}\n{err}"

    db = sqlite3.connect(str(effects))
    keys = {row[0] for row in db.execute("SELECT key FROM effects")}
    attempts = sum(row[0] for row in db.execute("SELECT count FROM attempts"))
    db.close()
    expected = {
        f"wf-{i:03d}:{part}"
        for i in range(WORKFLOWS)
        for part in ("fan:0", "fan:1", "fan:2", "chain:0", "chain:1", "child")
    } | {f"loop-{i:03d}:gen:{g}" for i in range(WORKFLOWS) for g in range(3)}
    assert keys == expected
    assert len(keys) == WORKFLOWS * (crash_app.EFFECTS_PER_WORKFLOW + crash_app.LOOP_GENERATIONS)
    assert attempts >= len(keys)

    with DurableEngine(crash_app.app, store, activity_workers=0) as engine:
        for index in range(WORKFLOWS):
            status = engine.get_status(f"wf-{index:03d}", show_history=True)
            assert status is not None and status.history is not None
            assert status.runtime_status is RuntimeStatus.COMPLETED
            assert status.output == f"wf-{index:03d}:child"
            scheduled, completed = completions_by_task(status.history)
            assert set(completed) == scheduled
            assert all(n == 1 for n in completed.values()), completed
            child_id = next(e["InstanceId"] for e in status.history if e["EventType"] == 7)
            child = engine.get_status(child_id, show_history=True)
            assert child is not None and child.history is not None
            assert child.runtime_status is RuntimeStatus.COMPLETED
            child_scheduled, child_completed = completions_by_task(child.history)
            assert set(child_completed) == child_scheduled
            assert all(n == 1 for n in child_completed.values())
        assert engine.read_entity(("tally", "all")).state == WORKFLOWS
        for index in range(WORKFLOWS):
            loop = engine.get_status(f"loop-{index:03d}", show_history=True)
            assert loop is not None and loop.runtime_status is RuntimeStatus.COMPLETED
            assert loop.output == crash_app.LOOP_GENERATIONS
