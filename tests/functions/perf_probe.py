"""Measures the engine (not a test): throughput of three-activity orchestrations, and the
cost of one episode as the history grows.

    python -m tests.functions.perf_probe [--count 1000] [--workers 4]

Run it pinned to one core (``taskset -c 0``) for the one-core figure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from devhost.durable import DurableEngine, RuntimeStatus, VirtualClock
from tests.functions import conformance_app


def throughput(count: int, workers: int, directory: Path) -> None:
    with DurableEngine(
        conformance_app.app,
        directory / "throughput.db",
        clock=VirtualClock(),
        activity_workers=workers,
    ) as engine:
        started = time.perf_counter()
        for index in range(count):
            engine.start_new("hello_sequence", f"hello-{index}")
        queued = time.perf_counter()
        engine.run_until_idle(timeout=600)
        finished = time.perf_counter()
        done = engine.query(runtime_status=[RuntimeStatus.COMPLETED])
        assert len(done) == count, len(done)
        stats = engine.stats
    total = finished - started
    print(
        f"3-activity orchestrations: {count} in {total:.2f} s -> {count / total:.0f}/s "
        f"(start_new {queued - started:.2f} s, processing {finished - queued:.2f} s)"
    )
    print(
        f"  rounds {stats.rounds}, episodes {stats.episodes}, "
        f"SDK {stats.sdk_seconds:.2f} s, commits {stats.commit_seconds:.2f} s, "
        f"full replays {stats.full_replays}"
    )


def growth(instances: int, steps: int, directory: Path) -> None:
    """Instances advance in lockstep (inline activities), so each round runs one episode per
    instance at the same history length; the round time divided by the instances is the cost
    of one episode at that length."""
    with DurableEngine(
        conformance_app.app, directory / "growth.db", clock=VirtualClock(), activity_workers=0
    ) as engine:
        for index in range(instances):
            engine.start_new("counted_chain", f"grow-{index}", steps)
        rows: list[tuple[int, float, float]] = []
        length = 0
        while True:
            sdk_before = engine.stats.sdk_seconds
            started = time.perf_counter()
            if not engine.step():
                break
            elapsed = time.perf_counter() - started
            sdk = engine.stats.sdk_seconds - sdk_before
            status = engine.get_status("grow-0", show_history=True)
            assert status is not None and status.history is not None
            length = len(status.history)
            rows.append((length, elapsed / instances, sdk / instances))
    print(f"per-episode cost by history length ({instances} instances in lockstep):")
    print("  events   total µs   SDK µs   engine µs")
    for target in (10, 50, 100, 200):
        window = [r for r in rows if abs(r[0] - target) <= 8]
        if not window:
            continue
        total = statistics.median(r[1] for r in window) * 1e6
        sdk = statistics.median(r[2] for r in window) * 1e6
        print(f"  {target:6d} {total:10.0f} {sdk:8.0f} {total - sdk:11.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        throughput(args.count, args.workers, Path(directory))
        growth(args.instances, args.steps, Path(directory))


if __name__ == "__main__":
    main()
