"""The cost model: a small month worked out by hand, the billing rules one by one, costs that
only grow with activity, and input refused with the field named."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from domain.costs import (
    Comparison,
    Estimate,
    Measurement,
    PriceSheet,
    Scenario,
    Service,
    Trigger,
    Verdict,
    WorkloadProfile,
    compare,
    group_usage,
    money,
    scenario_volumes,
    throughput_units,
    tick_batches,
)
from domain.errors import ValidationError

D = Decimal


def price_data(**grants: str) -> dict[str, Any]:
    """Round prices, a 720-hour month, no free grants unless given."""
    usd = {
        "functions.on_demand_gb_s": "0.00002",
        "functions.on_demand_million_executions": "0.5",
        "functions.always_ready_baseline_gb_s": "0.000004",
        "functions.always_ready_gb_s": "0.00001",
        "functions.always_ready_million_executions": "0.4",
        "event_hubs.standard_tu_hour": "0.03",
        "event_hubs.million_ingress_events": "0.028",
        "cosmos.million_request_units": "0.25",
        "cosmos.gb_month": "0.25",
        "storage.blob_gb_month": "0.02",
        "storage.blob_write_10k": "0.05",
        "storage.blob_read_10k": "0.004",
        "storage.queue_10k": "0.004",
        "storage.table_10k": "0.0004",
        "storage.table_gb_month": "0.05",
        "monitor.ingestion_gb": "2.5",
        "vm.os_disk_month": "10",
        "vm.public_ip_hour": "0.005",
    }
    return {
        "as_of": "2026-11-24",
        "region": "testregion",
        "currency": "USD",
        "hours_per_month": "720",
        "sources": {"list": {"url": "https://example.test/prices"}},
        "billing": {"min_billable_ms": "1000", "billing_increment_ms": "100", "source": "list"},
        "limits": {
            "event_hubs_tu_events_per_second": "1000",
            "event_hubs_tu_bytes_per_second": "1048576",
            "event_hubs_standard_max_tu": "40",
            "source": "list",
        },
        "grants": {
            "functions_on_demand_gb_s": grants.get("gb_s", "0"),
            "functions_on_demand_executions": grants.get("executions", "0"),
            "monitor_ingestion_gb": grants.get("log_gb", "100"),
            "sources": ["list"],
        },
        "prices": {key: {"usd": value, "source": "list"} for key, value in usd.items()},
        "vm_hourly": {"Small": {"usd": "0.1", "source": "list"}},
    }


SHEET = PriceSheet.from_dict(price_data())

# Round behaviour, so the month below can be worked out on paper.
PROFILE = WorkloadProfile(
    ticks_partitions=4,
    trade_updates_partitions=2,
    batch_base_ms=D(100),
    batch_per_tick_ms=D(0),
    episodes_per_trade=D(5),
    activities_per_trade=D(2),
    entity_ops_per_trade=D(1),
    followed_seconds_per_trade=D(4),
    poll_interval_s=D(2),
    trade_update_events_per_trade=D(2),
    episode_ms=D(50),
    activity_ms=D(250),
    entity_ms=D(20),
    trade_update_ms=D(10),
    timer_ms=D(1500),
    timer_executions_per_day=D(24),
    ru_per_batch=D(10),
    ru_per_trade=D(100),
    kb_per_trade=D(1024),
    history_kb_per_trade=D(1024),
    telemetry_kb_per_execution=D(1024),
)
SMALL = Scenario(
    name="small",
    ticks_per_second=D(4),
    trades_per_day=D(10),
    trading_hours=D(1),
    days_per_month=10,
    instance_memory_mb=2048,
    always_ready_ticks=0,
    always_ready_durable=0,
    vm_size="Small",
    profile=PROFILE,
)


def lines_of(estimate: Estimate) -> dict[str, Decimal]:
    return {line.item: line.cost for line in estimate.lines}


def test_a_small_month_worked_out_by_hand() -> None:
    # The market is open 1 h x 10 days = 36,000 s; the month is 720 h = 2,592,000 s.
    # ticks: 1 tick/s per partition, so every tick is its own batch: 4 x 36,000 = 144,000
    #   executions of 100 ms, each billed 1 s, but one instance is busy at most 36,000 s.
    # trade_updates: 100 trades x 2 = 200 executions, billed 1 s each: 200 s.
    # durable: each trade polls 4 s / 2 s = 2 times, 2 episodes and an activity a poll:
    #   100 x (5 + 4) episodes + 100 x (2 + 2) activities + 100 entity operations = 1,400
    #   executions, all under 1 s: 1,400 s.
    # timers: 24 a day x 30 days = 720 of 1.5 s: 1,080 s.
    # On demand, 2 GB: (36,000 + 200 + 1,400 + 1,080) x 2 = 77,360 GB-s.
    comparison = compare(SMALL, SHEET)
    serverless = lines_of(comparison.serverless)
    assert serverless["on-demand execution time (after the free grant)"] == D("1.54720")
    executions = 144_000 + 200 + 1_400 + 720
    assert serverless["on-demand executions (after the free grant)"] == D(executions) * D(
        "0.5"
    ) / D(1_000_000)
    assert serverless["always-ready baseline"] == 0
    # One throughput unit all month; 144,000 ticks and 200 updates in.
    assert serverless["Standard throughput units"] == D("21.60")
    assert serverless["ingress events"] == D("144200") * D("0.028") / D(1_000_000)
    # 144,000 batches x 10 RU + 100 trades x 100 RU; a year of 1 MB trades is 1,200 MB.
    assert serverless["request units"] == D("0.3625")
    assert serverless["storage (a year of books)"] == D("1.171875") * D("0.25")
    # Queues: 1,000 episodes x 3 + 400 activities x 4 + idle polling 5 x 2,592,000 / 30.
    assert serverless["durable queue operations"] == D("436600") * D("0.004") / D(10_000)
    assert serverless["durable table transactions"] == D("3000") * D("0.0004") / D(10_000)
    assert serverless["Event Hubs checkpoints (blob writes)"] == D("0.721")
    # Six partitions renew their ownership every 10 s all month: 1,555,200 operations.
    assert serverless["partition ownership renewals"] == D("0.62208")
    # 146,320 executions x 1 MB of telemetry = 142.89 GB, 100 GB of it free.
    assert serverless["telemetry ingestion (after the free grant)"] == D("42.890625") * D("2.5")
    assert money(comparison.serverless.total) == D("132.70")
    # The VM: 720 h x 0.10 + a 10.00 disk + 720 h x 0.005 for its address.
    assert comparison.vm.total == D("85.600")
    assert comparison.verdict is Verdict.VM
    assert comparison.saving == D("47.10")
    assert comparison.saving_percent == D(35)


def test_by_service_adds_up_to_the_total() -> None:
    estimate = compare(SMALL, SHEET).serverless
    totals = estimate.by_service()
    assert set(totals) == {
        Service.FUNCTIONS,
        Service.EVENT_HUBS,
        Service.COSMOS,
        Service.STORAGE,
        Service.MONITOR,
    }
    assert sum(totals.values(), D(0)) == estimate.total


@pytest.mark.parametrize(
    ("duration_ms", "billed_s"),
    [("0", "1"), ("5", "1"), ("1000", "1"), ("1001", "1.1"), ("1500", "1.5"), ("2000", "2")],
)
def test_an_execution_is_billed_at_least_a_second_then_in_tenths(
    duration_ms: str, billed_s: str
) -> None:
    assert SHEET.billable_s(D(duration_ms)) == D(billed_s)


def test_free_grants_come_off_on_demand_use_only() -> None:
    generous = PriceSheet.from_dict(price_data(gb_s="1000000", executions="1000000"))
    free = lines_of(compare(SMALL, generous).serverless)
    assert free["on-demand execution time (after the free grant)"] == 0
    assert free["on-demand executions (after the free grant)"] == 0
    partly = PriceSheet.from_dict(price_data(gb_s="77000"))
    assert lines_of(compare(SMALL, partly).serverless)[
        "on-demand execution time (after the free grant)"
    ] == D(360) * D("0.00002")


def test_always_ready_instances_cost_a_baseline_and_take_the_work_first() -> None:
    warm = replace(SMALL, always_ready_ticks=1, always_ready_durable=1)
    serverless = lines_of(compare(warm, SHEET).serverless)
    # Two 2 GB instances all month at the baseline rate.
    assert serverless["always-ready baseline"] == 2 * 2 * D(2_592_000) * D("0.000004")
    # ticks (36,000 s) and durable (1,400 s) now run at the always-ready rate; trade_updates
    # (200 s) and timers (1,080 s) stay on demand.
    assert serverless["always-ready execution time"] == D(37_400) * 2 * D("0.00001")
    assert serverless["on-demand execution time (after the free grant)"] == D(1_280) * 2 * D(
        "0.00002"
    )


def test_load_beyond_one_instance_is_billed_on_demand() -> None:
    busy = replace(SMALL, ticks_per_second=D(4000), always_ready_ticks=1)
    (ticks,) = [
        u
        for u in group_usage(scenario_volumes(busy, SHEET).workloads, busy, SHEET)
        if u.group == "function:ticks"
    ]
    # 4,000 ticks/s: 1,000 per partition, batches of 200 every 0.2 s, 20 a second of 100 ms:
    # two instances flat out, one of them always ready.
    assert tick_batches(D(4000), PROFILE) == (D(20), D(200))
    assert ticks.active_s == 2 * D(36_000)
    assert ticks.always_ready_active_s == D(36_000)
    assert ticks.on_demand_active_s == D(36_000)


def test_tick_batches_grow_with_the_rate_up_to_the_host_limit() -> None:
    assert tick_batches(D(0), PROFILE) == (D(0), D(0))
    assert tick_batches(D(2), PROFILE) == (D(2), D(1))  # sparse: every tick alone
    per_second, size = tick_batches(D(1_000_000), PROFILE)
    assert size == 500 and per_second == 2000


def test_throughput_units_follow_the_ingress_and_stop_at_the_standard_limit() -> None:
    assert throughput_units(D(0), SMALL, SHEET) == 1
    assert throughput_units(D(1000), SMALL, SHEET) == 1
    assert throughput_units(D(1001), SMALL, SHEET) == 2
    big_ticks = replace(SMALL, profile=replace(PROFILE, tick_bytes=10_000))
    assert throughput_units(D(500), big_ticks, SHEET) == 5  # 5 MB/s
    with pytest.raises(ValidationError) as refused:
        throughput_units(D(40_001), SMALL, SHEET)
    assert refused.value.field == "ticks_per_second"


@pytest.mark.parametrize("field", ["ticks_per_second", "trades_per_day", "trading_hours"])
def test_serverless_cost_never_falls_as_activity_grows(field: str) -> None:
    totals: list[Decimal] = []
    vms: set[Decimal] = set()
    for value in ("0.5", "1", "2", "8", "50", "400", "3000"):
        amount = min(D(value), D(24)) if field == "trading_hours" else D(value)
        changes: dict[str, Any] = {field: amount}
        comparison = compare(replace(SMALL, **changes), SHEET)
        totals.append(comparison.serverless.total)
        vms.add(comparison.vm.total)
    assert totals == sorted(totals)
    assert totals[-1] > totals[0]
    assert len(vms) == 1  # the VM costs the same however busy it is


def test_more_days_and_more_always_ready_instances_cost_more() -> None:
    base = compare(SMALL, SHEET).serverless.total
    assert compare(replace(SMALL, days_per_month=20), SHEET).serverless.total > base
    warm = compare(replace(SMALL, always_ready_durable=2), SHEET).serverless.total
    assert warm > base


def test_polling_open_orders_costs_executions() -> None:
    patient = replace(SMALL, profile=replace(PROFILE, followed_seconds_per_trade=D(3600)))
    quick = compare(SMALL, SHEET).serverless.by_service()[Service.FUNCTIONS]
    assert compare(patient, SHEET).serverless.by_service()[Service.FUNCTIONS] > quick


def test_an_even_bill_is_called_even() -> None:
    estimate = compare(SMALL, SHEET).vm
    even = Comparison(SMALL, serverless=estimate, vm=estimate)
    assert even.verdict is Verdict.EVEN and even.saving == 0


def test_measured_counts_are_scaled_to_the_month() -> None:
    measurement = Measurement.from_dict(
        {
            "period_days": 2,
            "ticks": 7200,
            "trades": 20,
            "functions": {
                "ticks": {
                    "trigger": "eventHubTrigger",
                    "count": 100,
                    "total_duration_ms": 5000,
                    "memory_mb": 2048,
                },
                "trade": {"trigger": "orchestration", "count": 30, "total_duration_ms": 600},
                "end_of_day": {"trigger": "timer", "count": 2, "total_duration_ms": 100},
            },
        }
    )
    comparison = compare(SMALL, SHEET, measurement)
    assert comparison.measured
    serverless = lines_of(comparison.serverless)
    # 10 days / 2 measured: x5. ticks 500 executions, trade 150, end_of_day 10, all 1 s.
    assert serverless["on-demand executions (after the free grant)"] == D(660) * D("0.5") / D(
        1_000_000
    )
    assert serverless["on-demand execution time (after the free grant)"] == D(660) * 2 * D(
        "0.00002"
    )
    # 36,000 ticks and 100 trades x 2 updates into the hubs.
    assert serverless["ingress events"] == D(36_200) * D("0.028") / D(1_000_000)


def test_measured_triggers_choose_the_scale_group() -> None:
    assert Trigger.parse("activityTrigger", "t").group("submit_order") == "durable"
    assert Trigger.parse("entity", "t").group("RiskEntity") == "durable"
    assert Trigger.parse("eventHub", "t").group("ticks") == "function:ticks"
    assert Trigger.parse("httpTrigger", "t").group("health") == "http"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ticks_per_second": D(-1)}, "ticks_per_second"),
        ({"trades_per_day": D(-5)}, "trades_per_day"),
        ({"trading_hours": D(0)}, "trading_hours"),
        ({"trading_hours": D(25)}, "trading_hours"),
        ({"days_per_month": 0}, "days_per_month"),
        ({"days_per_month": 32}, "days_per_month"),
        ({"instance_memory_mb": 1024}, "instance_memory_mb"),
        ({"always_ready_durable": -1}, "always_ready"),
        ({"name": " "}, "name"),
        ({"profile": replace(PROFILE, poll_interval_s=D(0))}, "poll_interval_s"),
    ],
)
def test_a_bad_scenario_is_refused_by_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        replace(SMALL, **changes)
    assert refused.value.field == field


def test_an_unpriced_vm_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        compare(replace(SMALL, vm_size="Standard_Z99"), SHEET)
    assert refused.value.field == "vm_size"
    assert "Small" in refused.value.reason


def _without(data: dict[str, Any], *path: str) -> dict[str, Any]:
    node = data
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return data


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        (lambda d: _without(d, "prices", "cosmos.gb_month"), "prices.cosmos.gb_month"),
        (
            lambda d: d["prices"]["storage.queue_10k"].update(usd="-1"),
            "prices.storage.queue_10k.usd",
        ),
        (
            lambda d: d["prices"]["vm.os_disk_month"].update(usd="ten"),
            "prices.vm.os_disk_month.usd",
        ),
        (
            lambda d: d["prices"]["cosmos.gb_month"].update(source="rumour"),
            "prices.cosmos.gb_month.source",
        ),
        (lambda d: d["sources"]["list"].update(url="http://x"), "sources.list.url"),
        (lambda d: d.update(as_of="last tuesday"), "as_of"),
        (lambda d: d.update(vm_hourly={}), "vm_hourly"),
        (lambda d: d["billing"].update(min_billable_ms="0"), "billing.min_billable_ms"),
        (lambda d: _without(d, "grants"), "grants"),
    ],
)
def test_a_bad_price_file_is_refused_by_field(broken: Any, field: str) -> None:
    data = price_data()
    broken(data)
    with pytest.raises(ValidationError) as refused:
        PriceSheet.from_dict(data)
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "functions"),
        ({"functions": {}}, "functions"),
        ({"functions": []}, "functions"),
        ({"period_days": 0, "functions": {"t": {}}}, "period_days"),
        ({"functions": {"t": {"trigger": "timer", "total_duration_ms": 1}}}, "count"),
        (
            {"functions": {"t": {"trigger": "timer", "count": -1, "total_duration_ms": 1}}},
            "functions.t.count",
        ),
        (
            {"functions": {"t": {"trigger": "timer", "count": 1.5, "total_duration_ms": 1}}},
            "functions.t.count",
        ),
        (
            {"functions": {"t": {"trigger": "queue", "count": 1, "total_duration_ms": 1}}},
            "functions.t.trigger",
        ),
        (
            {"functions": {"t": {"trigger": "timer", "count": 1, "total_duration_ms": "-3"}}},
            "functions.t.total_duration_ms",
        ),
        (
            {
                "functions": {
                    "t": {"trigger": "timer", "count": 1, "total_duration_ms": 1, "memory_mb": 1000}
                }
            },
            "functions.t.memory_mb",
        ),
        (
            {"functions": {"t": {"trigger": "timer", "count": 0, "total_duration_ms": 10}}},
            "functions.t.count",
        ),
        (
            {
                "ticks": "many",
                "functions": {"t": {"trigger": "timer", "count": 1, "total_duration_ms": 1}},
            },
            "ticks",
        ),
    ],
)
def test_a_bad_measurement_is_refused_by_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Measurement.from_dict(data)
    assert refused.value.field == field
