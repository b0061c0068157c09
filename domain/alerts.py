"""Operational alerts: what is worth telling a human, and the pure policy for telling them.

An :class:`Alert` is a value. :class:`AlertGate` decides, given the time, whether an alert
goes out now, is a repeat of one sent recently (deduplicated and counted), or is held back by
the rate limit and folded into one summary. :func:`webhook_payload` turns an alert into the
JSON body a chat webhook takes. :class:`SpikeDetector` turns a stream of latencies or error
counts into "a spike started" / "it ended" edges, so one spike alerts once.

Nothing here does I/O or reads a clock: the adapter (``adapters.alert_webhook``) supplies
the time and does the sending.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, Self

from domain.errors import ValidationError
from domain.ids import canonical_json, stable_id
from domain.serde import parse_ts, require, require_str, ts_str

ALERT_VERSION = 1
MAX_TITLE = 200
MAX_KEY = 200
MAX_ACCOUNT = 64
# Slack cuts messages a little above 3,000 characters into pieces (and rejects a section
# block over 3,000); staying under keeps one alert one message on both Slack and Teams.
MAX_TEXT = 2_900
MAX_DETAIL_LINES = 20
MAX_DETAIL_VALUE = 300
SLACK_HEADER_MAX = 150
SUMMARY_EXAMPLES = 5


class AlertKind(StrEnum):
    KILL_SWITCH = "kill_switch"
    RISK_BREACH = "risk_breach"
    RECONCILIATION_MISMATCH = "reconciliation_mismatch"
    ERROR_RATE = "error_rate"
    LATENCY_SPIKE = "latency_spike"
    # A flatten that did not close every position before its deadline: the account may
    # still hold risk while halted, which needs a human.
    FLATTEN_INCOMPLETE = "flatten_incomplete"
    # A trade orchestration that failed and ran its clean-up: orders may need a look.
    TRADE_FAILED = "trade_failed"
    # A fill handed to the risk entity again long after it was applied, which the entity
    # refused: something is handing on settled fills.
    STALE_FILL = "stale_fill"
    # Alerts the rate limit held back, reported as one message.
    SUMMARY = "summary"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def _json_safe(value: Mapping[str, Any], field_name: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValidationError(field_name, "must be an object with string keys")
    try:
        # Round-tripping copies the mapping and proves the alert can cross a durable
        # boundary (an activity input) and reach a webhook unchanged.
        copied = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValidationError(field_name, f"must be JSON-safe: {error}") from None
    return dict(copied)


@dataclass(frozen=True)
class Alert:
    """One thing a human should hear about. ``key`` is the caller's name for "the same
    problem" (a denial code, a symbol, a metric): alerts with equal kind, account and key
    share a :attr:`dedupe_key` and are deduplicated."""

    kind: AlertKind
    severity: Severity
    title: str
    account: str
    ts: datetime
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)
    key: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, AlertKind):
            raise ValidationError("kind", "must be an AlertKind")
        if not isinstance(self.severity, Severity):
            raise ValidationError("severity", "must be a Severity")
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValidationError("title", "must be a non-empty string")
        if len(self.title) > MAX_TITLE:
            raise ValidationError("title", f"longer than {MAX_TITLE} characters")
        if not isinstance(self.account, str) or not self.account.strip():
            raise ValidationError("account", "must be a non-empty string")
        if len(self.account) > MAX_ACCOUNT:
            raise ValidationError("account", f"longer than {MAX_ACCOUNT} characters")
        if not isinstance(self.key, str) or len(self.key) > MAX_KEY:
            raise ValidationError("key", f"must be a string of at most {MAX_KEY} characters")
        if not isinstance(self.ts, datetime) or self.ts.utcoffset() is None:
            raise ValidationError("ts", "must be a timezone-aware datetime")
        object.__setattr__(self, "ts", self.ts.astimezone(UTC))
        object.__setattr__(self, "details", _json_safe(self.details, "details"))

    @property
    def dedupe_key(self) -> str:
        return stable_id("alert", self.kind.value, self.account, self.key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": ALERT_VERSION,
            "kind": self.kind.value,
            "severity": self.severity.value,
            "title": self.title,
            "account": self.account,
            "ts": ts_str(self.ts),
            "key": self.key,
            "details": dict(self.details),
            "dedupe_key": self.dedupe_key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if not isinstance(data, Mapping):
            raise ValidationError("alert", "must be an object")
        version = data.get("version", ALERT_VERSION)
        if version != ALERT_VERSION:
            raise ValidationError("version", f"unsupported alert version {version!r}")
        try:
            kind = AlertKind(require(data, "kind"))
        except ValueError:
            raise ValidationError("kind", f"unknown alert kind {data.get('kind')!r}") from None
        try:
            severity = Severity(require(data, "severity"))
        except ValueError:
            raise ValidationError("severity", "must be info, warning or critical") from None
        key = data.get("key", "")
        if not isinstance(key, str):
            raise ValidationError("key", "must be a string")
        details = data.get("details") or {}
        return cls(
            kind=kind,
            severity=severity,
            title=require_str(data, "title", max_len=MAX_TITLE),
            account=require_str(data, "account", max_len=MAX_ACCOUNT),
            ts=parse_ts(require(data, "ts"), "ts"),
            details=_json_safe(details, "details"),
            key=key,
        )


class AlertSink(Protocol):
    """Where alerts go (a webhook, the log). ``notify`` returns at once and never raises:
    an alert must not hold up or break the trading path that raised it."""

    def notify(self, alert: Alert) -> None: ...

    def flush(self, timeout: float) -> bool:
        """Wait until what was accepted has been delivered or given up; False on timeout."""
        ...

    def close(self, timeout: float = 5.0) -> None: ...


# -- alerts the desk raises -------------------------------------------------------------------


def kill_switch_alert(account: str, *, halted: bool, reason: str, ts: datetime) -> Alert:
    """The kill switch turned on (critical) or off (info). Keyed by state so a halt and the
    resume that follows are both told."""
    return Alert(
        kind=AlertKind.KILL_SWITCH,
        severity=Severity.CRITICAL if halted else Severity.INFO,
        title=f"Kill switch {'ON: trading halted' if halted else 'off: trading resumed'}"
        f" ({account})",
        account=account,
        ts=ts,
        details={"reason": reason[:MAX_DETAIL_VALUE]},
        key="halt" if halted else "resume",
    )


def risk_breach_alert(
    account: str,
    *,
    code: str,
    message: str,
    ts: datetime,
    critical: bool = False,
    details: Mapping[str, Any] | None = None,
) -> Alert:
    """A risk limit hit: ``code`` (a ``DenialCode`` value, or ``daily_loss``) is the key, so
    a strategy knocking on the same limit every tick alerts once per dedupe window."""
    return Alert(
        kind=AlertKind.RISK_BREACH,
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        title=f"Risk limit {code} ({account})",
        account=account,
        ts=ts,
        details={"code": code, "message": message[:MAX_DETAIL_VALUE], **(details or {})},
        key=code,
    )


def reconciliation_alert(
    account: str, problems: Sequence[Mapping[str, Any]], *, ts: datetime
) -> Alert:
    """Books and broker disagree. Keyed by the set of problems: the same unresolved
    mismatch found run after run is one alert per dedupe window, a new one alerts at once."""
    ordered = sorted(canonical_json(dict(p)) for p in problems)
    return Alert(
        kind=AlertKind.RECONCILIATION_MISMATCH,
        severity=Severity.CRITICAL,
        title=f"Books and broker disagree: {len(ordered)} problem(s) ({account})",
        account=account,
        ts=ts,
        details={f"problem {i + 1}": text for i, text in enumerate(ordered[:MAX_DETAIL_LINES])},
        key=stable_id("problems", ordered),
    )


def flatten_incomplete_alert(
    account: str, *, reason: str, open_orders: Mapping[str, Any], ts: datetime
) -> Alert:
    """A flatten whose closing orders were not all done by its deadline: the account may
    still hold positions while halted. ``open_orders`` is the tracker's summary."""
    return Alert(
        kind=AlertKind.FLATTEN_INCOMPLETE,
        severity=Severity.CRITICAL,
        title=f"Flatten did not close everything ({account})",
        account=account,
        ts=ts,
        details={"reason": reason[:MAX_DETAIL_VALUE], **dict(open_orders)},
        key=reason[:MAX_KEY],
    )


