"""devhost's durable engine: orchestrations per second and per-step replay overhead, beside
calling the same activities directly in a loop.

    python -m bench.durable [--count 1000] [--workers 0]

``--workers 0`` runs activities inline on the engine's thread: the one-core figure. Pin the
process to a core for it (``taskset -c 0 python -m bench.durable``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench import durable_app
from devhost.durable import DurableEngine, RuntimeStatus, VirtualClock

TARGET_PER_SECOND = 200


def direct_baseline(count: int) -> float:
    """The three activities called as plain functions: what the work costs without a host."""
    started = time.perf_counter()
    for i in range(count):
        durable_app.minus_three(durable_app.times_two(durable_app.add_one(i)))
    return count / (time.perf_counter() - started)


def orchestrations_per_second(name: str, count: int, workers: int, path: Path) -> float:
    with DurableEngine(
        durable_app.app, path, clock=VirtualClock(), activity_workers=workers
    ) as engine:
        started = time.perf_counter()
        for i in range(count):
            engine.start_new(name, f"{name}-{i}", i)
        engine.run_until_idle(timeout=600)
        elapsed = time.perf_counter() - started
        completed = engine.query(runtime_status=[RuntimeStatus.COMPLETED])
        if len(completed) != count:
            raise SystemExit(f"{name}: only {len(completed)} of {count} completed")
    return count / elapsed


def per_step_cost(instances: int, steps: int, path: Path) -> dict[int, tuple[float, float]]:
    """Median cost of one orchestrator episode (µs) at history lengths near 10, 50, 200:
    (everything, the engine alone without the time spent inside the SDK).

    Instances advance in lockstep with inline activities, so every round runs one episode
    per instance at the same history length."""
    samples: list[tuple[int, float, float]] = []
    with DurableEngine(durable_app.app, path, clock=VirtualClock(), activity_workers=0) as engine:
        for i in range(instances):
            engine.start_new("sequential", f"seq-{i}", steps)
        while True:
            sdk_before = engine.stats.sdk_seconds
            started = time.perf_counter()
            if not engine.step():
                break
            elapsed = time.perf_counter() - started
            sdk = engine.stats.sdk_seconds - sdk_before
            status = engine.get_status("seq-0", show_history=True)
            if status is None or status.history is None:
                break
            per_episode = elapsed / instances * 1e6
            samples.append((len(status.history), per_episode, per_episode - sdk / instances * 1e6))
    result = {}
    for target in (10, 50, 200):
        near = [(total, own) for length, total, own in samples if abs(length - target) <= 6]
        if near:
            result[target] = (
                statistics.median(t for t, _ in near),
                statistics.median(o for _, o in near),
            )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="orchestrations per figure")
    parser.add_argument("--workers", type=int, default=0, help="activity threads (0 = inline)")
    parser.add_argument("--instances", type=int, default=20)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        baseline = direct_baseline(args.count * 10)
        chain = orchestrations_per_second("chain3", args.count, args.workers, folder / "a.db")
        fanout = orchestrations_per_second(
            "fanout20", max(1, args.count // 5), args.workers, folder / "b.db"
        )
        steps = per_step_cost(args.instances, 55, folder / "c.db")

    print(f"activities: {'inline' if args.workers == 0 else f'{args.workers} threads'}")
    print(f"  direct calls, 3 activities in a loop:   {baseline:12,.0f} /s (no host)")
    verdict = "meets" if chain >= TARGET_PER_SECOND else "misses"
    print(
        f"  3-activity chain orchestrations:        {chain:12,.0f} /s "
        f"({verdict} the {TARGET_PER_SECOND}/s target)"
    )
    print(f"  20-way fan-out/fan-in orchestrations:   {fanout:12,.0f} /s")
    print("  per-step cost by history length (one orchestrator episode):")
    print("    events   with SDK replay   host alone")
    for length, (total, own) in steps.items():
        print(f"    {length:6d} {total:14.0f} µs {own:10.0f} µs")
    if 10 in steps and 200 in steps:
        total_ratio = steps[200][0] / steps[10][0]
        own_ratio = steps[200][1] / steps[10][1]
        print(
            f"    200 vs 10 events: host {own_ratio:.2f}x (target: at most 2x); with the SDK's "
            f"own replay of the whole history {total_ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
