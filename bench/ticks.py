"""Per-tick cost of the signal path: parse + validate, JSON decode + parse + validate, each
incremental strategy update alone, and parse + validate + update, in ns/tick (median of
several runs), beside a do-nothing loop over the same events for scale.

    python -m bench.ticks [--ticks N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from bench.common import median_ns_per_item, synthetic_trades
from domain.market import Tick, parse_tick
from domain.strategies import AnyStrategy, build_strategy

SYMBOLS = ["AAPL", "MSFT", "NVDA", "SPY", "QQQ"]
STRATEGIES: dict[str, dict[str, object]] = {
    "sma_cross": {"kind": "sma_cross", "fast": 10, "slow": 50},
    "ema_cross": {"kind": "ema_cross", "fast": 10, "slow": 50},
    "zscore": {"kind": "zscore", "window": 50, "entry_z": 2.0, "exit_z": 0.5},
}


def strategies_for(name: str) -> dict[str, AnyStrategy]:
    """One strategy per symbol, as the trigger keeps them."""
    return {s: build_strategy({**STRATEGIES[name], "symbol": s}) for s in SYMBOLS}


TARGET_NS = 2_000  # parse + validate + SMA-crossover update, per tick, one core


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    events = synthetic_trades(args.ticks, SYMBOLS)
    bodies = [json.dumps(e).encode() for e in events]
    now = datetime(2030, 1, 1, tzinfo=UTC)
    ticks = [t for t in (parse_tick(e, now=now) for e in events) if isinstance(t, Tick)]
    if len(ticks) != len(events):
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
    for name in STRATEGIES:

        def update_only(name: str = name) -> int:
            by_symbol = strategies_for(name)
            for tick in ticks:
                by_symbol[tick.symbol].on_tick(tick)
            return len(ticks)

        def parse_and_update(name: str = name) -> int:
            by_symbol = strategies_for(name)
            for event in events:
                tick = parse_tick(event, now=now)
                if isinstance(tick, Tick):
                    by_symbol[tick.symbol].on_tick(tick)
            return len(events)

        rows.append((f"{name} update", median_ns_per_item(update_only, repeats=args.repeats)))
        rows.append(
            (
                f"parse + validate + {name} update",
                median_ns_per_item(parse_and_update, repeats=args.repeats),
            )
        )
    print(f"{len(events):,} ticks over {len(SYMBOLS)} symbols, median of {args.repeats} runs")
    width = max(len(name) for name, _ in rows)
    for name, ns in rows:
        print(f"  {name:<{width}}  {ns:9.0f} ns/tick")
    combined = dict(rows)["parse + validate + sma_cross update"]
    verdict = "meets" if combined < TARGET_NS else "misses"
    print(
        f"parse + validate + SMA crossover: {combined:.0f} ns/tick ({verdict} the "
        f"{TARGET_NS} ns target)"
    )


if __name__ == "__main__":
    main()
