"""devhost keeps its threads on one core, and gives worker processes every core back. Run in
a fresh interpreter: pinning the test process would slow every test after it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, threading
from datetime import datetime, UTC
from devhost import affinity
from devhost.durable import DurableEngine, VirtualClock
from tests.functions import conformance_app

def cores(native_id=0):
    return sorted(os.sched_getaffinity(native_id)) if hasattr(os, "sched_getaffinity") else []

allowed = cores()
release = threading.Event()
earlier = threading.Thread(target=release.wait)
earlier.start()
core = affinity.pin_to_one_core()
seen = {}
later = threading.Thread(target=lambda: seen.update(later=cores()))
later.start(); later.join()
seen["earlier"] = cores(earlier.native_id)
release.set(); earlier.join()
with DurableEngine(
    conformance_app.app,
    os.path.join(os.environ["PROBE_DIR"], "durable.db"),
    clock=VirtualClock(datetime(2026, 3, 2, tzinfo=UTC)),
    activity_workers=1,
    cpu_bound_activities=["burn_cpu"],
    process_workers=1,
    app_import="tests.functions.conformance_app:app",
) as engine:
    engine.start_new("cpu_fan_out", "cpu", 1)
    engine.run_until_idle(timeout=60)
    [worker] = engine.get_status("cpu").output
seen.update(allowed=allowed, core=core, main=cores(), worker=worker["cores"])
print(json.dumps(seen))
"""


def test_the_host_threads_share_one_core_and_workers_get_them_all(tmp_path: Path) -> None:
    env = {**os.environ, "PROBE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    allowed = seen["allowed"]
    if len(allowed) < 2:  # nothing to pin (one core, or no affinity call): nothing changes
        assert seen["core"] is None
        assert seen["main"] == seen["later"] == seen["earlier"] == allowed
        return
    assert seen["core"] == max(allowed)
    # This thread, one it starts afterwards and one that was already running: one core.
    assert seen["main"] == seen["later"] == seen["earlier"] == [max(allowed)]
    assert seen["worker"] == allowed
