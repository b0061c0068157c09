"""Keeping devhost's threads on one core.

The host runs the Event Hub listener, the HTTP server, the durable engine and the
activity threads in one interpreter, and only the thread holding Python's interpreter
lock runs. When those threads sit on different cores, every hand-over of the lock is a
wake-up across cores, and under load the threads spend their time waiting for each
other: a full-speed ``make run`` session took about ten times longer from tick to submit
(median about 1 s against 90 ms) on an otherwise idle two-core machine. On one core the
hand-overs are plain context switches.

Where the platform has no affinity call (macOS, Windows) nothing changes. Worker
processes for CPU-bound activities get every core back (:func:`unpinned`).
"""

from __future__ import annotations

import contextlib
import os
import threading

_unpinned: frozenset[int] | None = None


def pin_to_one_core() -> int | None:
    """Move this process's threads, and every thread it starts from now on, to one of the
    cores it may use. Returns that core, or ``None`` when there is nothing to do (one
    core only, or no affinity call on this platform)."""
    global _unpinned
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = frozenset(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    core = max(allowed)
    for thread in threading.enumerate():  # threads started before this call
        if thread.native_id is not None:
            with contextlib.suppress(OSError):  # it may have ended meanwhile
                os.sched_setaffinity(thread.native_id, {core})
    os.sched_setaffinity(0, {core})
    _unpinned = _unpinned or allowed
    return core


def unpinned() -> frozenset[int] | None:
    """The cores the process could use before it was pinned (``None`` if it never was)."""
    return _unpinned


def restore(cores: frozenset[int] | None) -> None:
    """Let the calling process use ``cores`` again (a worker process started by a pinned
    one inherits its single core)."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
