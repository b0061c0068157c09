"""What the desk costs a month on Azure, serverless, against one always-on VM.

Pure arithmetic on Decimals. Prices come from a :class:`PriceSheet` (the dated
``infra/prices.json``, read by ``activities.cost_cli``); volumes come either from a
:class:`Scenario` (ticks per second, trades per day, trading hours), turned into invocations
by a :class:`WorkloadProfile` that describes how this app behaves, or from a
:class:`Measurement` of invocation counts and durations.

The serverless side prices what the template deploys: Flex Consumption (on-demand and
always-ready execution time, executions, the always-ready baseline), Event Hubs Standard
(throughput units and ingress), Cosmos DB serverless (request units and storage), the host's
storage account (durable queues and tables, trigger checkpoints) and Application Insights
ingestion. The VM side is one machine running the bridge, the desk and SQLite books together:
compute, its OS disk and a public address for the broker's APIs.

How Flex bills execution time, and so how it is modelled: an instance is billed for the time
it is actively executing, each active period at least 1 s and then in 0.1 s steps. Executions
that overlap on one instance are billed once, so a function group's billable time is the sum
of its executions' billable periods, but never more than the instances it needs running flat
out over the hours it works. That is an upper bound when executions are sparse and exact when
an instance is never idle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from domain.errors import ValidationError
from domain.serde import parse_decimal, parse_non_negative_decimal, require

ZERO = Decimal(0)
ONE = Decimal(1)
MILLION = Decimal(1_000_000)
TEN_THOUSAND = Decimal(10_000)
SECONDS_PER_HOUR = Decimal(3600)
MB_PER_GB = Decimal(1024)
KB_PER_GB = Decimal(1024 * 1024)
CENT = Decimal("0.01")
FLEX_MEMORY_MB = (512, 2048, 4096)

# Every price the model uses, by its key in the price file.
PRICE_KEYS = (
    "functions.on_demand_gb_s",
    "functions.on_demand_million_executions",
    "functions.always_ready_baseline_gb_s",
    "functions.always_ready_gb_s",
    "functions.always_ready_million_executions",
    "event_hubs.standard_tu_hour",
    "event_hubs.million_ingress_events",
    "cosmos.million_request_units",
    "cosmos.gb_month",
    "storage.blob_gb_month",
    "storage.blob_write_10k",
    "storage.blob_read_10k",
    "storage.queue_10k",
    "storage.table_10k",
    "storage.table_gb_month",
    "monitor.ingestion_gb",
    "vm.os_disk_month",
    "vm.public_ip_hour",
)


def money(value: Decimal) -> Decimal:
    """Cents, half up: what a bill shows."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _ceil(value: Decimal) -> Decimal:
    return value.to_integral_value(rounding=ROUND_CEILING)