def trade_failed_alert(account: str, *, intent_id: str, error: str, ts: datetime) -> Alert:
    """A trade orchestration that failed and ran its clean-up (cancel, release, audit)."""
    return Alert(
        kind=AlertKind.TRADE_FAILED,
        severity=Severity.WARNING,
        title=f"Trade {intent_id[:80]} failed ({account})",
        account=account,
        ts=ts,
        details={"intent_id": intent_id, "error": error[:MAX_DETAIL_VALUE]},
        key=intent_id[:MAX_KEY],
    )


def stale_fill_alert(
    account: str,
    *,
    execution_id: str,
    client_order_id: str,
    forgotten_through: str,
    ts: datetime,
) -> Alert:
    """A fill handed to the risk entity again after it forgot the fill's id: booked at or
    before ``forgotten_through``, it was handed on and applied before, so the entity
    refused it. Nothing is wrong in the books, but something handed on a long-settled
    fill (an orchestration resumed days later, books restored from a backup)."""
    return Alert(
        kind=AlertKind.STALE_FILL,
        severity=Severity.WARNING,
        title=f"Risk entity refused a fill it had applied before ({account})",
        account=account,
        ts=ts,
        details={
            "execution_id": execution_id[:MAX_DETAIL_VALUE],
            "client_order_id": client_order_id[:MAX_DETAIL_VALUE],
            "forgotten_through": forgotten_through[:MAX_DETAIL_VALUE],
        },
        key=account[:MAX_KEY],
    )


