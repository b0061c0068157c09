"""After start-up, devhost moves the loaded app out of the collector's full passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# In a process of its own: freezing is for the rest of a process's life.
PROBE = """
import gc, json, weakref
import function_app
from devhost.heap import freeze_startup_heap

class Node:
    pass

def cycle():
    node = Node()
    node.self = node
    return weakref.ref(node)

startup_garbage = cycle()
tracked_before = len(gc.get_objects())
frozen = freeze_startup_heap()
tracked_after = len(gc.get_objects())
later_garbage = cycle()
gc.collect()
print(json.dumps({
    "frozen": frozen,
    "tracked_before": tracked_before,
    "tracked_after": tracked_after,
    "startup_garbage_freed": startup_garbage() is None,
    "later_garbage_freed": later_garbage() is None,
    "enabled": gc.isenabled(),
}))
"""


def test_the_app_leaves_the_collectors_passes_and_later_garbage_is_still_collected() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    probe = json.loads(out.stdout)
    assert probe["frozen"] >= probe["tracked_before"] // 2  # the app's objects, frozen
    assert probe["tracked_after"] < probe["tracked_before"] // 20  # no longer walked
    assert probe["startup_garbage_freed"]  # collected before freezing, not kept for ever
    assert probe["later_garbage_freed"]
    assert probe["enabled"]
