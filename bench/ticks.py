"""Per-tick cost of the signal path's front: parse + validate, and JSON decode + parse +
validate, in ns/tick (median of several runs), beside a do-nothing loop over the same
events for scale.

    python -m bench.ticks [--ticks N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from bench.common import median_ns_per_item, synthetic_trades
from domain.market import Tick, parse_tick

TARGET_NS = 2_000  # parse + validate + SMA-crossover update, per tick, one core


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    events = synthetic_trades(args.ticks, ["AAPL", "MSFT", "NVDA", "SPY", "QQQ"])
    bodies = [json.dumps(e).encode() for e in events]
    now = datetime(2030, 1, 1, tzinfo=UTC)
    if not all(isinstance(parse_tick(e, now=now), Tick) for e in events):
        raise SystemExit("the synthetic events must all be valid")

    def loop_only() -> int:
        count = 0
        for _event in events:
            count += 1
        return count

    def parse_only() -> int:
        for event in events:
            parse_tick(event, now=now)
        return len(events)

    def decode_and_parse() -> int:
        loads = json.loads
        for body in bodies:
            parse_tick(loads(body), now=now)
        return len(bodies)

    rows: list[tuple[str, float]] = [
        ("do-nothing loop", median_ns_per_item(loop_only, repeats=args.repeats)),
        ("parse + validate", median_ns_per_item(parse_only, repeats=args.repeats)),
        (
            "json.loads + parse + validate",
            median_ns_per_item(decode_and_parse, repeats=args.repeats),
        ),
    ]
    print(f"{len(events):,} ticks over 5 symbols, median of {args.repeats} runs")
    width = max(len(name) for name, _ in rows)
    for name, ns in rows:
        print(f"  {name:<{width}}  {ns:9.0f} ns/tick")
    parse = dict(rows)["parse + validate"]
    print(
        f"parse + validate: {parse:.0f} ns/tick of the {TARGET_NS} ns budget for parse + "
        "validate + an SMA-crossover update"
    )


if __name__ == "__main__":
    main()
