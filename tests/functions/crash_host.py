"""Runs the crash app's workflows on a store until all have finished; the crash test kills
this process with SIGKILL at chosen moments and starts it again.

    python -m tests.functions.crash_host STORE EFFECTS COUNT

It runs COUNT ``crash_workflow`` instances (``wf-NNN``) and COUNT ``crash_loop`` instances
(``loop-NNN``).
"""

from __future__ import annotations

import os
import sys
import time

from devhost.durable import DurableEngine, RuntimeStatus


def main(store: str, effects: str, count: int) -> int:
    os.environ["DEVHOST_EFFECTS_DB"] = effects
    from tests.functions import crash_app

    with DurableEngine(crash_app.app, store, activity_workers=4) as engine:
        for index in range(count):
            for name, prefix in (("crash_workflow", "wf"), ("crash_loop", "loop")):
                instance_id = f"{prefix}-{index:03d}"
                # A restart must not start a finished workflow again.
                if engine.get_status(instance_id) is None:
                    engine.start_new(name, instance_id)
        engine.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            statuses = engine.query(instance_id_prefix="wf-")
            statuses += engine.query(instance_id_prefix="loop-")
            if len(statuses) == 2 * count and all(s.runtime_status.is_terminal for s in statuses):
                failed = [s for s in statuses if s.runtime_status is not RuntimeStatus.COMPLETED]
                print(f"finished; not completed: {[s.instance_id for s in failed]}", flush=True)
                for status in failed:  # why, so that a rare failure can be diagnosed
                    print(f"{status.instance_id}: {status.runtime_status} {status.output!r}")
                return 0 if not failed else 1
            time.sleep(0.02)
    print("timed out", flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