def _mapping(value: object, field_name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(field_name, "must be an object")
    return value


def _whole(value: object, field_name: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationError(field_name, "must be a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ValidationError(field_name, f"must be a whole number, got {value!r}") from None
    if number < minimum:
        raise ValidationError(field_name, f"must be at least {minimum}")
    return number


class Service(StrEnum):
    FUNCTIONS = "Functions (Flex Consumption)"
    EVENT_HUBS = "Event Hubs"
    COSMOS = "Cosmos DB"
    STORAGE = "Storage"
    MONITOR = "Application Insights"
    VM = "Virtual machine"


class Verdict(StrEnum):
    SERVERLESS = "serverless"
    VM = "vm"
    EVEN = "even"


class Trigger(StrEnum):
    """What invokes a function; it decides the Flex scale group and what the host stores."""

    EVENT_HUB = "eventHub"
    ORCHESTRATION = "orchestration"
    ACTIVITY = "activity"
    ENTITY = "entity"
    TIMER = "timer"
    HTTP = "http"

    @classmethod
    def parse(cls, value: object, field_name: str) -> Trigger:
        text = str(value).strip() if isinstance(value, str) else ""
        if text.endswith("Trigger"):  # the host's binding type, e.g. "eventHubTrigger"
            text = text[: -len("Trigger")]
        try:
            return cls(text)
        except ValueError:
            choices = ", ".join(t.value for t in cls)
            raise ValidationError(field_name, f"must be one of {choices}") from None

    def group(self, function_name: str) -> str:
        """The Flex scale group: durable and HTTP functions share one each, every other
        function scales on its own."""
        if self in (Trigger.ORCHESTRATION, Trigger.ACTIVITY, Trigger.ENTITY):
            return "durable"
        if self is Trigger.HTTP:
            return "http"
        return f"function:{function_name}"


# ---- prices ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceSheet:
    """Dated list prices of one region, and the billing rules and limits that go with them."""

    as_of: date
    region: str
    currency: str
    hours_per_month: Decimal
    prices: Mapping[str, Decimal]
    vm_hourly: Mapping[str, Decimal]
    min_billable_s: Decimal
    billing_increment_s: Decimal
    free_gb_s: Decimal
    free_executions: Decimal
    free_log_gb: Decimal
    tu_events_per_second: Decimal
    tu_bytes_per_second: Decimal
    max_throughput_units: int

    def price(self, key: str) -> Decimal:
        return self.prices[key]

    def vm(self, size: str) -> Decimal:
        found = self.vm_hourly.get(size)
        if found is None:
            raise ValidationError("vm_size", f"{size!r} is not priced; one of {self.vm_sizes()}")
        return found

    def vm_sizes(self) -> str:
        return ", ".join(sorted(self.vm_hourly))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceSheet:
        """A price file's content; every price must name a listed source."""
        sources = _mapping(require(data, "sources"), "sources")
        for name, source in sources.items():
            url = _mapping(source, f"sources.{name}").get("url")
            if not isinstance(url, str) or not url.startswith("https://"):
                raise ValidationError(f"sources.{name}.url", "must be an https:// address")

        def sourced(entry: Mapping[str, Any], where: str) -> None:
            if entry.get("source") not in sources:
                raise ValidationError(f"{where}.source", "must name one of the sources")

        try:
            as_of = date.fromisoformat(str(require(data, "as_of")))
        except ValueError:
            raise ValidationError("as_of", "must be an ISO date (YYYY-MM-DD)") from None
        raw_prices = _mapping(require(data, "prices"), "prices")
        prices: dict[str, Decimal] = {}
        for key in PRICE_KEYS:
            if key not in raw_prices:
                raise ValidationError(f"prices.{key}", "is missing")
            entry = _mapping(raw_prices[key], f"prices.{key}")
            sourced(entry, f"prices.{key}")
            prices[key] = parse_non_negative_decimal(entry.get("usd"), f"prices.{key}.usd")
        vms: dict[str, Decimal] = {}
        for size, raw in _mapping(require(data, "vm_hourly"), "vm_hourly").items():
            entry = _mapping(raw, f"vm_hourly.{size}")
            sourced(entry, f"vm_hourly.{size}")
            vms[size] = parse_non_negative_decimal(entry.get("usd"), f"vm_hourly.{size}.usd")
        if not vms:
            raise ValidationError("vm_hourly", "must price at least one VM size")
        billing = _mapping(require(data, "billing"), "billing")
        sourced(billing, "billing")
        limits = _mapping(require(data, "limits"), "limits")
        sourced(limits, "limits")
        grants = _mapping(require(data, "grants"), "grants")
        for name in grants.get("sources") or []:
            if name not in sources:
                raise ValidationError("grants.sources", f"{name!r} is not one of the sources")

        def positive(section: Mapping[str, Any], key: str, where: str) -> Decimal:
            value = parse_non_negative_decimal(section.get(key), f"{where}.{key}")
            if value <= 0:
                raise ValidationError(f"{where}.{key}", "must be greater than zero")
            return value

        def grant(key: str) -> Decimal:
            return parse_non_negative_decimal(grants.get(key), f"grants.{key}")

        return cls(
            as_of=as_of,
            region=str(require(data, "region")),
            currency=str(require(data, "currency")),
            hours_per_month=positive(data, "hours_per_month", "price file"),
            prices=prices,
            vm_hourly=vms,
            min_billable_s=positive(billing, "min_billable_ms", "billing") / 1000,
            billing_increment_s=positive(billing, "billing_increment_ms", "billing") / 1000,
            free_gb_s=grant("functions_on_demand_gb_s"),
            free_executions=grant("functions_on_demand_executions"),
            free_log_gb=grant("monitor_ingestion_gb"),
            tu_events_per_second=positive(limits, "event_hubs_tu_events_per_second", "limits"),
            tu_bytes_per_second=positive(limits, "event_hubs_tu_bytes_per_second", "limits"),
            max_throughput_units=_whole(
                limits.get("event_hubs_standard_max_tu"), "limits.event_hubs_standard_max_tu"
            ),
        )

    @property
    def month_seconds(self) -> Decimal:
        return self.hours_per_month * SECONDS_PER_HOUR

    def billable_s(self, duration_ms: Decimal) -> Decimal:
        """One execution's billable period: at least the minimum, then whole increments."""
        seconds = duration_ms / 1000
        steps = _ceil(seconds / self.billing_increment_s) * self.billing_increment_s
        return max(self.min_billable_s, steps)


# ---- what the desk does ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkloadProfile:
    """How this app turns market activity into invocations, reads and writes.

    The defaults come from the code and from a devhost session: a trade is about 7
    orchestrator episodes, 3 activities and 4 risk-entity operations (672 trades of a 30,000
    tick ``make run``: 4,718 episodes, 1,721 activities, 2,306 entity calls), and while its
    orders are open every poll wakes it twice and calls ``sync_orders`` once."""

    ticks_partitions: int = 4  # infra: ticksPartitions
    trade_updates_partitions: int = 2  # infra: tradeUpdatesPartitions
    # A partition's next batch starts about this long after the last one: a receive plus an
    # invocation. Below that rate every tick is its own batch.
    batch_turnaround_s: Decimal = Decimal("0.2")
    max_batch: int = 500  # host.json maxEventBatchSize
    tick_bytes: int = 200
    batch_base_ms: Decimal = Decimal(25)  # invocation, strategy-state save, checkpoint
    batch_per_tick_ms: Decimal = Decimal("0.005")  # bench.trigger: about 200k ticks/s
    episodes_per_trade: Decimal = Decimal(7)
    activities_per_trade: Decimal = Decimal(3)
    entity_ops_per_trade: Decimal = Decimal(4)
    # Seconds a trade's orders stay open and polled: market entries fill in a second or two,
    # brackets keep their exits open far longer.
    followed_seconds_per_trade: Decimal = Decimal(20)
    poll_interval_s: Decimal = Decimal(2)  # TRADING_POLL_INTERVAL_S
    trade_update_events_per_trade: Decimal = Decimal(4)  # accepted and filled, two legs
    episode_ms: Decimal = Decimal(20)
    activity_ms: Decimal = Decimal(150)  # a broker round trip and a books write
    entity_ms: Decimal = Decimal(10)
    trade_update_ms: Decimal = Decimal(15)
    timer_ms: Decimal = Decimal(50)
    # warm_up and reconciliation every 5 minutes, end_of_day every minute, archive daily.
    timer_executions_per_day: Decimal = Decimal(1440 + 288 + 288 + 1)
    ru_per_batch: Decimal = Decimal(20)  # strategy snapshot and partition cursor replaced
    ru_per_trade: Decimal = Decimal(300)  # orders, fills, positions, claims, ~8 audit records
    kb_per_trade: Decimal = Decimal(10)  # what a trade adds to the books
    history_kb_per_trade: Decimal = Decimal(20)  # durable history kept in table storage
    queue_ops_per_episode: Decimal = Decimal(3)  # dequeue, delete, enqueue what it schedules
    table_ops_per_episode: Decimal = Decimal(3)  # history read and append, instance row
    queue_ops_per_activity: Decimal = Decimal(4)  # enqueue, dequeue, delete, result back
    durable_queues: int = 5  # four control queues and the work-item queue
    idle_poll_s: Decimal = Decimal(30)  # durable's longest queue polling interval
    ownership_renewal_s: Decimal = Decimal(10)  # Event Hubs partition ownership per partition
    telemetry_kb_per_execution: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A desk's trading activity and the deployment it runs on."""

    name: str
    ticks_per_second: Decimal
    trades_per_day: Decimal
    trading_hours: Decimal = Decimal("6.5")
    days_per_month: int = 21
    instance_memory_mb: int = 2048
    always_ready_ticks: int = 1  # infra alwaysReady: function:ticks
    always_ready_durable: int = 1  # infra alwaysReady: durable
    vm_size: str = "Standard_D2s_v5"
    profile: WorkloadProfile = field(default_factory=WorkloadProfile)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValidationError("name", "must not be empty")
        if self.ticks_per_second < 0:
            raise ValidationError("ticks_per_second", "must not be negative")
        if self.trades_per_day < 0:
            raise ValidationError("trades_per_day", "must not be negative")
        if not ZERO < self.trading_hours <= 24:
            raise ValidationError("trading_hours", "must be more than 0 and at most 24")
        if not 1 <= self.days_per_month <= 31:
            raise ValidationError("days_per_month", "must be between 1 and 31")
        if self.instance_memory_mb not in FLEX_MEMORY_MB:
            raise ValidationError("instance_memory_mb", f"must be one of {FLEX_MEMORY_MB}")
        if self.always_ready_ticks < 0 or self.always_ready_durable < 0:
            raise ValidationError("always_ready", "must not be negative")
        if self.profile.poll_interval_s <= 0:
            raise ValidationError("poll_interval_s", "must be greater than zero")

    @property
    def trading_seconds(self) -> Decimal:
        """Seconds a month the market is open."""
        return self.trading_hours * SECONDS_PER_HOUR * self.days_per_month

    @property
    def trades_per_month(self) -> Decimal:
        return self.trades_per_day * self.days_per_month

    def always_ready(self, group: str) -> int:
        return {
            "function:ticks": self.always_ready_ticks,
            "durable": self.always_ready_durable,
        }.get(group, 0)


@dataclass(frozen=True, slots=True)
class MeasuredFunction:
    name: str
    trigger: Trigger
    count: int
    total_duration_ms: Decimal
    memory_mb: int


@dataclass(frozen=True, slots=True)
class Measurement:
    """Invocation counts and durations of a run over ``period_days`` trading days.

    JSON: ``{"period_days": 1, "functions": {"<name>": {"trigger": "eventHub", "count": 1200,
    "total_duration_ms": 30000, "memory_mb": 2048}}, "ticks": 30000, "trades": 660}``;
    ``ticks`` and ``trades`` (events into the ticks hub, trade orchestrations) are optional
    and, when given, size the services around the functions."""

    period_days: Decimal
    functions: tuple[MeasuredFunction, ...]
    ticks: Decimal | None = None
    trades: Decimal | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        data = _mapping(data, "measurement")
        period = parse_decimal(data.get("period_days", 1), "period_days")
        if period <= 0:
            raise ValidationError("period_days", "must be greater than zero")
        raw = _mapping(require(data, "functions"), "functions")
        if not raw:
            raise ValidationError("functions", "must name at least one function")
        functions: list[MeasuredFunction] = []
        for name, entry in raw.items():
            where = f"functions.{name}"
            entry = _mapping(entry, where)
            count = _whole(require(entry, "count"), f"{where}.count")
            total = parse_non_negative_decimal(
                require(entry, "total_duration_ms"), f"{where}.total_duration_ms"
            )
            memory = _whole(entry.get("memory_mb", 2048), f"{where}.memory_mb")
            if memory not in FLEX_MEMORY_MB:
                raise ValidationError(f"{where}.memory_mb", f"must be one of {FLEX_MEMORY_MB}")
            if total and not count:
                raise ValidationError(f"{where}.count", "is 0 but the duration is not")
            trigger = Trigger.parse(require(entry, "trigger"), f"{where}.trigger")
            functions.append(MeasuredFunction(str(name), trigger, count, total, memory))

        def optional(key: str) -> Decimal | None:
            if data.get(key) is None:
                return None
            return parse_non_negative_decimal(data[key], key)

        return cls(period, tuple(functions), optional("ticks"), optional("trades"))


# ---- monthly volumes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    """One kind of invocation over a month."""

    name: str
    trigger: Trigger
    group: str
    executions: Decimal
    duration_ms: Decimal  # average
    window_s: Decimal  # the seconds of the month it runs in
    memory_mb: int


@dataclass(frozen=True, slots=True)
class MonthlyVolumes:
    workloads: tuple[Workload, ...]
    ticks: Decimal  # events into the ticks hub
    trade_updates: Decimal  # events into the trade-updates hub
    ticks_per_second: Decimal  # while the market is open, for sizing Event Hubs
    trades: Decimal

    def executions(self, *triggers: Trigger) -> Decimal:
        return sum(
            (w.executions for w in self.workloads if not triggers or w.trigger in triggers), ZERO
        )


def tick_batches(ticks_per_second: Decimal, profile: WorkloadProfile) -> tuple[Decimal, Decimal]:
    """(batches per second, ticks per batch) of the ticks trigger."""
    if ticks_per_second <= 0:
        return ZERO, ZERO
    per_partition = ticks_per_second / profile.ticks_partitions
    interval = max(ONE / per_partition, profile.batch_turnaround_s)
    size = min(Decimal(profile.max_batch), max(ONE, per_partition * interval))
    return ticks_per_second / size, size


def scenario_volumes(scenario: Scenario, sheet: PriceSheet) -> MonthlyVolumes:
    p = scenario.profile
    market = scenario.trading_seconds
    memory = scenario.instance_memory_mb
    workloads: list[Workload] = []
    batches_per_second, batch_size = tick_batches(scenario.ticks_per_second, p)
    if batches_per_second:
        workloads.append(
            Workload(
                "ticks",
                Trigger.EVENT_HUB,
                "function:ticks",
                batches_per_second * market,
                p.batch_base_ms + p.batch_per_tick_ms * batch_size,
                market,
                memory,
            )
        )
    trades = scenario.trades_per_month
    updates = trades * p.trade_update_events_per_trade
    polls = p.followed_seconds_per_trade / p.poll_interval_s
    for name, trigger, count, duration_ms in (
        ("trade_updates", Trigger.EVENT_HUB, updates, p.trade_update_ms),
        (
            "orchestrators",
            Trigger.ORCHESTRATION,
            trades * (p.episodes_per_trade + 2 * polls),
            p.episode_ms,
        ),
        ("activities", Trigger.ACTIVITY, trades * (p.activities_per_trade + polls), p.activity_ms),
        ("RiskEntity", Trigger.ENTITY, trades * p.entity_ops_per_trade, p.entity_ms),
    ):
        if count:
            workloads.append(
                Workload(name, trigger, trigger.group(name), count, duration_ms, market, memory)
            )
    days_in_month = sheet.hours_per_month / 24  # timers fire every day, weekends included
    workloads.append(
        Workload(
            "timers",
            Trigger.TIMER,
            "function:timers",
            p.timer_executions_per_day * days_in_month,
            p.timer_ms,
            sheet.month_seconds,
            memory,
        )
    )
    return MonthlyVolumes(
        tuple(workloads),
        ticks=scenario.ticks_per_second * market,
        trade_updates=updates,
        ticks_per_second=scenario.ticks_per_second,
        trades=trades,
    )


def measured_volumes(
    measurement: Measurement, scenario: Scenario, sheet: PriceSheet
) -> MonthlyVolumes:
    """A measured run scaled to the scenario's month. Timers run all month; everything else
    runs while the market is open. Without measured ``ticks`` and ``trades``, the scenario's
    rates size Event Hubs and Cosmos DB."""
    scale = Decimal(scenario.days_per_month) / measurement.period_days
    market = scenario.trading_seconds
    workloads = tuple(
        Workload(
            f.name,
            f.trigger,
            f.trigger.group(f.name),
            f.count * scale,
            f.total_duration_ms / f.count,
            sheet.month_seconds if f.trigger is Trigger.TIMER else market,
            f.memory_mb,
        )
        for f in measurement.functions
        if f.count
    )
    if measurement.ticks is not None:
        ticks = measurement.ticks * scale
        per_second = ticks / market
    else:
        ticks = scenario.ticks_per_second * market
        per_second = scenario.ticks_per_second
    trades = (
        measurement.trades * scale if measurement.trades is not None else scenario.trades_per_month
    )
    return MonthlyVolumes(
        workloads,
        ticks=ticks,
        trade_updates=trades * scenario.profile.trade_update_events_per_trade,
        ticks_per_second=per_second,
        trades=trades,
    )


# ---- pricing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CostLine:
    service: Service
    item: str
    quantity: Decimal
    unit: str
    cost: Decimal  # unrounded; round the total, not the lines


@dataclass(frozen=True, slots=True)
class Estimate:
    lines: tuple[CostLine, ...]

    @property
    def total(self) -> Decimal:
        return sum((line.cost for line in self.lines), ZERO)

    def by_service(self) -> dict[Service, Decimal]:
        totals: dict[Service, Decimal] = {}
        for line in self.lines:
            totals[line.service] = totals.get(line.service, ZERO) + line.cost
        return totals


@dataclass(frozen=True, slots=True)
class GroupUsage:
    """A Flex scale group's month: how much of its billable time fell on always-ready
    instances and how much on on-demand ones."""

    group: str
    memory_gb: Decimal
    always_ready: int
    executions: Decimal
    active_s: Decimal
    always_ready_active_s: Decimal

    @property
    def on_demand_active_s(self) -> Decimal:
        return self.active_s - self.always_ready_active_s

    @property
    def always_ready_executions(self) -> Decimal:
        if not self.active_s:
            return ZERO
        return self.executions * self.always_ready_active_s / self.active_s


def group_usage(
    workloads: Iterable[Workload], scenario: Scenario, sheet: PriceSheet
) -> list[GroupUsage]:
    by_group: dict[str, list[Workload]] = {}
    for workload in workloads:
        by_group.setdefault(workload.group, []).append(workload)
    usage: list[GroupUsage] = []
    for group, members in sorted(by_group.items()):
        executions = sum((w.executions for w in members), ZERO)
        billable = sum((w.executions * sheet.billable_s(w.duration_ms) for w in members), ZERO)
        busy = sum((w.executions * w.duration_ms / 1000 for w in members), ZERO)
        window = max(w.window_s for w in members)
        instances = max(ONE, _ceil(busy / window))
        active = min(billable, instances * window)
        ready = scenario.always_ready(group)
        usage.append(
            GroupUsage(
                group=group,
                memory_gb=Decimal(max(w.memory_mb for w in members)) / MB_PER_GB,
                always_ready=ready,
                executions=executions,
                active_s=active,
                always_ready_active_s=min(active, ready * window),
            )
        )
    return usage


def functions_lines(
    volumes: MonthlyVolumes, scenario: Scenario, sheet: PriceSheet
) -> list[CostLine]:
    usage = group_usage(volumes.workloads, scenario, sheet)
    memory_gb = Decimal(scenario.instance_memory_mb) / MB_PER_GB
    baseline = (
        (scenario.always_ready_ticks + scenario.always_ready_durable)
        * memory_gb
        * sheet.month_seconds
    )
    ready_gb_s = sum((u.always_ready_active_s * u.memory_gb for u in usage), ZERO)
    ready_executions = sum((u.always_ready_executions for u in usage), ZERO)
    demand_gb_s = sum((u.on_demand_active_s * u.memory_gb for u in usage), ZERO)
    demand_executions = sum((u.executions - u.always_ready_executions for u in usage), ZERO)
    billed_gb_s = max(ZERO, demand_gb_s - sheet.free_gb_s)
    billed_executions = max(ZERO, demand_executions - sheet.free_executions)
    f = Service.FUNCTIONS
    return [
        CostLine(
            f,
            "always-ready baseline",
            baseline,
            "GB-s",
            baseline * sheet.price("functions.always_ready_baseline_gb_s"),
        ),
        CostLine(
            f,
            "always-ready execution time",
            ready_gb_s,
            "GB-s",
            ready_gb_s * sheet.price("functions.always_ready_gb_s"),
        ),
        CostLine(
            f,
            "always-ready executions",
            ready_executions,
            "executions",
            ready_executions / MILLION * sheet.price("functions.always_ready_million_executions"),
        ),
        CostLine(
            f,
            "on-demand execution time (after the free grant)",
            billed_gb_s,
            "GB-s",
            billed_gb_s * sheet.price("functions.on_demand_gb_s"),
        ),
        CostLine(
            f,
            "on-demand executions (after the free grant)",
            billed_executions,
            "executions",
            billed_executions / MILLION * sheet.price("functions.on_demand_million_executions"),
        ),
    ]


def throughput_units(ticks_per_second: Decimal, scenario: Scenario, sheet: PriceSheet) -> int:
    """Event Hubs Standard units the ticks need: one per 1,000 events/s or 1 MB/s."""
    by_events = ticks_per_second / sheet.tu_events_per_second
    by_bytes = ticks_per_second * scenario.profile.tick_bytes / sheet.tu_bytes_per_second
    units = max(1, int(_ceil(max(by_events, by_bytes))))
    if units > sheet.max_throughput_units:
        raise ValidationError(
            "ticks_per_second",
            f"needs {units} Event Hubs throughput units; Standard stops at "
            f"{sheet.max_throughput_units} (price Premium or Dedicated instead)",
        )
    return units


def serverless_estimate(volumes: MonthlyVolumes, scenario: Scenario, sheet: PriceSheet) -> Estimate:
    p = scenario.profile
    lines = functions_lines(volumes, scenario, sheet)

    units = throughput_units(volumes.ticks_per_second, scenario, sheet)
    events = volumes.ticks + volumes.trade_updates
    lines += [
        CostLine(
            Service.EVENT_HUBS,
            "Standard throughput units",
            Decimal(units) * sheet.hours_per_month,
            "TU-hours",
            units * sheet.hours_per_month * sheet.price("event_hubs.standard_tu_hour"),
        ),
        CostLine(
            Service.EVENT_HUBS,
            "ingress events",
            events,
            "events",
            events / MILLION * sheet.price("event_hubs.million_ingress_events"),
        ),
    ]

    batches = volumes.executions(Trigger.EVENT_HUB)
    ticks_batches = sum(
        (w.executions for w in volumes.workloads if w.group == "function:ticks"), ZERO
    )
    request_units = ticks_batches * p.ru_per_batch + volumes.trades * p.ru_per_trade
    # A year of books: what the account holds once the desk has run a while.
    books_gb = volumes.trades * 12 * p.kb_per_trade / KB_PER_GB
    lines += [
        CostLine(
            Service.COSMOS,
            "request units",
            request_units,
            "RU",
            request_units / MILLION * sheet.price("cosmos.million_request_units"),
        ),
        CostLine(
            Service.COSMOS,
            "storage (a year of books)",
            books_gb,
            "GB-month",
            books_gb * sheet.price("cosmos.gb_month"),
        ),
    ]

    episodes = volumes.executions(Trigger.ORCHESTRATION, Trigger.ENTITY)
    activities = volumes.executions(Trigger.ACTIVITY)
    idle_polls = p.durable_queues * sheet.month_seconds / p.idle_poll_s
    queue_ops = episodes * p.queue_ops_per_episode + activities * p.queue_ops_per_activity
    queue_ops += idle_polls
    table_ops = episodes * p.table_ops_per_episode
    partitions = p.ticks_partitions + p.trade_updates_partitions
    ownership = partitions * sheet.month_seconds / p.ownership_renewal_s
    history_gb = volumes.trades * 12 * p.history_kb_per_trade / KB_PER_GB
    lines += [
        CostLine(
            Service.STORAGE,
            "durable queue operations",
            queue_ops,
            "operations",
            queue_ops / TEN_THOUSAND * sheet.price("storage.queue_10k"),
        ),
        CostLine(
            Service.STORAGE,
            "durable table transactions",
            table_ops,
            "transactions",
            table_ops / TEN_THOUSAND * sheet.price("storage.table_10k"),
        ),
        CostLine(
            Service.STORAGE,
            "durable history (a year)",
            history_gb,
            "GB-month",
            history_gb * sheet.price("storage.table_gb_month"),
        ),
        CostLine(
            Service.STORAGE,
            "Event Hubs checkpoints (blob writes)",
            batches,
            "operations",
            batches / TEN_THOUSAND * sheet.price("storage.blob_write_10k"),
        ),
        CostLine(
            Service.STORAGE,
            "partition ownership renewals",
            ownership,
            "operations",
            ownership / TEN_THOUSAND * sheet.price("storage.blob_read_10k"),
        ),
        CostLine(
            Service.STORAGE,
            "deployment package and checkpoints",
            ONE,
            "GB-month",
            sheet.price("storage.blob_gb_month"),
        ),
    ]

    telemetry_gb = volumes.executions() * p.telemetry_kb_per_execution / KB_PER_GB
    billed_gb = max(ZERO, telemetry_gb - sheet.free_log_gb)
    lines.append(
        CostLine(
            Service.MONITOR,
            "telemetry ingestion (after the free grant)",
            billed_gb,
            "GB",
            billed_gb * sheet.price("monitor.ingestion_gb"),
        )
    )
    return Estimate(tuple(lines))


def vm_estimate(scenario: Scenario, sheet: PriceSheet) -> Estimate:
    hours = sheet.hours_per_month
    return Estimate(
        (
            CostLine(
                Service.VM,
                f"{scenario.vm_size}, always on",
                hours,
                "hours",
                hours * sheet.vm(scenario.vm_size),
            ),
            CostLine(Service.VM, "OS disk", ONE, "month", sheet.price("vm.os_disk_month")),
            CostLine(
                Service.VM,
                "public IPv4 address",
                hours,
                "hours",
                hours * sheet.price("vm.public_ip_hour"),
            ),
        )
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    scenario: Scenario
    serverless: Estimate
    vm: Estimate
    measured: bool = False

    @property
    def verdict(self) -> Verdict:
        serverless, vm = money(self.serverless.total), money(self.vm.total)
        if serverless == vm:
            return Verdict.EVEN
        return Verdict.SERVERLESS if serverless < vm else Verdict.VM

    @property
    def saving(self) -> Decimal:
        """What the cheaper side saves a month, in cents."""
        return money(abs(self.serverless.total - self.vm.total))

    @property
    def saving_percent(self) -> Decimal:
        """The saving as a share of the dearer side's bill."""
        dearer = max(self.serverless.total, self.vm.total)
        if not dearer:
            return ZERO
        return (abs(self.serverless.total - self.vm.total) * 100 / dearer).quantize(
            ONE, rounding=ROUND_HALF_UP
        )


def compare(
    scenario: Scenario, sheet: PriceSheet, measurement: Measurement | None = None
) -> Comparison:
    sheet.vm(scenario.vm_size)  # refuse an unpriced size before any arithmetic
    volumes = (
        scenario_volumes(scenario, sheet)
        if measurement is None
        else measured_volumes(measurement, scenario, sheet)
    )
    return Comparison(
        scenario,
        serverless_estimate(volumes, scenario, sheet),
        vm_estimate(scenario, sheet),
        measured=measurement is not None,
    )


# The seed's three desks. Each runs the deployment it would choose: a retail bot accepts cold
# starts on small instances; the desks keep the trigger path warm.
SEED_SCENARIOS = (
    # A handful of symbols on a free (IEX) feed, a few round trips a day.
    Scenario(
        name="retail bot",
        ticks_per_second=Decimal(1),
        trades_per_day=Decimal(10),
        instance_memory_mb=512,
        always_ready_ticks=0,
        always_ready_durable=0,
        vm_size="Standard_B2s",
    ),
    # A few dozen liquid names on the consolidated feed, intraday strategies.
    Scenario(
        name="mid-frequency desk",
        ticks_per_second=Decimal(200),
        trades_per_day=Decimal(500),
        vm_size="Standard_D4s_v5",
    ),
    # Hundreds of names tick by tick, orders in and out within seconds; the hub at its
    # 32-partition maximum.
    Scenario(
        name="high-frequency firm",
        ticks_per_second=Decimal(20_000),
        trades_per_day=Decimal(50_000),
        profile=WorkloadProfile(ticks_partitions=32, followed_seconds_per_trade=Decimal(4)),
        vm_size="Standard_D16s_v5",
    ),
)
