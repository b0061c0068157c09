"""Alerts to a chat webhook (Slack, Microsoft Teams) without ever holding up trading.

``WebhookNotifier.notify`` decides in microseconds (deduplication and the rate limit of
``domain.alerts.AlertGate``) and hands what is to be sent to one background thread through
a bounded queue; it never blocks and never raises. The thread POSTs each alert, retries
timeouts, connection failures, 429 (waiting what Retry-After asks) and 5xx with exponential
backoff and jitter, and gives up after a bounded number of attempts with an error in the log.

The webhook URL is a credential (whoever has it can post to the channel), so it never
reaches a log record, an exception message or a repr: only :func:`redact_url`'s form does.
That is also why this module speaks ``http.client`` directly: urllib3 (under ``requests``)
logs request paths at DEBUG, and HTTP-client instrumentation records full URLs in spans.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import logging
import math
import queue
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from domain.alerts import Alert, AlertGate, AlertSink, Decision, GateConfig, WebhookFormat
from domain.alerts import webhook_payload as build_payload
from domain.errors import ValidationError
from domain.ports import Clock

log = logging.getLogger("desk.alerts")

# Plain http is accepted only for a receiver on this machine (tests, a local relay).
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
RESPONSE_READ_LIMIT = 4096


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def validate_webhook_url(url: str, field_name: str = "ALERT_WEBHOOK_URL") -> str:
    """The URL, if it is one an alert may be sent to. Reasons never repeat the URL."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- read only so that a malformed port is refused here
    except ValueError:
        raise ValidationError(field_name, "is not a valid URL") from None
    host = parts.hostname or ""
    if not host:
        raise ValidationError(field_name, "must include a host")
    if parts.scheme == "https":
        return text
    if parts.scheme == "http" and host in LOCAL_HOSTS:
        return text
    if parts.scheme == "http":
        raise ValidationError(field_name, "must use https:// (http only for 127.0.0.1/localhost)")
    raise ValidationError(field_name, "must be an https:// URL")


def redact_url(url: str) -> str:
    """``scheme://host[:port]/***``: enough to tell which receiver, nothing to post with."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<webhook>"
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}{'' if port is None else f':{port}'}/***"


def _setting_int(environ: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    text = environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise ValidationError(name, f"must be a whole number, got {text.strip()[:20]!r}") from None
    if value < minimum:
        raise ValidationError(name, f"must be at least {minimum}")
    return value


@dataclass(frozen=True)
class AlertSettings:
    """``ALERT_WEBHOOK_URL`` (unset: alerts are only logged), ``ALERT_DEDUPE_S`` (0 turns
    deduplication off), ``ALERT_MAX_PER_MIN`` and ``ALERT_WEBHOOK_FORMAT``."""

    webhook_url: str | None = field(default=None, repr=False)
    dedupe_s: int = 300
    max_per_min: int = 10
    format: WebhookFormat = WebhookFormat.TEXT

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AlertSettings:
        raw = (environ.get("ALERT_WEBHOOK_URL") or "").strip()
        url = validate_webhook_url(raw) if raw else None
        fmt_text = (environ.get("ALERT_WEBHOOK_FORMAT") or WebhookFormat.TEXT.value).strip()
        try:
            fmt = WebhookFormat(fmt_text.lower())
        except ValueError:
            raise ValidationError(
                "ALERT_WEBHOOK_FORMAT", f"must be text, slack or teams, got {fmt_text[:20]!r}"
            ) from None
        return cls(
            webhook_url=url,
            dedupe_s=_setting_int(environ, "ALERT_DEDUPE_S", 300, minimum=0),
            max_per_min=_setting_int(environ, "ALERT_MAX_PER_MIN", 10, minimum=1),
            format=fmt,
        )


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one alert is tried: ``max_attempts`` POSTs in all, ``timeout_s`` for each
    connect and read, backoff ``base_delay_s x 2^n`` capped at ``max_delay_s`` with jitter
    (half fixed, half random, so senders that failed together do not retry together). A
    Retry-After is waited as asked, up to ``max_retry_after_s``."""

    max_attempts: int = 5
    timeout_s: float = 5.0
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValidationError("max_attempts", "must be at least 1")
        for name in ("timeout_s", "base_delay_s", "max_delay_s", "max_retry_after_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValidationError(name, "must be greater than zero")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class _Attempt:
    delivered: bool
    retryable: bool
    problem: str = ""
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class _Job:
    alert: Alert
    repeats: int


_WAKE = object()  # a new summary may be due: recompute the wait
_STOP = object()


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), None if absent
    or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class NullNotifier:
    """No webhook configured: each alert is one log line at info, and nothing else."""

    def notify(self, alert: Alert) -> None:
        try:
            log.info(
                "alert (no webhook configured): [%s] %s %s",
                alert.severity.value,
                alert.kind.value,
                alert.title,
            )
        except Exception:  # never let an alert break its caller
            return

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float = 5.0) -> None:
        return None