# -- deduplication and rate limiting ----------------------------------------------------------


class Decision(StrEnum):
    SEND = "send"
    DUPLICATE = "duplicate"
    HELD = "held"  # over the rate limit: counted into the next summary


@dataclass(frozen=True, slots=True)
class Admission:
    decision: Decision
    # Duplicates of this alert suppressed since the last one of its key was let through.
    repeats: int = 0


@dataclass(frozen=True, slots=True)
class GateConfig:
    dedupe_s: float = 300.0
    max_per_window: int = 10
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.dedupe_s) or self.dedupe_s < 0:
            raise ValidationError("dedupe_s", "must be zero or more seconds")
        if self.max_per_window < 1:
            raise ValidationError("max_per_window", "must be at least 1")
        if not math.isfinite(self.window_s) or self.window_s <= 0:
            raise ValidationError("window_s", "must be greater than zero")


@dataclass
class _Seen:
    ts_let_through: datetime
    suppressed: int = 0


@dataclass
class _Held:
    count: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    accounts: set[str] = field(default_factory=set)
    worst: Severity = Severity.INFO
    examples: list[tuple[int, str]] = field(default_factory=list)
    dropped: int = 0
    ts_first: datetime | None = None


class AlertGate:
    """Deduplication and a sliding-window rate limit, as a state machine over times the
    caller gives (``now`` is timezone-aware UTC).

    * The same :attr:`Alert.dedupe_key` within ``dedupe_s`` of the last one let through is a
      duplicate: not sent, counted, and the count rides on the next one let through. The
      window runs from the last one let through, not the last one seen, so a condition
      that persists is reported again every ``dedupe_s`` instead of never.
    * At most ``max_per_window`` messages leave in any ``window_s``. Beyond that an alert
      is held: counted by kind, with a few titles kept as examples, and
      :meth:`take_summary` turns what was held into one summary alert as soon as a slot is
      free. The summary itself takes a slot.
    """

    # Keys are forgotten once their dedupe window has passed; this bounds the table for a
    # caller that invents a new key per alert.
    MAX_KEYS = 10_000

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self._seen: dict[str, _Seen] = {}
        self._sent: deque[datetime] = deque()
        self._held = _Held()
        self.duplicates = 0
        self.held_total = 0

    @property
    def held(self) -> int:
        """Alerts waiting to be reported in a summary."""
        return self._held.count

    def _expire(self, now: datetime) -> None:
        window = timedelta(seconds=self.config.window_s)
        while self._sent and now - self._sent[0] >= window:
            self._sent.popleft()
        if len(self._seen) > self.MAX_KEYS:
            horizon = now - timedelta(seconds=self.config.dedupe_s)
            self._seen = {k: v for k, v in self._seen.items() if v.ts_let_through > horizon}

    def _slot_free(self) -> bool:
        return len(self._sent) < self.config.max_per_window

    def admit(self, alert: Alert, now: datetime) -> Admission:
        self._expire(now)
        key = alert.dedupe_key
        seen = self._seen.get(key)
        dedupe = timedelta(seconds=self.config.dedupe_s)
        if seen is not None and now - seen.ts_let_through < dedupe:
            seen.suppressed += 1
            self.duplicates += 1
            return Admission(Decision.DUPLICATE)
        repeats = 0 if seen is None else seen.suppressed
        # Held alerts count as let through for deduplication: a flood of one key is one
        # line in the summary, not the whole summary.
        self._seen[key] = _Seen(now)
        if self._held.count or not self._slot_free():
            # Once something is held, newer alerts queue behind it in the summary so that
            # what is reported stays in the order it happened.
            self._hold(alert, now)
            return Admission(Decision.HELD, repeats)
        self._sent.append(now)
        return Admission(Decision.SEND, repeats)

    def _hold(self, alert: Alert, now: datetime) -> None:
        held = self._held
        held.count += 1
        self.held_total += 1
        held.by_kind[alert.kind.value] = held.by_kind.get(alert.kind.value, 0) + 1
        held.accounts.add(alert.account)
        if alert.severity.rank > held.worst.rank:
            held.worst = alert.severity
        held.examples.append((-alert.severity.rank, alert.title))
        # Keep the most severe first; ties keep arrival order (sort is stable).
        held.examples.sort(key=lambda e: e[0])
        del held.examples[SUMMARY_EXAMPLES:]
        if held.ts_first is None:
            held.ts_first = now

    def note_dropped(self, alert: Alert, now: datetime) -> None:
        """An alert the sender could not take (its queue was full): reported in the
        next summary rather than lost without trace."""
        self._hold(alert, now)
        self._held.dropped += 1

    def next_summary_at(self, now: datetime) -> datetime | None:
        """When :meth:`take_summary` will have something, if anything is held."""
        self._expire(now)
        if not self._held.count:
            return None
        if self._slot_free():
            return now
        return self._sent[0] + timedelta(seconds=self.config.window_s)

    def take_summary(self, now: datetime, *, force: bool = False) -> Alert | None:
        """The summary of what was held, when a slot is free (or ``force``: at shutdown,
        the last chance to say it)."""
        self._expire(now)
        held = self._held
        if not held.count or not (force or self._slot_free()):
            return None
        self._held = _Held()
        self._sent.append(now)
        accounts = sorted(held.accounts)
        account = accounts[0] if len(accounts) == 1 else "several"
        details: dict[str, Any] = {
            "held back": held.count,
            "by kind": ", ".join(f"{k} x{n}" for k, n in sorted(held.by_kind.items())),
            "accounts": ", ".join(accounts)[:MAX_DETAIL_VALUE],
            "since": ts_str(held.ts_first or now),
        }
        if held.dropped:
            details["dropped (sender queue full)"] = held.dropped
        for i, (_, title) in enumerate(held.examples):
            details[f"example {i + 1}"] = title
        return Alert(
            kind=AlertKind.SUMMARY,
            severity=held.worst,
            title=(
                f"{held.count} alert(s) held back by the rate limit "
                f"({self.config.max_per_window} per {self.config.window_s:g} s)"
            ),
            account=account,
            ts=now,
            details=details,
            key=ts_str(now),
        )


