"""Logs, metrics and traces.

**Logs** carry correlation ids (intent, orchestration instance, client order id, invocation,
account, symbol) set with ``correlated(...)`` for the work in hand: every log record made
inside it gets them as attributes, whoever formats it (the JSON lines of devhost and the
feed bridge, or Application Insights' custom dimensions in Azure).

**Metrics and traces** go through OpenTelemetry. With ``APPLICATIONINSIGHTS_CONNECTION_STRING``
set they are exported to Application Insights by ``azure-monitor-opentelemetry`` (signed in
with the app's identity when ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` says AAD);
otherwise spans go to the console (``OTEL_TRACES_EXPORTER=none`` silences them). Either way
the metrics are also readable as Prometheus text (``GET /api/metrics``): one instance's
view, since each instance counts its own.

A trace follows a tick: the ``ticks`` trigger's span, the trade request's ``trace`` carrier
(W3C ``traceparent``), the submit activity's span, and the broker call inside it. The
orchestration itself makes no spans: it replays.

The SDKs are imported on first use, not at import time: cold starts stay as they were.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("desk.observability")

# -- correlation ----------------------------------------------------------------------------

CORRELATION_FIELDS = (
    "intent_id",
    "instance_id",
    "client_order_id",
    "invocation_id",
    "account",
    "symbol",
)
_NONE: Mapping[str, str] = MappingProxyType({})
_correlation: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "desk_correlation", default=_NONE
)


@contextlib.contextmanager
def correlated(**ids: str | None) -> Iterator[None]:
    """Log records made inside carry these ids (with any set further out)."""
    merged = {**_correlation.get(), **{k: str(v) for k, v in ids.items() if v is not None}}
    token = _correlation.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _correlation.reset(token)


def correlation() -> Mapping[str, str]:
    return _correlation.get()


_base_factory = logging.getLogRecordFactory()


PREFIX = "desk_"


def _record_with_correlation(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    for name, value in _correlation.get().items():
        setattr(record, PREFIX + name, value)
    return record


# A record factory, not a filter: filters on a logger do not apply to its children's records,
# and a handler's filter would miss the handlers the Functions worker installs. The ids go
# under prefixed names: the factory runs before a call's ``extra`` is applied, and logging
# refuses an ``extra`` key the record already has.
logging.setLogRecordFactory(_record_with_correlation)

_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the correlation ids and any
    other ``extra`` the call gave."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and not name.startswith(("_", PREFIX)):
                entry[name] = value
        for name, value in vars(record).items():
            if name.startswith(PREFIX):  # an explicit ``extra`` of the same id wins
                entry.setdefault(name.removeprefix(PREFIX), value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_to_stderr(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Root logging for a process of its own (devhost, the feed bridge)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# -- metrics --------------------------------------------------------------------------------


class Kind(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"


@dataclass(frozen=True)
class Instrument:
    kind: Kind
    unit: str
    description: str


INSTRUMENTS: dict[str, Instrument] = {
    "desk.ticks": Instrument(Kind.COUNTER, "{event}", "Market events the ticks trigger took"),
    "desk.dead_letters": Instrument(Kind.COUNTER, "{event}", "Events refused and dead-lettered"),
    "desk.duplicates": Instrument(Kind.COUNTER, "{event}", "Events dropped as already seen"),
    "desk.signals": Instrument(Kind.COUNTER, "{signal}", "Signals the strategies gave"),
    "desk.intents": Instrument(Kind.COUNTER, "{intent}", "Trade orchestrations started"),
    "desk.risk_denials": Instrument(Kind.COUNTER, "{denial}", "Risk denials, by reason"),
    "desk.orders": Instrument(Kind.COUNTER, "{order}", "Orders reaching a status, by status"),
    "desk.fills": Instrument(Kind.COUNTER, "{fill}", "Executions booked"),
    "desk.tick_to_submit": Instrument(
        Kind.HISTOGRAM, "ms", "From the tick behind a signal to its order at the broker"
    ),
    "desk.submit_to_fill": Instrument(
        Kind.HISTOGRAM, "ms", "From an order's booking to each of its executions"
    ),
    # Histograms take no negative values: a fill better than its reference is an improvement.
    "desk.slippage": Instrument(
        Kind.HISTOGRAM, "bp", "How much worse a fill is than the price it was decided at"
    ),
    "desk.price_improvement": Instrument(
        Kind.HISTOGRAM, "bp", "How much better a fill is than the price it was decided at"
    ),
    "desk.activity.duration": Instrument(Kind.HISTOGRAM, "ms", "Activity run time"),
    "desk.activity.retries": Instrument(
        Kind.COUNTER, "{failure}", "Activity runs that raised (each is retried by its policy)"
    ),
    "desk.risk.utilisation": Instrument(
        Kind.GAUGE, "1", "Fraction of each risk limit in use, by account and limit"
    ),
    "desk.halted": Instrument(Kind.GAUGE, "1", "1 while the account is halted (kill switch)"),
}


class Telemetry:
    """The process's instruments and tracer, set up once (``telemetry()``)."""

    def __init__(self, span_exporter: SpanExporter | None = None) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        # A registry per Telemetry, not prometheus_client's global one: a test or a second
        # Telemetry never counts into another's.
        self.registry = CollectorRegistry()
        reader = PrometheusMetricReader(registry=self.registry)
        self._meter, self._tracer = _providers(reader, span_exporter)
        self._instruments: dict[str, Any] = {}
        self._gauges: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._lock = threading.Lock()
        for name, spec in INSTRUMENTS.items():
            if spec.kind is Kind.COUNTER:
                self._instruments[name] = self._meter.create_counter(
                    name, unit=spec.unit, description=spec.description
                )
            elif spec.kind is Kind.HISTOGRAM:
                self._instruments[name] = self._meter.create_histogram(
                    name, unit=spec.unit, description=spec.description
                )
            else:
                self._gauges[name] = {}
                self._meter.create_observable_gauge(
                    name,
                    callbacks=[self._observer(name)],
                    unit=spec.unit,
                    description=spec.description,
                )

    def _observer(self, name: str) -> Any:
        from opentelemetry.metrics import Observation

        def observe(_options: Any) -> list[Observation]:
            with self._lock:
                values = dict(self._gauges[name])
            return [Observation(value, dict(key)) for key, value in values.items()]

        return observe

    def count(self, name: str, value: float = 1, **attributes: str) -> None:
        if value:
            self._instruments[name].add(value, attributes)

    def record(self, name: str, value: float, **attributes: str) -> None:
        self._instruments[name].record(value, attributes)

    def gauge(self, name: str, value: float, **attributes: str) -> None:
        with self._lock:
            self._gauges[name][tuple(sorted(attributes.items()))] = value

    def prometheus(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    # -- traces ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def span(
        self, name: str, *, carrier: Mapping[str, str] | None = None, **attributes: str
    ) -> Iterator[Span]:
        """A span, child of the current one, or of ``carrier``'s trace when given (a span
        of another process: the trigger that started an orchestration)."""
        from opentelemetry import context, propagate

        parent = propagate.extract(dict(carrier)) if carrier else context.get_current()
        with self._tracer.start_as_current_span(
            name, context=parent, attributes=attributes
        ) as current:
            yield current

    @staticmethod
    def carrier() -> dict[str, str]:
        """The current span's W3C trace context, to hand to work done elsewhere."""
        from opentelemetry import propagate

        found: dict[str, str] = {}
        propagate.inject(found)
        return found


