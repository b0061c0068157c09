"""The webhook notifier against a real HTTP server on 127.0.0.1: what arrives, retries and
Retry-After, a receiver that hangs or is down, deduplication, the rate-limit summary, and a
secret webhook URL that never reaches the log."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from adapters.alert_webhook import (
    NullNotifier,
    RetryPolicy,
    WebhookNotifier,
    notifier_from_environ,
    parse_retry_after,
    redact_url,
)
from devhost.server import BackgroundServer
from domain.alerts import (
    Alert,
    AlertKind,
    GateConfig,
    Severity,
    WebhookFormat,
    kill_switch_alert,
    webhook_payload,
)
from domain.errors import ValidationError

CANARY = "T0CANARY/B0SECRET/zq8Xc4nV7canary"
T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


@dataclass
class Receiver:
    """A chat webhook stand-in: records every POST and answers from a script (then 200)."""

    script: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    bodies: list[Any] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/services/{team}/{hook}/{token}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.content_types.append(request.headers.get("Content-Type", ""))
        self.bodies.append(await request.json())
        self.arrived.append(time.monotonic())
        status, headers = self.script.popleft() if self.script else (200, {})
        return web.Response(status=status, headers=headers, text="ok" if status == 200 else "no")


class Sleeps:
    """Stands in for the backoff wait: records it and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    fake = Receiver()
    with BackgroundServer(fake.app()) as server:
        yield fake, f"{server.url}/services/{CANARY}"


@pytest.fixture
def make() -> Iterator[Callable[..., WebhookNotifier]]:
    made: list[WebhookNotifier] = []

    def build(url: str, **options: Any) -> WebhookNotifier:
        options.setdefault("sleep", Sleeps())
        notifier = WebhookNotifier(url, **options)
        made.append(notifier)
        return notifier

    yield build
    for notifier in made:
        notifier.close(timeout=2.0)


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A port that takes connections and never answers (nothing ever accepts them)."""
    with socket.create_server(("127.0.0.1", 0), backlog=32) as sock:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/services/{CANARY}"


@pytest.fixture
def closed_port() -> str:
    """A port nothing listens on: connections are refused."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/{CANARY}"


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def alert(key: str = "daily_loss", **details: Any) -> Alert:
    return Alert(
        AlertKind.RISK_BREACH, Severity.WARNING, f"Risk limit {key}", "paper", T0, details, key
    )