# -- webhook payloads --------------------------------------------------------------------------


class WebhookFormat(StrEnum):
    # {"text": ...}: what both a Slack incoming webhook and a Teams (Office 365 connector)
    # incoming webhook accept.
    TEXT = "text"
    # Slack Block Kit with the same text as the notification fallback.
    SLACK = "slack"
    # An Adaptive Card in a message envelope: what a Teams Workflows ("Send webhook alerts
    # to a channel") webhook takes, the successor of the Office 365 connectors.
    TEAMS = "teams"


def _escape_slack(text: str) -> str:
    # Slack reads &, < and > as markup (``<!channel>`` notifies everyone); a reason typed by
    # an operator or sent by a broker must stay text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value_text(value: Any) -> str:
    text = value if isinstance(value, str) else canonical_json(value)
    return _shorten(" ".join(text.split()), MAX_DETAIL_VALUE)


def _facts(alert: Alert) -> list[tuple[str, str]]:
    facts = [(str(k), _value_text(v)) for k, v in alert.details.items()]
    if len(facts) > MAX_DETAIL_LINES:
        extra = len(facts) - MAX_DETAIL_LINES + 1
        facts = [*facts[: MAX_DETAIL_LINES - 1], ("…", f"{extra} more")]
    return facts


def _repeat_note(repeats: int, dedupe_s: float) -> str | None:
    if repeats <= 0:
        return None
    return f"repeated {repeats} more time(s) in the {dedupe_s:g} s before this one"


