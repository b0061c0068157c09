"""Alerts from the service layer: what to tell the operators' channel, and when.

The notifier (``Services.alerts``) never blocks and never raises: it queues, deduplicates,
rate-limits and retries on a thread of its own. Spikes (tick-to-submit latency, the share
of dead-lettered events) are judged by one detector per metric and process, each behind a
lock since activities run on a thread pool.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from adapters.bootstrap import Services
from domain.alerts import AlertKind, SpikeDetector, spike_alert

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
