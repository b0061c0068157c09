"""The alert policy: the alert value, deduplication, the rate limit and its summary, the
webhook payloads, and spike detection with hysteresis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.alerts import (
    Alert,
    AlertGate,
    AlertKind,
    Decision,
    GateConfig,
    Severity,
    SpikeDetector,
    SpikeEdge,
    WebhookFormat,
    alert_text,
    flatten_incomplete_alert,
    kill_switch_alert,
    reconciliation_alert,
    risk_breach_alert,
    spike_alert,
    trade_failed_alert,
    webhook_payload,
)
from domain.errors import ValidationError

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alert(
    key: str = "k",
    *,
    kind: AlertKind = AlertKind.RISK_BREACH,
    account: str = "paper",
    severity: Severity = Severity.WARNING,
    title: str | None = None,
    **details: Any,
) -> Alert:
    return Alert(kind, severity, title or f"{kind.value} {key}", account, T0, details, key)


# -- the alert value ----------------------------------------------------------------------------


def test_alert_round_trips_through_json() -> None:
    original = Alert(
        AlertKind.KILL_SWITCH,
        Severity.CRITICAL,
        "Kill switch on",
        "paper",
        datetime(2026, 3, 2, 9, 30, tzinfo=timezone(timedelta(hours=-5))),
        {"reason": "operator", "orders": 3, "nested": {"a": [1, 2]}},
        "halt",
    )
    data = json.loads(json.dumps(original.to_dict()))
    again = Alert.from_dict(data)
    assert again == original
    assert again.ts == T0 and again.ts.tzinfo is UTC
    assert data["ts"] == "2026-03-02T14:30:00+00:00"
    assert data["dedupe_key"] == original.dedupe_key


def test_dedupe_key_depends_on_kind_account_and_key_only() -> None:
    base = alert("daily_loss")
    assert base.dedupe_key == alert("daily_loss", title="other", x=1).dedupe_key
    assert base.dedupe_key == Alert.from_dict(base.to_dict()).dedupe_key
    others = {
        alert("order_rate").dedupe_key,
        alert("daily_loss", account="live").dedupe_key,
        alert("daily_loss", kind=AlertKind.ERROR_RATE).dedupe_key,
    }
    assert base.dedupe_key not in others and len(others) == 3
    # Fields are hashed as a list: "a|b" + "" cannot collide with "a" + "b|".
    assert alert("b", account="a").dedupe_key != alert("", account="a|b").dedupe_key


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ts": datetime(2026, 3, 2, 14, 30)}, "ts"),
        ({"title": " "}, "title"),
        ({"account": ""}, "account"),
        ({"details": {"bad": float("nan")}}, "details"),
        ({"details": {"bad": object()}}, "details"),
        ({"key": "x" * 201}, "key"),
    ],
)
def test_alert_refuses_bad_fields(change: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = {
        "kind": AlertKind.ERROR_RATE,
        "severity": Severity.INFO,
        "title": "t",
        "account": "paper",
        "ts": T0,
        **change,
    }
    with pytest.raises(ValidationError) as caught:
        Alert(**fields)
    assert caught.value.field == field


def test_from_dict_names_the_field_it_refuses() -> None:
    data = alert().to_dict()
    with pytest.raises(ValidationError, match="kind"):
        Alert.from_dict({**data, "kind": "meteor"})
    with pytest.raises(ValidationError, match="severity"):
        Alert.from_dict({**data, "severity": "loud"})
    with pytest.raises(ValidationError, match="version"):
        Alert.from_dict({**data, "version": 2})


def test_alerts_the_desk_raises_have_stable_keys() -> None:
    halt = kill_switch_alert("paper", halted=True, reason="manual", ts=T0)
    resume = kill_switch_alert("paper", halted=False, reason="manual", ts=T0)
    assert (halt.severity, resume.severity) == (Severity.CRITICAL, Severity.INFO)
    assert halt.dedupe_key != resume.dedupe_key
    breach = risk_breach_alert("paper", code="daily_loss", message="lost 1000", ts=T0)
    assert breach.key == "daily_loss" and breach.details["code"] == "daily_loss"
    one = [{"symbol": "AAPL", "problem": "position differs"}, {"client_order_id": "x"}]
    # The same problems in another order are the same mismatch; a new problem is not.
    assert (
        reconciliation_alert("paper", one, ts=T0).dedupe_key
        == reconciliation_alert("paper", one[::-1], ts=T0).dedupe_key
    )
    more = [*one, {"symbol": "MSFT", "problem": "position differs"}]
    assert (
        reconciliation_alert("paper", more, ts=T0).dedupe_key
        != reconciliation_alert("paper", one, ts=T0).dedupe_key
    )


def test_flatten_and_trade_failures_carry_what_a_person_needs() -> None:
    orders = {"flatten-paper-1.AAPL": {"status": "new", "filled_qty": "0"}}
    stuck = flatten_incomplete_alert("paper", reason="daily loss limit", open_orders=orders, ts=T0)
    assert stuck.severity is Severity.CRITICAL
    assert stuck.details["flatten-paper-1.AAPL"] == {"status": "new", "filled_qty": "0"}
    failed = trade_failed_alert("paper", intent_id="int-1", error="boom" * 200, ts=T0)
    assert failed.key == "int-1" and len(failed.details["error"]) == 300
    # One alert per failed intent: a replayed failure is a duplicate, another intent is not.
    other = trade_failed_alert("paper", intent_id="int-2", error="boom", ts=T0)
    assert failed.dedupe_key != other.dedupe_key


# -- deduplication --------------------------------------------------------------------------


def test_same_key_within_the_window_is_suppressed_and_counted() -> None:
    gate = AlertGate(GateConfig(dedupe_s=300, max_per_window=100))
    assert gate.admit(alert(), at(0)).decision is Decision.SEND
    assert [gate.admit(alert(), at(s)).decision for s in (1, 100, 299.9)] == [
        Decision.DUPLICATE
    ] * 3
    assert gate.duplicates == 3
    # A different key is a different problem and goes out at once.
    assert gate.admit(alert("other"), at(10)).decision is Decision.SEND
    # The window runs from the last one sent, so a persisting condition is told again,
    # with the count of what was suppressed meanwhile.
    again = gate.admit(alert(), at(300))
    assert (again.decision, again.repeats) == (Decision.SEND, 3)
    assert gate.admit(alert(), at(301)).decision is Decision.DUPLICATE
    assert gate.admit(alert(), at(600)).repeats == 1


def test_zero_dedupe_window_sends_every_alert() -> None:
    gate = AlertGate(GateConfig(dedupe_s=0, max_per_window=100))
    assert {gate.admit(alert(), at(0)).decision for _ in range(5)} == {Decision.SEND}


def test_repeats_are_reported_in_the_text() -> None:
    text = alert_text(alert(), repeats=4, dedupe_s=300)
    assert "repeated 4 more time(s) in the 300 s" in text
    assert "repeated" not in alert_text(alert(), repeats=0)


# -- rate limit and summary ------------------------------------------------------------------


def test_a_burst_over_the_limit_becomes_one_summary_when_a_slot_frees() -> None:
    gate = AlertGate(GateConfig(dedupe_s=300, max_per_window=3, window_s=60))
    decisions = [
        gate.admit(
            alert(f"k{i}", severity=Severity.CRITICAL if i == 7 else Severity.WARNING), at(i)
        ).decision
        for i in range(10)
    ]
    assert decisions == [Decision.SEND] * 3 + [Decision.HELD] * 7
    assert gate.held == 7
    # Nothing to say until the oldest of the three sent leaves the window.
    assert gate.take_summary(at(30)) is None
    assert gate.next_summary_at(at(30)) == at(60)
    summary = gate.take_summary(at(60))
    assert summary is not None
    assert summary.kind is AlertKind.SUMMARY
    assert summary.severity is Severity.CRITICAL  # the worst of what was held
    assert summary.details["held back"] == 7
    assert summary.details["by kind"] == "risk_breach x7"
    assert summary.details["since"] == at(3).isoformat()
    # The critical one leads the examples; at most five are kept.
    assert summary.details["example 1"] == "risk_breach k7"
    assert [k for k in summary.details if k.startswith("example")] == [
        f"example {i}" for i in range(1, 6)
    ]
    assert summary.title == "7 alert(s) held back by the rate limit (3 per 60 s)"
    assert gate.held == 0 and gate.take_summary(at(61)) is None
    assert gate.next_summary_at(at(61)) is None


def test_the_summary_takes_a_slot_and_later_alerts_wait_behind_it() -> None:
    gate = AlertGate(GateConfig(dedupe_s=0, max_per_window=2, window_s=10))
    assert [gate.admit(alert(f"k{i}"), at(0)).decision for i in range(3)] == [
        Decision.SEND,
        Decision.SEND,
        Decision.HELD,
    ]
    # A slot is free at 10 s, but the held alert is reported first: the newcomer joins it.
    assert gate.admit(alert("late"), at(10)).decision is Decision.HELD
    summary = gate.take_summary(at(10))
    assert summary is not None and summary.details["held back"] == 2
    assert gate.admit(alert("next"), at(10)).decision is Decision.SEND
    # Two in the window now (the summary and "next"): the limit holds for summaries too.
    assert gate.admit(alert("over"), at(11)).decision is Decision.HELD


def test_duplicates_of_a_held_alert_are_not_counted_twice() -> None:
    gate = AlertGate(GateConfig(dedupe_s=300, max_per_window=1, window_s=60))
    gate.admit(alert("first"), at(0))
    assert gate.admit(alert("flood"), at(1)).decision is Decision.HELD
    assert gate.admit(alert("flood"), at(2)).decision is Decision.DUPLICATE
    summary = gate.take_summary(at(60))
    assert summary is not None and summary.details["held back"] == 1


def test_shutdown_forces_the_summary_out() -> None:
    gate = AlertGate(GateConfig(max_per_window=1, window_s=60))
    gate.admit(alert("a"), at(0))
    gate.admit(alert("b"), at(1))
    gate.note_dropped(alert("c", account="live"), at(2))
    assert gate.take_summary(at(2)) is None
    summary = gate.take_summary(at(2), force=True)
    assert summary is not None
    assert summary.details["held back"] == 2
    assert summary.details["dropped (sender queue full)"] == 1
    assert summary.account == "several" and summary.details["accounts"] == "live, paper"


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.floats(0, 30, allow_nan=False)), min_size=1, max_size=60
    ),
    st.integers(1, 5),
)
def test_never_more_than_the_limit_leaves_in_any_window(
    arrivals: list[tuple[int, float]], limit: int
) -> None:
    gate = AlertGate(GateConfig(dedupe_s=5, max_per_window=limit, window_s=10))
    now = 0.0
    out: list[float] = []
    for key, gap in arrivals:
        now += gap
        summary = gate.take_summary(at(now))
        if summary is not None:
            out.append(now)
        if gate.admit(alert(f"k{key}"), at(now)).decision is Decision.SEND:
            out.append(now)
    for start in out:
        assert sum(1 for t in out if start <= t < start + 10) <= limit


# -- payloads ----------------------------------------------------------------------------------


def test_text_payload_is_the_one_both_slack_and_teams_accept() -> None:
    body = webhook_payload(
        kill_switch_alert("paper", halted=True, reason="<!channel> stop & check", ts=T0)
    )
    assert list(body) == ["text"]
    text = body["text"]
    assert text.startswith("[CRITICAL] Kill switch ON: trading halted (paper)\n")
    assert "kill_switch · account paper · 2026-03-02T14:30:00+00:00" in text
    # Slack markup in an operator's reason stays text: no channel-wide ping.
    assert "<!channel>" not in text and "&lt;!channel&gt; stop &amp; check" in text
    json.dumps(body)


def test_long_details_are_cut_to_fit_one_message() -> None:
    details = {f"field{i}": "x" * 1000 for i in range(40)}
    big = Alert(AlertKind.RISK_BREACH, Severity.WARNING, "big", "paper", T0, details)
    text = webhook_payload(big)["text"]
    assert len(text) <= 2900
    assert text.count("• ") <= 20
    assert "…" in text


def test_slack_payload_has_blocks_and_the_text_fallback() -> None:
    body = webhook_payload(alert(code="daily_loss"), WebhookFormat.SLACK, repeats=2)
    assert body["text"] == alert_text(alert(code="daily_loss"), repeats=2)
    header, section, context = body["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150
    assert section["text"]["type"] == "mrkdwn" and "*code*: daily_loss" in section["text"]["text"]
    assert "repeated 2 more time(s)" in section["text"]["text"]
    assert context["elements"][0]["text"].startswith("risk_breach · account paper")


def test_teams_payload_is_an_adaptive_card_message() -> None:
    body = webhook_payload(
        alert(severity=Severity.CRITICAL, symbol="AAPL", qty=3), WebhookFormat.TEAMS
    )
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title, context, facts = card["body"]
    assert context["isSubtle"] is True
    assert title["color"] == "Attention" and title["text"].startswith("[CRITICAL]")
    assert facts["facts"] == [{"title": "symbol", "value": "AAPL"}, {"title": "qty", "value": "3"}]
    json.dumps(body)


# -- spike detection ----------------------------------------------------------------------------


def feed(detector: SpikeDetector, values: list[float]) -> list[tuple[int, SpikeEdge]]:
    edges = []
    for i, value in enumerate(values):
        signal = detector.observe(value)
        if signal is not None:
            edges.append((i, signal.edge))
    return edges


def test_one_spike_alerts_once_however_it_wobbles() -> None:
    detector = SpikeDetector(floor=10, start_factor=3, end_factor=1.5, min_samples=10)
    calm = [20.0, 22, 19, 21, 20, 18, 23, 20, 21, 19]
    # Baseline 20: up past 3x (60), then wobbling across the start threshold but staying
    # above the end threshold (1.5x = 30): still the same spike.
    spike = [80.0, 90, 55, 85, 40, 95, 35, 70]
    recovery = [25.0, 22, 21, 20]
    edges = feed(detector, calm + spike + recovery)
    assert edges == [(11, SpikeEdge.STARTED), (len(calm) + len(spike) + 2, SpikeEdge.ENDED)]
    # The spike's samples stayed out of the baseline.
    assert detector.baseline == 20.0
    assert detector.thresholds() == (60.0, 30.0)


def test_a_single_outlier_is_not_a_spike() -> None:
    detector = SpikeDetector(floor=50, min_samples=5, confirm=2)
    assert feed(detector, [20.0] * 5 + [500, 20, 20, 500, 20]) == []
    assert not detector.in_spike


def test_the_floor_keeps_a_quiet_series_from_alerting_on_one_error() -> None:
    detector = SpikeDetector(floor=5, min_samples=5, confirm=1, clear=1)
    # Errors per minute: zero baseline, so 3x baseline is zero; the floor decides.
    assert feed(detector, [0.0] * 10 + [1, 2, 0, 4]) == []
    assert feed(detector, [6.0, 0]) == [(0, SpikeEdge.STARTED), (1, SpikeEdge.ENDED)]


def test_nothing_is_signalled_while_warming_up() -> None:
    detector = SpikeDetector(floor=1, min_samples=5, confirm=1)
    assert feed(detector, [1.0, 1000, 1000, 1000]) == []
    assert detector.baseline is None


def test_detector_state_survives_a_round_trip() -> None:
    detector = SpikeDetector(floor=50, min_samples=5, confirm=2)
    feed(detector, [20.0] * 5 + [100])
    copy = SpikeDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    # The pending confirmation carried over: the next high sample completes the start.
    signal = copy.observe(100)
    assert signal is not None and signal.edge is SpikeEdge.STARTED
    assert (signal.baseline, signal.threshold) == (20.0, 60.0)


def test_detector_refuses_settings_without_hysteresis() -> None:
    with pytest.raises(ValidationError):
        SpikeDetector(floor=1, start_factor=2, end_factor=3)


def test_spike_alerts_start_as_warning_and_end_as_info() -> None:
    detector = SpikeDetector(floor=50, min_samples=5, confirm=1, clear=1)
    [started] = [s for v in [20.0] * 5 + [90] if (s := detector.observe(v))]
    ended = detector.observe(10)
    assert ended is not None
    up = spike_alert(AlertKind.LATENCY_SPIKE, "paper", "tick_to_submit_ms", started, ts=T0)
    down = spike_alert(AlertKind.LATENCY_SPIKE, "paper", "tick_to_submit_ms", ended, ts=T0)
    assert (up.severity, down.severity) == (Severity.WARNING, Severity.INFO)
    assert up.details["value"] == "90" and up.details["baseline (median)"] == "20"
    assert up.dedupe_key != down.dedupe_key
    with pytest.raises(ValidationError):
        spike_alert(AlertKind.KILL_SWITCH, "paper", "x", started, ts=T0)
