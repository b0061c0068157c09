"""The session report ``make run`` prints: what the desk did, from its own books."""

from __future__ import annotations

import statistics
from collections import Counter
from decimal import Decimal

from adapters.bootstrap import Services, services
from domain import audit
from domain.audit import AuditKind
from domain.serde import dec_str


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def session_report(svc: Services | None = None) -> str:
    svc = svc or services()
    store = svc.store
    account = svc.settings.account
    records = store.records(account)
    kinds = Counter(record.kind for record in records)
    ingest = store.records("ingest")
    intents = [
        r for r in records if r.kind is AuditKind.INTENT and r.event_id.endswith(":received")
    ]
    outcomes = Counter(
        r.event_id.rsplit(":", 1)[1]
        for r in records
        if r.kind is AuditKind.INTENT and not r.event_id.endswith(":received")
    )
    denials = Counter(
        reason["code"]
        for r in records
        if r.kind is AuditKind.RISK_DECISION and not r.payload.get("approved")
        for reason in r.payload.get("reasons") or []
    )
    stale = sum(1 for r in records if r.kind is AuditKind.SIGNAL and "stale" in r.payload)
    orders = store.all_orders()
    by_state = Counter(order.status.value for order in orders)
    latencies = [
        float(r.payload["submit_latency_ms"])
        for r in records
        if r.kind is AuditKind.ORDER_EVENT and r.payload.get("submit_latency_ms") is not None
    ]
    lines = [
        "session report",
        f"  account              {account}",
        f"  signals              {kinds[AuditKind.SIGNAL]}"
        + (f" ({stale} stale, not traded)" if stale else ""),
        f"  dead-lettered events {sum(1 for r in ingest if r.kind is AuditKind.DEAD_LETTER)}",
        f"  intents              {len(intents)}",
        "  outcomes             "
        + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none"),
        "  risk denials         "
        + (", ".join(f"{k} {v}" for k, v in sorted(denials.items())) or "none"),
        f"  orders               {len(orders)}"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(by_state.items()))})" if orders else ""),
        f"  fills                {kinds[AuditKind.FILL]}",
    ]
    if latencies:
        lines.append(
            f"  tick-to-submit       p50 {statistics.median(latencies):.2f} ms, "
            f"p99 {percentile(latencies, 0.99):.2f} ms over {len(latencies)} orders"
        )
    realized = unrealized = Decimal(0)
    lines.append("  positions")
    for position in store.positions(account):
        mark = svc.broker.last_price(position.symbol) or position.avg_price
        open_pnl = position.unrealized_pnl(mark)
        realized += position.realized_pnl - position.fees
        unrealized += open_pnl
        lines.append(
            f"    {position.symbol:<6} qty {dec_str(position.quantity):>6}  "
            f"realised {dec_str(position.realized_pnl.quantize(Decimal('0.01'))):>10}  "
            f"open {dec_str(open_pnl.quantize(Decimal('0.01'))):>10}"
        )
    lines.append(
        f"  P&L                  realised {dec_str(realized.quantize(Decimal('0.01')))}, "
        f"open {dec_str(unrealized.quantize(Decimal('0.01')))}"
    )
    broken = [p for p in (account, "ingest") if audit.verify(store.records(p)) is not None]
    lines.append(
        f"  audit chain          {len(records) + len(ingest)} records, "
        + ("verified" if not broken else f"BROKEN in {', '.join(broken)}")
    )
    lines.append(f"  books                {svc.settings.books_path}")
    return "\n".join(lines)


def print_session_report() -> None:
    print(session_report(), flush=True)
