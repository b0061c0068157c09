"""The dashboard's data and page: figures that match the books and the risk entity after
real trades through the desk, the page's security headers, and the pure builders on their
own (P&L curve, limit use, latency and slippage)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from activities import dashboard
from adapters.bootstrap import AlpacaSettings
from adapters.simulated_broker import SimulatorConfig
from domain.audit import AuditKind, AuditRecord
from domain.fills import Fill
from domain.model import Side
from domain.portfolio import Position
from domain.risk import ExposureLeg, ReserveRequest, RiskLimits, RiskState
from tests.functions.desk import FUNCTION_KEY, Desk, make_desk

SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}
LIMITS = RiskLimits(
    max_order_quantity=Decimal(1000),
    max_position_notional=Decimal(20_000),
    max_gross_exposure=Decimal(100_000),
    max_open_orders=10,
    max_orders_per_minute=30,
    daily_loss_limit=Decimal(500),
)
# Every market order fills 5 basis points away from the print, against the desk.
SLIPPAGE = SimulatorConfig(slippage_bps=Decimal(5))
MSFT_BUY = {"symbol": "MSFT", "side": "buy"}
T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def place(desk: Desk, body: dict[str, Any]) -> str:
    response = desk.http("POST", "orders", json=body)
    assert response.status_code == 202, response.text
    intent_id: str = response.json()["intent_id"]
    return intent_id


def trade_a_little(desk: Desk) -> dict[str, str]:
    """A strategy buy of AAPL, a manual buy of MSFT, a resting limit order and a partial
    sale of MSFT at a profit; returns the intent ids by name."""
    desk.prices("AAPL", [100.0, 100.0, 100.0, 101.0])  # the SMA crosses: buy 10 at 101
    desk.prices("MSFT", [300.0])
    desk.settle(2)
    # Market orders fill at the next print; their reference is the last one.
    ids = {"msft_buy": place(desk, {**MSFT_BUY, "quantity": "5"})}
    desk.prices("MSFT", [300.0])
    desk.settle(2)
    ids["resting"] = place(
        desk,
        {
            "symbol": "MSFT",
            "side": "buy",
            "quantity": "3",
            "order_type": "limit",
            "limit_price": "250",
        },
    )
    desk.settle(2)
    desk.prices("AAPL", [102.0, 103.0])
    desk.settle(2)
    ids["msft_sell"] = place(desk, {"symbol": "MSFT", "side": "sell", "quantity": "2"})
    desk.prices("MSFT", [305.0])
    desk.settle(2)
    return ids


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    made = make_desk(tmp_path, strategies=[SMA], simulator=SLIPPAGE, risk_limits=LIMITS)
    yield made
    made.close()


def data_of(desk: Desk) -> dict[str, Any]:
    response = desk.http("GET", "dashboard/data")
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    result: dict[str, Any] = response.json()
    return result


def embedded_data(page: str) -> dict[str, Any]:
    found = re.search(
        r'<script id="dashboard-data" type="application/json">(.*?)</script>', page, re.S
    )
    assert found is not None
    result: dict[str, Any] = json.loads(found.group(1))
    return result


# -- the desk, over HTTP ------------------------------------------------------------------------


def test_the_data_shows_what_the_books_and_the_risk_entity_hold(desk: Desk) -> None:
    ids = trade_a_little(desk)
    data = data_of(desk)

    # AAPL: 10 bought at 101 + 5 bp = 101.05, marked at the last print, 103.
    # MSFT: 5 bought at 300.15, 2 sold at 305 - 5 bp = 304.85: (304.85 - 300.15) * 2 realised.
    assert data["positions"] == [
        {
            "symbol": "AAPL",
            "quantity": "10",
            "avg_price": "101.05",
            "mark": "103",
            "market_value": "1030.00",
            "realized_pnl": "0.00",
            "unrealized_pnl": "19.50",
            "fees": "0.00",
        },
        {
            "symbol": "MSFT",
            "quantity": "3",
            "avg_price": "300.15",
            "mark": "305",
            "market_value": "915.00",
            "realized_pnl": "9.40",
            "unrealized_pnl": "14.55",
            "fees": "0.00",
        },
    ]
    pnl = data["pnl"]
    assert (pnl["realized"], pnl["unrealized"], pnl["total"]) == ("9.40", "34.05", "43.45")
    # One point per fill, in the order the books hold them; the sale is the last and the
    # only one that realises anything.
    fills = desk.store.fills("paper")
    assert len(fills) == 3
    assert [p["realized"] for p in pnl["curve"]] == ["0.00", "0.00", "9.40"]
    assert pnl["curve"][-1]["ts"] == fills[-1].ts_filled.isoformat()

    [resting] = data["open_orders"]["orders"]
    assert data["open_orders"]["count"] == 1
    assert resting["client_order_id"] == f"{ids['resting']}:entry"
    assert (resting["order_type"], resting["limit_price"], resting["stop_price"]) == (
        "limit",
        "250",
        None,
    )
    assert (resting["side"], resting["quantity"], resting["filled_qty"]) == ("buy", "3", "0")
    assert resting["status"] in ("new", "accepted")

    # Only the strategy's order carries a tick-to-submit latency (manual orders have no tick).
    submitted = [
        r
        for r in desk.store.records("paper")
        if r.kind is AuditKind.ORDER_EVENT and r.payload.get("submit_latency_ms") is not None
    ]
    assert len(submitted) == 1
    latency_ms = round(float(submitted[0].payload["submit_latency_ms"]), 3)
    assert data["latency"]["count"] == 1
    assert data["latency"]["p50_ms"] == data["latency"]["p99_ms"] == latency_ms
    assert [p["client_order_id"] for p in data["latency"]["points"]] == [
        submitted[0].correlation["client_order_id"]
    ]

    slips = {p["client_order_id"].split(":")[0]: p for p in data["slippage"]["points"]}
    strategy = next(p for p in data["slippage"]["points"] if p["symbol"] == "AAPL")
    assert (strategy["benchmark_kind"], strategy["benchmark"], strategy["price"]) == (
        "signal",
        "101",
        "101.05",
    )
    assert (strategy["bps"], strategy["cost"]) == ("4.95", "0.50")
    # A manual market order is measured against the last trade when it was placed.
    assert (slips[ids["msft_buy"]]["benchmark_kind"], slips[ids["msft_buy"]]["bps"]) == (
        "reference",
        "5.00",
    )
    # Sold 4.85 above the reference: money made, so negative slippage.
    assert (slips[ids["msft_sell"]]["bps"], slips[ids["msft_sell"]]["cost"]) == ("-161.67", "-9.70")
    # 0.50 + 0.75 - 9.70 over 101 * 10 + 300 * 5 + 300 * 2 of reference notional.
    assert (data["slippage"]["cost"], data["slippage"]["avg_bps"]) == ("-8.45", "-27.17")
    assert (data["slippage"]["count"], data["slippage"]["unmeasured"]) == (3, 0)

    # The risk entity: positions at its last fill prices plus the resting order's reserve.
    entity = desk.engine.read_entity(("RiskEntity", "paper")).state
    assert isinstance(entity, dict) and len(entity["reservations"]) == 1
    uses = {u["limit"]: u for u in data["risk"]["utilisation"]}
    # MSFT: 3 * 304.85 + 3 * 250 reserved; AAPL: 10 * 101.05.
    assert uses["max_position_notional"] == {
        "limit": "max_position_notional",
        "scope": "symbol",
        "value": "20000",
        "used": "1664.55",
        "ratio": "0.0832",
        "detail": "MSFT",
    }
    assert (uses["max_gross_exposure"]["used"], uses["max_gross_exposure"]["ratio"]) == (
        "2675.05",
        "0.0268",
    )
    assert (uses["max_open_orders"]["used"], uses["max_open_orders"]["value"]) == ("1", "10")
    assert uses["max_orders_per_minute"]["used"] == "3"  # the three manual entries
    assert (uses["daily_loss_limit"]["used"], uses["daily_loss_limit"]["ratio"]) == ("0", "0.0000")
    assert (uses["max_order_quantity"]["used"], uses["max_order_quantity"]["value"]) == (
        None,
        "1000",
    )
    assert data["risk"]["entity_exists"] and data["risk"]["reservations"] == 1
    assert data["risk"]["realized_today"] == "9.40"
    assert data["kill_switch"]["halted"] is False


def test_the_kill_switch_shows_from_both_sides(desk: Desk) -> None:
    desk.prices("MSFT", [300.0])
    desk.settle()
    place(desk, {**MSFT_BUY, "quantity": "1"})
    desk.prices("MSFT", [300.0])
    desk.settle(2)
    reason = "drill </script><script>alert(1)</script>"
    response = desk.http(
        "POST", "killswitch", admin=True, json={"action": "halt", "reason": reason}
    )
    assert response.status_code == 202
    desk.settle(5)
    kill = data_of(desk)["kill_switch"]
    assert kill["halted"] is True and kill["reason"] == reason
    assert kill["entity"] == {"halted": True, "reason": reason}
    assert kill["books"]["halted"] is True and kill["books"]["reason"] == reason

    page = desk.http("GET", "dashboard")
    assert page.status_code == 200
    # The reason reaches the page only as escaped JSON: it cannot end the data element.
    assert "<script>alert(1)" not in page.text
    assert embedded_data(page.text)["kill_switch"]["reason"] == reason


def test_an_account_that_has_not_traded_shows_its_configured_limits(desk: Desk) -> None:
    data = data_of(desk)
    assert data["positions"] == [] and data["pnl"]["curve"] == []
    assert data["open_orders"] == {"count": 0, "orders": []}
    assert data["latency"] == {"count": 0, "p50_ms": None, "p99_ms": None, "points": []}
    assert data["slippage"]["count"] == 0 and data["slippage"]["avg_bps"] is None
    assert data["risk"]["entity_exists"] is False
    uses = {u["limit"]: u for u in data["risk"]["utilisation"]}
    assert uses["max_gross_exposure"]["value"] == "100000"
    assert uses["max_gross_exposure"]["used"] == "0"


def test_the_page_is_self_contained_and_locked_down(desk: Desk) -> None:
    desk.prices("AAPL", [100.0])
    desk.settle()
    first = desk.http("GET", "dashboard")
    second = desk.http("GET", "dashboard")
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("text/html")
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    assert first.headers["Cache-Control"] == "no-store"
    policy = first.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'self'"
    nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{16,})'", directives["script-src"])
    assert nonce is not None and directives["style-src"] == directives["script-src"]
    # Every inline script and style carries this response's nonce, and only this one.
    page = first.text
    tags = re.findall(r"<(script|style)\b([^>]*)>", page)
    assert len(tags) == 3
    for tag, attributes in tags:
        if 'type="application/json"' not in attributes:
            assert f'nonce="{nonce.group(1)}"' in attributes, tag
    assert nonce.group(1) not in second.text
    # Nothing is loaded from anywhere but the app itself.
    assert not re.search(r"https?:|//[a-z0-9]", page, re.I)
    assert not re.search(r"\b(src|href)\s*=", page)


def test_the_routes_need_the_function_key_and_refuse_unknown_parameters(desk: Desk) -> None:
    for path in ("dashboard", "dashboard/data"):
        assert requests.get(desk.url(path), timeout=10).status_code == 401
        assert desk.http("GET", path, params={"debug": "1"}).status_code == 400
    keyed = requests.get(desk.url("dashboard/data"), params={"code": FUNCTION_KEY}, timeout=10)
    assert keyed.status_code == 200


def test_no_setting_but_what_is_shown_reaches_the_dashboard(tmp_path: Path) -> None:
    canary = "canary-7f3a9c1e5b"
    made = make_desk(
        tmp_path,
        alpaca=AlpacaSettings(key_id=f"{canary}-id", secret=f"{canary}-secret"),
        archive_connection=f"DefaultEndpointsProtocol=https;AccountKey={canary}",
    )
    try:
        made.prices("AAPL", [100.0])
        made.settle()
        place(made, {"symbol": "AAPL", "side": "buy", "quantity": "1"})
        made.prices("AAPL", [100.0])
        made.settle(2)
        assert made.store.fills("paper")
        for path in ("dashboard", "dashboard/data"):
            text = made.http("GET", path).text
            assert canary not in text
            assert str(made.settings.books_path) not in text
    finally:
        made.close()


# -- the builders on their own ----------------------------------------------------------------


def fill(n: int, side: Side, quantity: str, price: str, fee: str = "0") -> Fill:
    return Fill(
        execution_id=f"int-{n}:entry@{quantity}",
        account="paper",
        symbol="AAPL",
        side=side,
        quantity=Decimal(quantity),
        price=Decimal(price),
        ts_filled=T0 + timedelta(minutes=n),
        client_order_id=f"int-{n}:entry",
        fee=Decimal(fee),
    )


def test_the_pnl_curve_realises_against_the_average_net_of_fees() -> None:
    fills = [
        fill(0, Side.BUY, "10", "100"),
        fill(1, Side.BUY, "10", "110"),  # average 105
        fill(2, Side.SELL, "5", "115", fee="1"),  # +50, -1 fee
        fill(3, Side.SELL, "15", "100"),  # -75
    ]
    curve = dashboard.pnl_curve(fills)
    assert [(p.ts, p.realized) for p in curve] == [
        (T0, Decimal(0)),
        (T0 + timedelta(minutes=1), Decimal(0)),
        (T0 + timedelta(minutes=2), Decimal(49)),
        (T0 + timedelta(minutes=3), Decimal(-26)),
    ]
    position = Position("paper", "AAPL")
    for each in fills:
        position = position.apply(each)
    assert curve[-1].realized == position.realized_pnl - position.fees


def test_the_pnl_curve_is_bounded_and_keeps_its_level_outside_the_window() -> None:
    fills = [fill(0, Side.BUY, "1", "100"), fill(1, Side.SELL, "1", "130")]
    fills += [
        replace(
            fill(n, Side.BUY if n % 2 else Side.SELL, "1", "100"),
            ts_filled=T0 + timedelta(days=2, minutes=n),
        )
        for n in range(2, 1002)
    ]
    curve = dashboard.pnl_curve(fills, window=timedelta(hours=1), limit=50)
    assert len(curve) == 50
    assert curve[0].ts >= fills[-1].ts_filled - timedelta(hours=1)
    assert curve[-1].ts == fills[-1].ts_filled
    # The 30 realised before the window still counts: the level is the account's.
    assert min(p.realized for p in curve) >= Decimal(30)


def test_downsampling_keeps_the_ends_and_the_bound() -> None:
    assert dashboard.downsample(list(range(5)), 10) == [0, 1, 2, 3, 4]
    picked = dashboard.downsample(list(range(1000)), 7)
    assert len(picked) == 7 and picked[0] == 0 and picked[-1] == 999
    assert picked == sorted(picked)


def test_limit_use_counts_reservations_and_only_the_last_minute_of_orders() -> None:
    now = T0 + timedelta(minutes=5)
    state = RiskState(
        "paper",
        limits=RiskLimits(
            max_position_notional=Decimal(10_000),
            max_gross_exposure=Decimal(20_000),
            max_orders_per_minute=10,
            daily_loss_limit=Decimal(200),
            price_band_pct=Decimal(5),
        ),
        realized_today=Decimal(-50),
        positions={
            "AAPL": Position("paper", "AAPL", Decimal(10), Decimal(100)),
            "MSFT": Position("paper", "MSFT", Decimal(-4), Decimal(300)),
        },
        last_price={"AAPL": Decimal(110)},
        order_times=[now - timedelta(seconds=90), now - timedelta(seconds=30), now],
    )
    state.reserve(
        ReserveRequest(
            "int-x",
            (ExposureLeg("NVDA", Side.BUY, Decimal(20), Decimal(500)),),
            now - timedelta(seconds=10),
        )
    )
    uses = {u.name: u for u in state.limit_uses(now)}
    # NVDA's 10,000 reserved is the largest: AAPL holds 1,100 at 110, MSFT 1,200 at cost.
    assert (uses["max_position_notional"].used, uses["max_position_notional"].detail) == (
        Decimal(10_000),
        "NVDA",
    )
    assert uses["max_position_notional"].ratio == Decimal(1)
    assert uses["max_gross_exposure"].used == Decimal(1100 + 1200 + 10_000)
    # 90 s ago is outside the window; the reservation added one more inside it.
    assert uses["max_orders_per_minute"].used == Decimal(3)
    assert uses["daily_loss_limit"].used == Decimal(50)
    assert uses["daily_loss_limit"].ratio == Decimal("0.25")
    assert uses["price_band_pct"].used is None and uses["price_band_pct"].scope == "order"
    assert "max_open_orders" not in uses  # not configured, not shown


def record(seq: int, kind: AuditKind, event_id: str, payload: dict[str, Any]) -> AuditRecord:
    return AuditRecord("paper", seq, T0, kind, event_id, {"client_order_id": event_id}, payload)


def test_latency_figures_are_the_session_reports() -> None:
    records = [
        record(i, AuditKind.ORDER_EVENT, f"int-{i}:entry:submitted", {"submit_latency_ms": v})
        for i, v in enumerate(range(1, 101))
    ]
    records.append(record(100, AuditKind.ORDER_EVENT, "int-x:tp:submitted", {"leg": {}}))
    figures = dashboard.latency(records, limit=10)
    assert (figures.count, figures.p50_ms, figures.p99_ms) == (100, 50.5, 99.0)
    assert [p.ms for p in figures.points] == [float(v) for v in range(91, 101)]


class _Records:
    """Just enough of the books for a lookup that misses the window."""

    def __init__(self, records: list[AuditRecord]) -> None:
        self.records = {r.event_id: r for r in records}
        self.asked: list[str] = []

    def find_event(self, partition: str, event_id: str) -> AuditRecord | None:
        self.asked.append(event_id)
        return self.records.get(event_id)


def test_slippage_compares_entries_with_the_signal_and_exits_with_their_own_price() -> None:
    intent = {"source": "sma_cross:AAPL", "reference_prices": {"AAPL": "100"}}
    window = [record(0, AuditKind.INTENT, "int-1:received", {"intent": intent})]
    older = [
        record(1, AuditKind.ORDER_EVENT, "int-1:sl:submitted", {"leg": {"stop_price": "95"}}),
    ]
    books = _Records(older)
    lookup = dashboard.AuditLookup(books, "paper", window)  # type: ignore[arg-type]
    entry = replace(fill(1, Side.BUY, "10", "100.20"), client_order_id="int-1:entry")
    stop = replace(fill(2, Side.SELL, "10", "94.50"), client_order_id="int-1:sl")
    flatten = replace(fill(3, Side.SELL, "1", "94"), client_order_id="flatten-paper-1:close")
    result = dashboard.slippage([entry, stop, flatten], lookup)
    entry_slip, stop_slip = result.points
    assert (entry_slip.benchmark_kind, entry_slip.bps, entry_slip.cost) == (
        "signal",
        Decimal("20.00"),
        Decimal("2.00"),
    )
    # A stop sold 0.50 below its trigger: a cost.
    assert (stop_slip.benchmark_kind, stop_slip.bps, stop_slip.cost) == (
        "stop",
        Decimal("52.63"),
        Decimal("5.00"),
    )
    assert result.unmeasured == 1
    # The intent came from the window; only what the window lacked was looked up.
    assert "int-1:received" not in books.asked
    assert "int-1:sl:submitted" in books.asked