def no_canary(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        text = " ".join([record.getMessage(), str(record.args), record.exc_text or ""])
        assert CANARY not in text and "B0SECRET" not in text, record.name


# -- delivery ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(WebhookFormat))
def test_an_alert_arrives_as_the_json_the_webhook_takes(
    receiver: tuple[Receiver, str], make: Callable[..., WebhookNotifier], fmt: WebhookFormat
) -> None:
    fake, url = receiver
    notifier = make(url, fmt=fmt)
    sent = kill_switch_alert("paper", halted=True, reason="operator: broker outage", ts=T0)
    notifier.notify(sent)
    assert notifier.flush(5.0)
    assert fake.bodies == [webhook_payload(sent, fmt)]
    assert fake.content_types == ["application/json; charset=utf-8"]
    assert (notifier.sent, notifier.failed) == (1, 0)


def test_two_server_errors_then_success_delivers_the_alert_once(
    receiver: tuple[Receiver, str], make: Callable[..., WebhookNotifier]
) -> None:
    fake, url = receiver
    fake.script.extend([(500, {}), (503, {})])
    sleeps = Sleeps()
    notifier = make(url, sleep=sleeps, retry=RetryPolicy(base_delay_s=1.0, max_delay_s=30.0))
    notifier.notify(alert())
    assert notifier.flush(5.0)
    assert len(fake.bodies) == 3 and fake.bodies[0] == fake.bodies[2]
    assert (notifier.sent, notifier.failed) == (1, 0)
    # Exponential backoff with jitter: the n-th wait lies in [base*2^(n-1)/2, base*2^(n-1)].
    first, second = sleeps.waits
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0


def test_retry_after_on_429_is_waited_as_asked(
    receiver: tuple[Receiver, str], make: Callable[..., WebhookNotifier]
) -> None:
    fake, url = receiver
    fake.script.extend([(429, {"Retry-After": "7"}), (503, {"Retry-After": "0"})])
    sleeps = Sleeps()
    notifier = make(url, sleep=sleeps)
    notifier.notify(alert())
    assert notifier.flush(5.0)
    assert sleeps.waits == [7.0, 0.0]
    assert len(fake.bodies) == 3 and notifier.sent == 1


def test_an_outlandish_retry_after_is_capped(
    receiver: tuple[Receiver, str], make: Callable[..., WebhookNotifier]
) -> None:
    fake, url = receiver
    fake.script.append((429, {"Retry-After": "86400"}))
    sleeps = Sleeps()
    notifier = make(url, sleep=sleeps, retry=RetryPolicy(max_retry_after_s=90))
    notifier.notify(alert())
    assert notifier.flush(5.0)
    assert sleeps.waits == [90] and notifier.sent == 1


def test_retry_after_as_an_http_date() -> None:
    assert parse_retry_after("Mon, 02 Mar 2026 14:30:12 GMT", T0) == 12.0
    assert parse_retry_after("Mon, 02 Mar 2026 14:29:00 GMT", T0) == 0.0
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None


def test_a_refusal_is_not_retried(
    receiver: tuple[Receiver, str],
    make: Callable[..., WebhookNotifier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = receiver
    fake.script.append((404, {}))  # what Slack answers for a revoked webhook
    sleeps = Sleeps()
    notifier = make(url, sleep=sleeps)
    with caplog.at_level(logging.INFO, logger="desk.alerts"):
        notifier.notify(alert())
        assert notifier.flush(5.0)
    assert len(fake.bodies) == 1 and sleeps.waits == []
    assert (notifier.sent, notifier.failed) == (0, 1)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "HTTP 404 (not retryable)" in record.getMessage()
    no_canary(caplog)


# -- a receiver that hangs or is down never holds up the caller --------------------------------


@pytest.mark.parametrize("where", ["blackhole", "closed_port"])
def test_a_dead_receiver_does_not_block_notify_and_the_give_up_is_logged(
    where: str,
    request: pytest.FixtureRequest,
    make: Callable[..., WebhookNotifier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url: str = request.getfixturevalue(where)
    sleeps = Sleeps()
    notifier = make(
        url, sleep=sleeps, retry=RetryPolicy(max_attempts=2, timeout_s=0.1), queue_size=10
    )
    caplog.set_level(logging.DEBUG)
    took = []
    for i in range(4):
        started = time.perf_counter()
        notifier.notify(alert(f"k{i}"))
        took.append(time.perf_counter() - started)
    assert max(took) < 0.05, took
    assert notifier.flush(10.0)
    assert (notifier.sent, notifier.failed) == (0, 4)
    assert len(sleeps.waits) == 4  # two attempts each, one wait between them
    gave_up = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(gave_up) == 4
    port = url.split(":")[2].split("/")[0]
    expected = "no answer within 0.1 s" if where == "blackhole" else "connection failed"
    for message in gave_up:
        assert f"http://127.0.0.1:{port}/***" in message
        assert "after 2 attempt(s)" in message and expected in message
    no_canary(caplog)


def test_a_full_queue_drops_without_blocking_and_counts_for_the_summary(
    blackhole: str, make: Callable[..., WebhookNotifier]
) -> None:
    notifier = make(blackhole, retry=RetryPolicy(max_attempts=1, timeout_s=0.1), queue_size=1)
    started = time.perf_counter()
    for i in range(6):
        notifier.notify(alert(f"k{i}"))
    assert time.perf_counter() - started < 0.05
    # One in flight and one queued at most; the first that found the queue full is dropped
    # and counted, and the ones after it wait behind it for the summary.
    assert notifier.dropped == 1
    assert notifier.held >= 4


# -- deduplication and the rate limit ---------------------------------------------------------


def test_duplicates_within_the_window_are_not_sent(
    receiver: tuple[Receiver, str], make: Callable[..., WebhookNotifier]
) -> None:
    fake, url = receiver
    clock = FakeClock()
    notifier = make(url, clock=clock, gate=GateConfig(dedupe_s=300, max_per_window=100))
    for _ in range(5):
        notifier.notify(alert(reason="same"))
        clock.advance(10)
    notifier.notify(alert("order_rate"))
    assert notifier.flush(5.0)
    assert [b["text"].splitlines()[0] for b in fake.bodies] == [
        "[WARNING] Risk limit daily_loss",
        "[WARNING] Risk limit order_rate",
    ]
    assert notifier.duplicates == 4
    # Past the window the still-present condition is told again, with the count.
    clock.advance(300)
    notifier.notify(alert(reason="same"))
    assert notifier.flush(5.0)
    assert len(fake.bodies) == 3
    assert "(repeated 4 more time(s) in the 300 s before this one)" in fake.bodies[2]["text"]


def test_a_burst_over_the_rate_limit_arrives_as_a_summary(
    receiver: tuple[Receiver, str], make: Callable[..., WebhookNotifier]
) -> None:
    fake, url = receiver
    notifier = make(url, gate=GateConfig(dedupe_s=300, max_per_window=3, window_s=0.5))
    for i in range(10):
        notifier.notify(alert(f"k{i}"))
    assert notifier.flush(5.0)
    assert len(fake.bodies) == 3 and notifier.held == 7
    assert wait_until(lambda: len(fake.bodies) == 4)
    summary = fake.bodies[3]["text"]
    assert summary.startswith("[WARNING] 7 alert(s) held back by the rate limit (3 per 0.5 s)")
    assert "by kind: risk_breach x7" in summary and "example 1: Risk limit k3" in summary
    # The summary waited for the window to roll over.
    assert fake.arrived[3] - fake.arrived[0] >= 0.3
    assert len(fake.bodies) == 4


def test_close_sends_the_summary_the_rate_limit_was_holding(
    receiver: tuple[Receiver, str], make: Callable[..., WebhookNotifier]
) -> None:
    fake, url = receiver
    notifier = make(url, gate=GateConfig(max_per_window=1, window_s=3600))
    for key in ("a", "b", "c"):
        notifier.notify(alert(key))
    assert notifier.flush(5.0) and len(fake.bodies) == 1
    notifier.close(timeout=5.0)
    assert len(fake.bodies) == 2
    assert "2 alert(s) held back" in fake.bodies[1]["text"]
    notifier.notify(alert("after"))  # ignored, not raised
    assert len(fake.bodies) == 2


# -- the webhook URL is a secret ---------------------------------------------------------------


def test_the_secret_in_the_url_never_reaches_a_log_record(
    receiver: tuple[Receiver, str],
    closed_port: str,
    make: Callable[..., WebhookNotifier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = receiver
    caplog.set_level(logging.DEBUG)
    fake.script.extend([(500, {}), (429, {"Retry-After": "1"}), (400, {})])
    good = make(url, gate=GateConfig(max_per_window=2, window_s=3600))
    for key in ("one", "two", "three", "one"):
        good.notify(alert(key))
    assert good.flush(5.0)
    good.close(timeout=5.0)
    down = make(closed_port, retry=RetryPolicy(max_attempts=2))
    down.notify(alert())
    assert down.flush(5.0)
    assert CANARY not in repr(good) and CANARY not in repr(down)
    assert good.redacted == redact_url(url) == f"{url.split('/services')[0]}/***"
    with pytest.raises(ValidationError) as caught:
        notifier_from_environ({"ALERT_WEBHOOK_URL": f"http://hooks.example.com/{CANARY}"})
    assert CANARY not in str(caught.value)
    logging.getLogger("desk.alerts").info("error: %s", caught.value)
    # Everything above logged something: deliveries, retries, a refusal, a give-up.
    messages = " ".join(r.getMessage() for r in caplog.records if r.name == "desk.alerts")
    assert "retry 1" in messages and "not delivered" in messages
    no_canary(caplog)


# -- settings ----------------------------------------------------------------------------------


def test_no_url_means_alerts_are_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    notifier = notifier_from_environ({})
    assert isinstance(notifier, NullNotifier)
    with caplog.at_level(logging.INFO, logger="desk.alerts"):
        notifier.notify(kill_switch_alert("paper", halted=True, reason="manual", ts=T0))
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert "kill_switch Kill switch ON: trading halted (paper)" in record.getMessage()
    assert notifier.flush(0.1)


def test_settings_are_read_and_checked() -> None:
    notifier = notifier_from_environ(
        {
            "ALERT_WEBHOOK_URL": f"https://hooks.slack.com/services/{CANARY}",
            "ALERT_DEDUPE_S": "60",
            "ALERT_MAX_PER_MIN": "4",
            "ALERT_WEBHOOK_FORMAT": "slack",
        }
    )
    assert isinstance(notifier, WebhookNotifier)
    assert notifier.redacted == "https://hooks.slack.com/***"
    assert notifier.format is WebhookFormat.SLACK
    assert notifier._gate.config == GateConfig(dedupe_s=60, max_per_window=4, window_s=60)
    local = notifier_from_environ({"ALERT_WEBHOOK_URL": "http://localhost:9/x"})
    assert isinstance(local, WebhookNotifier)
    defaults = notifier_from_environ({"ALERT_WEBHOOK_URL": "https://h.example/x"})
    assert isinstance(defaults, WebhookNotifier)
    assert defaults._gate.config == GateConfig(dedupe_s=300, max_per_window=10, window_s=60)


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"ALERT_WEBHOOK_URL": "http://hooks.example.com/x"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_WEBHOOK_URL": "ftp://hooks.example.com/x"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_WEBHOOK_URL": "https:///no-host"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_WEBHOOK_URL": "https://h.example:99999/x"}, "ALERT_WEBHOOK_URL"),
        ({"ALERT_DEDUPE_S": "five"}, "ALERT_DEDUPE_S"),
        ({"ALERT_DEDUPE_S": "-1"}, "ALERT_DEDUPE_S"),
        ({"ALERT_MAX_PER_MIN": "0"}, "ALERT_MAX_PER_MIN"),
        ({"ALERT_WEBHOOK_FORMAT": "discord"}, "ALERT_WEBHOOK_FORMAT"),
    ],
)
def test_bad_settings_name_the_setting(environ: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        notifier_from_environ(environ)
    assert caught.value.field == field


def test_notify_survives_anything_a_caller_hands_it(
    receiver: tuple[Receiver, str], make: Callable[..., WebhookNotifier]
) -> None:
    fake, url = receiver
    notifier = make(url)
    notifier.notify({"kind": "kill_switch"})  # type: ignore[arg-type]
    notifier.notify(alert())
    assert notifier.flush(5.0) and len(fake.bodies) == 1


def test_notify_is_safe_from_many_threads(
    receiver: tuple[Receiver, str], make: Callable[..., WebhookNotifier]
) -> None:
    fake, url = receiver
    notifier = make(url, gate=GateConfig(dedupe_s=300, max_per_window=1000))

    def burst(n: int) -> None:
        for _ in range(20):
            notifier.notify(alert(f"k{n % 5}"))

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert notifier.flush(5.0)
    # Five keys: each sent once however the threads interleaved.
    assert sorted(b["text"].splitlines()[0] for b in fake.bodies) == [
        f"[WARNING] Risk limit k{i}" for i in range(5)
    ]
    assert notifier.duplicates == 195
