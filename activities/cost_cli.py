"""``python -m activities.cost_cli``: what the desk costs a month on Azure, serverless, against
one always-on VM, at the dated list prices of ``infra/prices.json``.

Without arguments it prints the three seed scenarios (a retail bot, a mid-frequency desk, a
high-frequency firm) with a verdict each. ``--ticks-per-second`` and ``--trades-per-day``
describe a desk of your own; ``--measured FILE`` prices the invocation counts and durations
of a run instead of the model's (format in ``domain.costs.Measurement``). Exits 2 on input
it cannot use, naming the field.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from domain.costs import (
    FLEX_MEMORY_MB,
    SEED_SCENARIOS,
    Comparison,
    CostLine,
    Estimate,
    Measurement,
    PriceSheet,
    Scenario,
    Verdict,
    WorkloadProfile,
    compare,
    money,
)
from domain.errors import ValidationError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PRICES = ROOT / "infra" / "prices.json"
WIDTH = 44


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError(what, f"no such file: {path}") from None
    except json.JSONDecodeError as error:
        raise ValidationError(what, f"{path} is not valid JSON: {error.msg}") from None


def _amount(value: Decimal) -> str:
    return f"{money(value):>12,}"


def _row(indent: int, label: str, value: Decimal, width: int) -> str:
    return f"{' ' * indent}{label:<{width - indent}}{_amount(value)}"


def _quantity(value: Decimal) -> str:
    if value >= 100:
        return f"{value.quantize(Decimal(1)):,}"
    return f"{value.quantize(Decimal('0.01')).normalize():f}"


def _rate(value: Decimal, unit: str) -> str:
    places = Decimal("0.01") if value < 100 else Decimal(1)
    shown = value.quantize(places).normalize()
    return f"{shown:,f} {unit if value == 1 else unit + 's'}"


def _label(line: CostLine) -> str:
    return f"{line.item}: {_quantity(line.quantity)} {line.unit}"


def _services(estimate: Estimate, width: int, *, detail: bool) -> list[str]:
    lines: list[str] = []
    for service, total in estimate.by_service().items():
        lines.append(_row(4, service.value, total, width))
        if detail:
            lines += [
                _row(6, _label(line), line.cost, width)
                for line in estimate.lines
                if line.service is service
            ]
    return lines


def _verdict(comparison: Comparison, currency: str) -> str:
    saving = f"{comparison.saving:,} {currency} a month ({comparison.saving_percent}%)"
    if comparison.verdict is Verdict.SERVERLESS:
        return f"verdict: serverless is cheaper by {saving}"
    if comparison.verdict is Verdict.VM:
        return f"verdict: the VM is cheaper by {saving}"
    return f"verdict: even, both {money(comparison.vm.total):,} {currency} a month"


def render(comparison: Comparison, sheet: PriceSheet, *, detail: bool = False) -> str:
    """One scenario's two bills and the verdict, service by service (line by line with
    ``detail``)."""
    s = comparison.scenario
    ready = s.always_ready_ticks + s.always_ready_durable
    width = WIDTH
    if detail:
        every = (*comparison.serverless.lines, *comparison.vm.lines)
        width = max(WIDTH, *(len(_label(line)) + 8 for line in every))
    lines = [
        f"{s.name}: {_rate(s.ticks_per_second, 'tick')} a second, "
        f"{_rate(s.trades_per_day, 'trade')} a day, "
        f"{_rate(s.trading_hours, 'hour')} a day, {s.days_per_month} days a month",
        f"  serverless: Flex Consumption {s.instance_memory_mb} MB, "
        + (
            f"always ready: ticks {s.always_ready_ticks}, durable {s.always_ready_durable}"
            if ready
            else "no always-ready instances"
        ),
        *_services(comparison.serverless, width, detail=detail),
        _row(4, "total", comparison.serverless.total, width),
        f"  always-on VM: {s.vm_size}, OS disk, public IP",
    ]
    if detail:
        lines += _services(comparison.vm, width, detail=True)[1:]
    lines += [
        _row(4, "total", comparison.vm.total, width),
        f"  {_verdict(comparison, sheet.currency)}",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m activities.cost_cli",
        description="Monthly cost of the serverless deployment against an always-on VM.",
    )
    parser.add_argument(
        "--prices", type=Path, default=DEFAULT_PRICES, help="price file (infra/prices.json)"
    )
    parser.add_argument("--detail", action="store_true", help="every line of each bill")
    custom = parser.add_argument_group("a desk of your own (instead of the seed scenarios)")
    custom.add_argument("--name", default="custom", help="what to call it")
    custom.add_argument("--ticks-per-second", type=_decimal, help="ticks into the ticks hub")
    custom.add_argument("--trades-per-day", type=_decimal, help="trade orchestrations a day")
    custom.add_argument("--trading-hours", type=_decimal, help="hours a day (6.5)")
    custom.add_argument("--days-per-month", type=int, help="trading days a month (21)")
    custom.add_argument(
        "--memory-mb", type=int, choices=FLEX_MEMORY_MB, help="Flex instance memory (2048)"
    )
    custom.add_argument(
        "--always-ready", type=int, help="always-ready instances for ticks and for durable (1)"
    )
    custom.add_argument("--vm", help="the VM size to compare with (Standard_D2s_v5)")
    custom.add_argument(
        "--followed-seconds", type=_decimal, help="seconds a trade's orders stay open (20)"
    )
    custom.add_argument(
        "--poll-interval-s", type=_decimal, help="TRADING_POLL_INTERVAL_S of the desk (2)"
    )
    parser.add_argument(
        "--measured",
        type=Path,
        metavar="FILE",
        help="price measured invocation counts and durations (JSON) instead of the model's",
    )
    return parser


# Scenario fields by the flag that sets them, so an error names what the user typed.
FLAG_OF_FIELD = {
    "ticks_per_second": "--ticks-per-second",
    "trades_per_day": "--trades-per-day",
    "trading_hours": "--trading-hours",
    "days_per_month": "--days-per-month",
    "instance_memory_mb": "--memory-mb",
    "always_ready": "--always-ready",
    "vm_size": "--vm",
    "poll_interval_s": "--poll-interval-s",
}
SCENARIO_FLAGS = (
    "ticks_per_second",
    "trades_per_day",
    "trading_hours",
    "days_per_month",
    "memory_mb",
    "always_ready",
    "vm",
    "followed_seconds",
    "poll_interval_s",
)


def custom_scenario(args: argparse.Namespace, measurement: Measurement | None) -> Scenario:
    """The scenario the flags describe; a measurement may stand in for the two rates."""
    ticks, trades = args.ticks_per_second, args.trades_per_day
    if measurement is None and (ticks is None or trades is None):
        raise ValidationError(
            "--ticks-per-second", "a desk of your own needs --ticks-per-second and --trades-per-day"
        )
    if measurement is not None:
        if ticks is None and measurement.ticks is None:
            raise ValidationError("--ticks-per-second", 'give it, or "ticks" in the measurement')
        if trades is None and measurement.trades is None:
            raise ValidationError("--trades-per-day", 'give it, or "trades" in the measurement')
    profile = WorkloadProfile()
    if args.followed_seconds is not None:
        if args.followed_seconds < 0:
            raise ValidationError("--followed-seconds", "must not be negative")
        profile = replace(profile, followed_seconds_per_trade=args.followed_seconds)
    if args.poll_interval_s is not None:
        if args.poll_interval_s <= 0:
            raise ValidationError("--poll-interval-s", "must be greater than zero")
        profile = replace(profile, poll_interval_s=args.poll_interval_s)
    always_ready = 1 if args.always_ready is None else args.always_ready
    if always_ready < 0:
        raise ValidationError("--always-ready", "must not be negative")
    options = (
        ("trading_hours", args.trading_hours),
        ("days_per_month", args.days_per_month),
        ("instance_memory_mb", args.memory_mb),
        ("vm_size", args.vm),
    )
    given: dict[str, Any] = {key: value for key, value in options if value is not None}
    try:
        scenario = Scenario(
            name=args.name,
            ticks_per_second=Decimal(0) if ticks is None else ticks,
            trades_per_day=Decimal(0) if trades is None else trades,
            always_ready_ticks=always_ready,
            always_ready_durable=always_ready,
            profile=profile,
            **given,
        )
    except ValidationError as error:  # name the flag, not the field behind it
        raise ValidationError(FLAG_OF_FIELD.get(error.field, error.field), error.reason) from None
    if measurement is not None:  # the rates the run had, where no flag says otherwise
        days = measurement.period_days
        if ticks is None and measurement.ticks is not None:
            market_s = days * scenario.trading_hours * 3600
            scenario = replace(scenario, ticks_per_second=measurement.ticks / market_s)
        if trades is None and measurement.trades is not None:
            scenario = replace(scenario, trades_per_day=measurement.trades / days)
    return scenario


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        sheet = PriceSheet.from_dict(_read_json(args.prices, "--prices"))
        measurement = None
        if args.measured is not None:
            measurement = Measurement.from_dict(_read_json(args.measured, "--measured"))
        if measurement is not None or any(getattr(args, f) is not None for f in SCENARIO_FLAGS):
            scenario = custom_scenario(args, measurement)
            if measurement is not None and args.name == "custom":
                scenario = replace(scenario, name=f"measured ({args.measured.name})")
            try:
                comparisons = [compare(scenario, sheet, measurement)]
            except ValidationError as error:
                field = FLAG_OF_FIELD.get(error.field, error.field)
                raise ValidationError(field, error.reason) from None
        else:
            comparisons = [compare(scenario, sheet) for scenario in SEED_SCENARIOS]
    except ValidationError as error:
        print(f"error: {error.field}: {error.reason}", file=sys.stderr)
        return 2
    print(
        f"Monthly cost in {sheet.currency}, serverless against an always-on VM: "
        f"{sheet.region} list prices as of {sheet.as_of.isoformat()} ({args.prices.name})"
    )
    for comparison in comparisons:
        print()
        if comparison.measured and measurement is not None:
            print(
                f"measured: {_rate(measurement.period_days, 'trading day')}, "
                f"scaled to {comparison.scenario.days_per_month} trading days"
            )
        print(render(comparison, sheet, detail=args.detail))
    print()
    print(
        "The serverless bill prices what infra/main.bicep deploys; the VM's is compute, OS disk\n"
        "and address only. How ticks and trades become invocations, reads and writes:\n"
        "domain.costs.WorkloadProfile. Every line of each bill: --detail."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