class WebhookNotifier:
    """Sends alerts to one webhook from a background daemon thread (see the module doc).

    ``clock`` gives the time the gate and Retry-After dates are read against; ``sleep``
    waits between attempts (tests pass one that records and returns at once); ``rng`` is
    the jitter's source. ``flush`` waits for what is queued or in flight, not for a summary
    the rate limit has not yet let out; ``close`` sends that summary anyway, then stops.
    """

    def __init__(
        self,
        url: str,
        *,
        gate: GateConfig | None = None,
        fmt: WebhookFormat = WebhookFormat.TEXT,
        retry: RetryPolicy | None = None,
        queue_size: int = 100,
        clock: Clock | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._url = validate_webhook_url(url, "url")
        parts = urlsplit(self._url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.redacted = redact_url(self._url)
        # Every fragment of the URL that could be secret, longest first, for scrubbing text
        # (an exception message) before it is logged.
        secrets = {self._url, self._target, parts.path, parts.query, parts.netloc}
        self._secrets = sorted((s for s in secrets if len(s) > 1), key=len, reverse=True)
        self._gate = AlertGate(gate)
        self.format = fmt
        self.retry = retry or RetryPolicy()
        self._clock: Clock = clock or _UtcClock()
        self._stopping = threading.Event()
        self._sleep: Callable[[float], object] = sleep or self._stopping.wait
        self._rng = rng or random.Random()
        self._ssl = ssl.create_default_context() if self._https else None
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()  # the gate and the counters
        self._idle = threading.Condition()
        self._outstanding = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.redacted!r}, format={self.format.value!r})"

    @property
    def duplicates(self) -> int:
        with self._lock:
            return self._gate.duplicates

    @property
    def held(self) -> int:
        """Alerts the rate limit folded into summaries so far."""
        with self._lock:
            return self._gate.held_total

    # -- the caller's side: never blocks, never raises --------------------------------------

    def notify(self, alert: Alert) -> None:
        try:
            self._notify(alert)
        except Exception as error:
            with contextlib.suppress(Exception):
                log.error("alert not queued: unexpected %s", type(error).__name__)

    def _notify(self, alert: object) -> None:
        # Typed callers cannot pass anything else; untyped ones (a durable payload) can.
        if not isinstance(alert, Alert):
            log.error("alert not queued: expected an Alert, got %s", type(alert).__name__)
            return
        if self._closed:
            log.warning("alert after close, not sent: [%s] %s", alert.kind.value, alert.title)
            return
        self._ensure_started()
        now = self._clock.now()
        with self._lock:
            admission = self._gate.admit(alert, now)
        if admission.decision is Decision.DUPLICATE:
            log.debug("alert deduplicated: %s %s", alert.kind.value, alert.title)
            return
        if admission.decision is Decision.HELD:
            log.info("alert held by the rate limit: %s %s", alert.kind.value, alert.title)
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_WAKE)
            return
        self._enter()
        try:
            self._queue.put_nowait(_Job(alert, admission.repeats))
        except queue.Full:
            self._leave()
            with self._lock:
                self._gate.note_dropped(alert, now)
                self.dropped += 1
            log.warning(
                "alert queue full; counted for the next summary: [%s] %s",
                alert.kind.value,
                alert.title,
            )

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
                self._thread.start()

    # -- waiting ----------------------------------------------------------------------------

    def _enter(self) -> None:
        with self._idle:
            self._outstanding += 1

    def _leave(self) -> None:
        with self._idle:
            self._outstanding -= 1
            if self._outstanding <= 0:
                self._idle.notify_all()

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._outstanding > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued and the last summary within ``timeout``, then stop; what
        is still being retried at the deadline is abandoned (and logged)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            self._stopping.set()
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=1.0)
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self._stopping.set()
            thread.join(2.0)

    # -- the sending thread -----------------------------------------------------------------

    def _summary_wait(self) -> float | None:
        now = self._clock.now()
        with self._lock:
            due = self._gate.next_summary_at(now)
        if due is None:
            return None
        # Capped so that a clock that jumps cannot park the thread for long.
        return min(5.0, max(0.0, (due - now).total_seconds()))

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._summary_wait())
            except queue.Empty:
                item = _WAKE
            if item is _STOP:
                self._guarded(functools.partial(self._send_summary, force=True))
                self._abandon_queued()
                return
            if isinstance(item, _Job):
                try:
                    self._guarded(functools.partial(self._deliver, item))
                finally:
                    self._leave()
            self._guarded(functools.partial(self._send_summary, force=False))

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run one step of the thread; a surprise fails that alert, never the thread (a dead
        thread would silently swallow every alert after it)."""
        try:
            step()
        except Exception as error:
            with self._lock:
                self.failed += 1
            log.error(
                "alert webhook %s: unexpected %s while sending",
                self.redacted,
                type(error).__name__,
            )

    def _abandon_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job):
                log.error(
                    "alert abandoned at shutdown (webhook %s): [%s] %s",
                    self.redacted,
                    item.alert.kind.value,
                    item.alert.title,
                )
                self._leave()

    def _send_summary(self, *, force: bool) -> None:
        with self._lock:
            summary = self._gate.take_summary(self._clock.now(), force=force)
        if summary is None:
            return
        self._enter()
        try:
            self._deliver(_Job(summary, 0))
        finally:
            self._leave()

    def _deliver(self, job: _Job) -> None:
        alert = job.alert
        try:
            body = json.dumps(
                build_payload(alert, self.format, repeats=job.repeats, dedupe_s=self._dedupe_s()),
                ensure_ascii=False,
            ).encode("utf-8")
        except Exception as error:  # a payload that cannot be built will never be sent
            self._gave_up(alert, 0, f"payload: {type(error).__name__}")
            return
        attempts = 0
        while True:
            attempts += 1
            result = self._attempt(body)
            if result.delivered:
                with self._lock:
                    self.sent += 1
                log.debug(
                    "alert delivered on attempt %d: [%s] %s",
                    attempts,
                    alert.kind.value,
                    alert.title,
                )
                return
            if not result.retryable:
                self._gave_up(alert, attempts, f"{result.problem} (not retryable)")
                return
            if attempts >= self.retry.max_attempts:
                self._gave_up(alert, attempts, result.problem)
                return
            if self._stopping.is_set():
                self._gave_up(alert, attempts, f"{result.problem}; shutting down")
                return
            if result.retry_after_s is not None:
                delay = min(result.retry_after_s, self.retry.max_retry_after_s)
            else:
                delay = self.retry.backoff(attempts, self._rng)
            log.info(
                "alert webhook %s: %s; retry %d in %.1f s",
                self.redacted,
                result.problem,
                attempts,
                delay,
            )
            self._sleep(delay)
            if self._stopping.is_set():
                self._gave_up(alert, attempts, f"{result.problem}; shutting down")
                return

    def _dedupe_s(self) -> float:
        return self._gate.config.dedupe_s

    def _gave_up(self, alert: Alert, attempts: int, problem: str) -> None:
        with self._lock:
            self.failed += 1
        log.error(
            "alert not delivered to webhook %s after %d attempt(s): %s; alert [%s] %s: %s",
            self.redacted,
            attempts,
            self._scrub(problem),
            alert.severity.value,
            alert.kind.value,
            alert.title,
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _attempt(self, body: bytes) -> _Attempt:
        connection: http.client.HTTPConnection
        timeout = self.retry.timeout_s
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._ssl
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            connection.request(
                "POST",
                self._target,
                body=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
            )
            response = connection.getresponse()
            response.read(RESPONSE_READ_LIMIT)
            status = response.status
            retry_after = parse_retry_after(response.getheader("Retry-After"), self._clock.now())
        except TimeoutError:
            return _Attempt(False, True, f"no answer within {timeout:g} s")
        except (OSError, http.client.HTTPException) as error:
            # The exception's text can carry the host and path: only its type is kept.
            return _Attempt(False, True, f"connection failed ({type(error).__name__})")
        finally:
            connection.close()
        if 200 <= status < 300:
            return _Attempt(True, False)
        if status == 429 or status == 408 or status >= 500:
            return _Attempt(False, True, f"HTTP {status}", retry_after)
        # 400 (a payload the receiver refuses), 403/404/410 (a revoked webhook, an archived
        # channel): the same request will get the same answer.
        return _Attempt(False, False, f"HTTP {status}")


def build_notifier(settings: AlertSettings) -> AlertSink:
    """A :class:`WebhookNotifier` when a webhook URL is configured, else a
    :class:`NullNotifier`. The rate limit counts per minute, as the setting says."""
    if settings.webhook_url is None:
        return NullNotifier()
    return WebhookNotifier(
        settings.webhook_url,
        gate=GateConfig(
            dedupe_s=float(settings.dedupe_s),
            max_per_window=settings.max_per_min,
            window_s=60.0,
        ),
        fmt=settings.format,
    )


def notifier_from_environ(environ: Mapping[str, str]) -> AlertSink:
    """The alert sink the settings describe (see :class:`AlertSettings`); raises
    ``ValidationError`` naming the setting when one is wrong."""
    return build_notifier(AlertSettings.from_environ(environ))