def _providers(reader: Any, span_exporter: SpanExporter | None) -> tuple[Meter, Tracer]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", "trading-desk")}
    )
    connection = os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    if connection and span_exporter is None:
        return _azure_monitor(connection, reader, resource)
    tracer_provider = TracerProvider(resource=resource)
    if span_exporter is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    elif os.environ.get("OTEL_TRACES_EXPORTER", "console").strip().lower() == "console":
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    # Providers of our own, not the global ones: a host that set its own keeps them.
    return meter_provider.get_meter("desk"), tracer_provider.get_tracer("desk")


def _azure_monitor(connection: str, reader: Any, resource: Any) -> tuple[Meter, Tracer]:
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry import metrics, trace

    options: dict[str, Any] = {
        "connection_string": connection,
        "metric_readers": [reader],
        "resource": resource,
        "logger_name": "desk",
    }
    authentication = os.environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "")
    if "AAD" in authentication:
        # Local authentication is off on the resource: sign in with the app's identity.
        from azure.identity import ManagedIdentityCredential

        client_id = authentication.partition("ClientId=")[2].split(";")[0].strip() or None
        options["credential"] = ManagedIdentityCredential(client_id=client_id)
    configure_azure_monitor(**options)
    return metrics.get_meter("desk"), trace.get_tracer("desk")


_telemetry: Telemetry | None = None
_telemetry_lock = threading.Lock()


def telemetry() -> Telemetry:
    global _telemetry
    if _telemetry is None:
        with _telemetry_lock:
            if _telemetry is None:
                _telemetry = Telemetry()
    return _telemetry


def use_telemetry(replacement: Telemetry | None) -> None:
    """Tests: record into ``replacement`` (None: set up afresh on next use)."""
    global _telemetry
    _telemetry = replacement
