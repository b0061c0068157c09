"""What the desk gives away: a canary secret in its settings never reaches a log line, an
HTTP answer, the audit trail or the dashboard; no browser origin is let in; admin routes
want the master key; oversized bodies are refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.bootstrap import AlpacaSettings
from adapters.observability import JsonLogFormatter
from domain import signing
from tests.functions.desk import Desk, make_desk

CANARY = "canary-5e1d7b0c-never-shown-anywhere"
SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}


def exercise(desk: Desk) -> list[requests.Response]:
    """Every route, the happy path and the failing ones."""
    desk.prices("AAPL", [100.0, 100.0, 100.0, 101.0])
    desk.settle(5)
    calls: list[tuple[str, str, dict[str, Any], bool]] = [
        ("POST", "orders", {"json": {"symbol": "AAPL", "side": "buy", "quantity": "1"}}, False),
        ("POST", "orders", {"data": b"{not json"}, False),
        ("POST", "orders", {"json": {"symbol": "AAPL", "side": "buy", "quantity": "-1"}}, False),
        ("GET", "orders", {}, False),
        ("GET", "orders/int-unknown", {}, False),
        ("DELETE", "orders/int-unknown", {}, False),
        ("GET", "positions", {}, False),
        ("GET", "risk/paper", {}, False),
        ("PUT", "risk/paper/limits", {"json": {"max_order_quantity": "oops"}}, True),
        ("POST", "killswitch", {"json": {"action": "halt"}}, True),
        ("GET", "health", {}, False),
        ("GET", "metrics", {}, False),
        ("GET", "openapi.json", {}, False),
        ("GET", "dashboard", {}, False),
        ("GET", "dashboard/data", {}, False),
        ("POST", "webhooks/trade-updates", {"data": b"{}"}, False),
        (
            "POST",
            "webhooks/trade-updates",
            {"data": b"{}", "headers": signing.sign(b"x" * 32, b"{}", desk.clock.now())},
            False,
        ),
    ]
    responses = []
    for method, path, kwargs, admin in calls:
        responses.append(desk.http(method, path, admin=admin, **kwargs))
    desk.settle(5)
    return responses


def test_a_canary_secret_in_the_settings_is_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    desk = make_desk(
        tmp_path,
        strategies=[SMA],
        alpaca=AlpacaSettings(CANARY, CANARY),
        webhook_key=CANARY.encode(),
    )
    try:
        responses = exercise(desk)
        records = [r.to_dict() for p in ("paper", "ingest") for r in desk.store.records(p)]
        shown = [repr(desk.services.settings), json.dumps(records, default=str)]
    finally:
        desk.close()
    assert any(r.status_code == 200 for r in responses)
    assert any(r.status_code >= 400 for r in responses)
    shown += [r.text + json.dumps(dict(r.headers)) for r in responses]
    shown += [JsonLogFormatter().format(record) for record in caplog.records]
    leaks = [text[:200] for text in shown if CANARY in text]
    assert leaks == []


def test_no_browser_origin_is_let_in(tmp_path: Path) -> None:
    desk = make_desk(tmp_path)
    try:
        origin = {"Origin": "https://evil.example"}
        preflight = desk.http(
            "OPTIONS",
            "orders",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        )
        plain = desk.http("GET", "positions", headers=origin)
    finally:
        desk.close()
    for response in (preflight, plain):
        assert not any(h.lower().startswith("access-control-allow") for h in response.headers)
    assert preflight.status_code != 200


def test_admin_routes_want_the_master_key(tmp_path: Path) -> None:
    desk = make_desk(tmp_path)
    try:
        halt = desk.http("POST", "killswitch", json={"action": "halt", "reason": "test"})
        limits = desk.http("PUT", "risk/paper/limits", json={"max_order_quantity": "1"})
        anonymous = requests.post(desk.url("killswitch"), json={"action": "halt"}, timeout=10)
    finally:
        desk.close()
    assert (halt.status_code, limits.status_code, anonymous.status_code) == (401, 401, 401)


def test_oversized_bodies_are_refused(tmp_path: Path) -> None:
    desk = make_desk(tmp_path)
    try:
        padded = {"symbol": "AAPL", "side": "buy", "quantity": "1", "note": "x" * 70_000}
        response = desk.http("POST", "orders", json=padded)
    finally:
        desk.close()
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "body"