def _context(alert: Alert) -> str:
    return f"{alert.kind.value} · account {alert.account} · {ts_str(alert.ts)}"


def alert_text(alert: Alert, *, repeats: int = 0, dedupe_s: float = 300.0) -> str:
    """The alert as plain text, Slack-escaped: the ``text`` field of every format."""
    lines = [f"[{alert.severity.value.upper()}] {alert.title}", _context(alert)]
    lines += [f"• {name}: {value}" for name, value in _facts(alert)]
    note = _repeat_note(repeats, dedupe_s)
    if note:
        lines.append(f"({note})")
    return _shorten(_escape_slack("\n".join(lines)), MAX_TEXT)


def webhook_payload(
    alert: Alert,
    fmt: WebhookFormat = WebhookFormat.TEXT,
    *,
    repeats: int = 0,
    dedupe_s: float = 300.0,
) -> dict[str, Any]:
    """The JSON body to POST for ``alert``."""
    text = alert_text(alert, repeats=repeats, dedupe_s=dedupe_s)
    if fmt is WebhookFormat.TEXT:
        return {"text": text}
    facts = _facts(alert)
    note = _repeat_note(repeats, dedupe_s)
    if fmt is WebhookFormat.SLACK:
        body = "\n".join(f"*{_escape_slack(n)}*: {_escape_slack(v)}" for n, v in facts)
        if note:
            body += f"\n_{note}_"
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": _shorten(
                        f"[{alert.severity.value.upper()}] {alert.title}", SLACK_HEADER_MAX
                    ),
                },
            },
        ]
        if body.strip():
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": _shorten(body, MAX_TEXT)}}
            )
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _context(alert)}]}
        )
        return {"text": text, "blocks": blocks}
    card_body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"[{alert.severity.value.upper()}] {alert.title}",
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "color": {"critical": "Attention", "warning": "Warning"}.get(
                alert.severity.value, "Default"
            ),
        },
        {"type": "TextBlock", "text": _context(alert), "isSubtle": True, "wrap": True},
    ]
    if facts:
        card_body.append({"type": "FactSet", "facts": [{"title": n, "value": v} for n, v in facts]})
    if note:
        card_body.append({"type": "TextBlock", "text": note, "isSubtle": True, "wrap": True})
    return {
        "type": "message",
        "summary": _shorten(alert.title, SLACK_HEADER_MAX),
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": card_body,
                },
            }
        ],
    }


# -- spike detection ---------------------------------------------------------------------------


class SpikeEdge(StrEnum):
    STARTED = "started"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class SpikeSignal:
    edge: SpikeEdge
    value: float
    baseline: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "edge": self.edge.value,
            "value": self.value,
            "baseline": self.baseline,
            "threshold": self.threshold,
        }


