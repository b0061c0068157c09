"""Alerts from the service layer: what to tell the operators' channel, and when.

The notifier (``Services.alerts``) never blocks and never raises: it queues, deduplicates,
rate-limits and retries on a thread of its own. Spikes (tick-to-submit latency, the share
of dead-lettered events) are judged by one detector per metric and process, each behind a
lock since activities run on a thread pool.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from adapters.bootstrap import Services
from domain.alerts import (
    AlertKind,
    SpikeDetector,
    flatten_incomplete_alert,
    risk_breach_alert,
    spike_alert,
    stale_fill_alert,
    trade_failed_alert,
)
from domain.audit import AuditKind, Entry
from domain.risk import STALE_FILL_SUFFIX, DenialCode

LATENCY_METRIC = "tick_to_submit_ms"
ERROR_METRIC = "dead_letter_share"
# Below these nothing is a spike, however quiet the baseline: 2 s to submit, 5% refused.
FLOORS = {LATENCY_METRIC: 2_000.0, ERROR_METRIC: 0.05}
KINDS = {LATENCY_METRIC: AlertKind.LATENCY_SPIKE, ERROR_METRIC: AlertKind.ERROR_RATE}
UNITS = {LATENCY_METRIC: "ms", ERROR_METRIC: ""}


@dataclass
class _Watch:
    detector: SpikeDetector
    lock: threading.Lock = field(default_factory=threading.Lock)


_create = threading.Lock()


def observe(svc: Services, metric: str, value: float, *, ts: datetime) -> None:
    """One sample of ``metric``; an alert when a spike starts or ends."""
    watch = svc.spikes.get(metric)
    if watch is None:
        with _create:
            watch = svc.spikes.setdefault(metric, _Watch(SpikeDetector(floor=FLOORS[metric])))
    with watch.lock:
        signal = watch.detector.observe(value)
    if signal is not None:
        account = svc.settings.account
        svc.alerts.notify(
            spike_alert(KINDS[metric], account, metric, signal, ts=ts, unit=UNITS[metric])
        )


def from_audit(svc: Services, entries: list[Entry], *, ts: datetime) -> None:
    """Alerts for audited events worth a person's attention: a risk limit denying orders
    (a halt is announced by the kill switch itself), a trade that failed, a flatten that
    left orders open, a fill the risk entity refused as stale."""
    account = svc.settings.account
    for item in entries:
        payload = item.payload or {}
        if item.kind is AuditKind.RISK_DECISION and not payload.get("approved"):
            for reason in payload.get("reasons") or []:
                if not isinstance(reason, Mapping) or reason.get("code") == DenialCode.HALTED:
                    continue
                svc.alerts.notify(
                    risk_breach_alert(
                        account,
                        code=str(reason.get("code")),
                        message=str(reason.get("message") or ""),
                        ts=ts,
                    )
                )
        elif item.kind is AuditKind.INTENT and item.event_id.endswith(":failed"):
            svc.alerts.notify(
                trade_failed_alert(
                    account,
                    intent_id=item.event_id.removesuffix(":failed"),
                    error=str(payload.get("error") or ""),
                    ts=ts,
                )
            )
        elif item.kind is AuditKind.ALERT and item.event_id.endswith(STALE_FILL_SUFFIX):
            svc.alerts.notify(
                stale_fill_alert(
                    account,
                    execution_id=str(payload.get("execution_id") or ""),
                    client_order_id=str(payload.get("client_order_id") or ""),
                    forgotten_through=str(payload.get("forgotten_through") or ""),
                    ts=ts,
                )
            )
        elif (
            item.kind is AuditKind.ALERT
            and item.event_id.endswith(":flattened")
            and payload.get("closed") is False
        ):
            svc.alerts.notify(
                flatten_incomplete_alert(
                    account,
                    reason=str(payload.get("reason") or "flatten"),
                    open_orders={"orders": payload.get("orders")},
                    ts=ts,
                )
            )