@dataclass
class SpikeDetector:
    """Spikes in a series (latencies in ms, errors per interval) against its own recent
    baseline, with hysteresis: a spike starts when ``confirm`` samples in a row reach
    ``max(floor, start_factor x baseline)`` and ends when ``clear`` samples in a row fall
    to ``max(floor, end_factor x baseline)`` or below. Between the two nothing is
    signalled, so a series hovering around the threshold alerts once, not on every sample.

    The baseline is the median of the last ``window`` samples seen outside a spike: samples
    inside one are left out, or a long spike would become its own baseline and "end"
    while still going on. ``floor`` keeps a near-zero baseline (no errors at all) from
    turning the first single error into a spike.
    """

    floor: float
    start_factor: float = 3.0
    end_factor: float = 1.5
    window: int = 120
    min_samples: int = 20
    confirm: int = 2
    clear: int = 3
    samples: deque[float] = field(default_factory=deque)
    in_spike: bool = False
    # Consecutive samples beyond the threshold that is being watched for.
    _run: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not math.isfinite(self.floor) or self.floor < 0:
            raise ValidationError("floor", "must be zero or more")
        if not 1 <= self.end_factor <= self.start_factor:
            raise ValidationError("end_factor", "must be between 1 and start_factor")
        if self.window < 1 or not 1 <= self.min_samples <= self.window:
            raise ValidationError("min_samples", "must be between 1 and window")
        if self.confirm < 1 or self.clear < 1:
            raise ValidationError("confirm", "confirm and clear must be at least 1")
        self.samples = deque(self.samples, maxlen=self.window)

    @property
    def baseline(self) -> float | None:
        if len(self.samples) < self.min_samples:
            return None
        return float(statistics.median(self.samples))

    def thresholds(self) -> tuple[float, float] | None:
        """(start, end) thresholds, or None while the baseline is still warming up."""
        baseline = self.baseline
        if baseline is None:
            return None
        return (
            max(self.floor, self.start_factor * baseline),
            max(self.floor, self.end_factor * baseline),
        )

    def observe(self, value: float) -> SpikeSignal | None:
        """Take one sample; returns the edge it completes, if any."""
        if not math.isfinite(value):
            return None  # a broken measurement is not a spike, nor evidence of calm
        limits = self.thresholds()
        if limits is None:
            self.samples.append(value)
            return None
        start, end = limits
        baseline = self.baseline or 0.0
        if not self.in_spike:
            if value >= start:
                self._run += 1
                if self._run >= self.confirm:
                    self.in_spike, self._run = True, 0
                    return SpikeSignal(SpikeEdge.STARTED, value, baseline, start)
                return None
            self._run = 0
            self.samples.append(value)
            return None
        if value <= end:
            self._run += 1
            if self._run >= self.clear:
                self.in_spike, self._run = False, 0
                return SpikeSignal(SpikeEdge.ENDED, value, baseline, end)
            return None
        self._run = 0
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "floor": self.floor,
            "start_factor": self.start_factor,
            "end_factor": self.end_factor,
            "window": self.window,
            "min_samples": self.min_samples,
            "confirm": self.confirm,
            "clear": self.clear,
            "samples": list(self.samples),
            "in_spike": self.in_spike,
            "run": self._run,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        samples = data.get("samples") or []
        if not isinstance(samples, list) or not all(
            isinstance(s, int | float) and not isinstance(s, bool) for s in samples
        ):
            raise ValidationError("samples", "must be a list of numbers")
        detector = cls(
            floor=float(require(data, "floor")),
            start_factor=float(data.get("start_factor", 3.0)),
            end_factor=float(data.get("end_factor", 1.5)),
            window=int(data.get("window", 120)),
            min_samples=int(data.get("min_samples", 20)),
            confirm=int(data.get("confirm", 2)),
            clear=int(data.get("clear", 3)),
            samples=deque(float(s) for s in samples),
            in_spike=bool(data.get("in_spike", False)),
        )
        detector._run = int(data.get("run", 0))
        return detector


def spike_alert(
    kind: AlertKind,
    account: str,
    metric: str,
    signal: SpikeSignal,
    *,
    ts: datetime,
    unit: str = "",
) -> Alert:
    """The alert for a spike edge: a start is a warning, the end that follows is info.
    ``metric`` names the series (``tick_to_submit_ms``, ``dead_letters_per_min``)."""
    if kind not in (AlertKind.LATENCY_SPIKE, AlertKind.ERROR_RATE):
        raise ValidationError("kind", "must be latency_spike or error_rate")
    started = signal.edge is SpikeEdge.STARTED
    what = "latency spike" if kind is AlertKind.LATENCY_SPIKE else "error rate up"
    title = f"{metric}: {what}" if started else f"{metric}: back to normal"
    suffix = f" {unit}" if unit else ""
    return Alert(
        kind=kind,
        severity=Severity.WARNING if started else Severity.INFO,
        title=f"{title} ({account})",
        account=account,
        ts=ts,
        details={
            "value": f"{signal.value:g}{suffix}",
            "baseline (median)": f"{signal.baseline:g}{suffix}",
            "threshold": f"{signal.threshold:g}{suffix}",
        },
        key=f"{metric}:{signal.edge.value}",
    )
