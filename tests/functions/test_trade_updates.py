"""Trade updates from the broker's stream wake the trade orchestration at once, instead of
at its next poll; bad or foreign updates are dead-lettered or ignored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from domain import signing
from tests.functions.desk import Desk, make_desk
from triggers.trade_updates import REPLAY_CLAIM_PREFIX, REPLAY_CLAIMS_KEPT


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    # Polls ten minutes apart: only an update can explain a fill seen within seconds.
    made = make_desk(tmp_path, poll_interval_s=600, entry_timeout_s=1200)
    made.prices("AAPL", [100.0])
    made.settle()
    yield made
    made.close()


def update(cid: str, event: str = "fill") -> bytes:
    return json.dumps(
        {"stream": "trade_updates", "data": {"event": event, "order": {"client_order_id": cid}}}
    ).encode()


def test_an_update_wakes_the_orchestration_that_owns_the_order(desk: Desk) -> None:
    body = {"symbol": "AAPL", "side": "buy", "quantity": "5", "order_type": "limit",
            "limit_price": "99"}  # fmt: skip
    placed = desk.http("POST", "orders", json=body).json()
    desk.settle(1)
    simulator = desk.services.simulator
    assert simulator is not None
    # The broker fills the order; no tick tells the desk.
    simulator.on_trade("AAPL", Decimal("98.5"), datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    desk.settle(1)
    intent_id = placed["intent_id"]
    assert desk.status(intent_id).custom_status["stage"] == "entry"
    desk.host.event_log.publish(
        "trade-updates", [(intent_id, update(f"{intent_id}:entry"))], ts_enqueued=datetime.now(UTC)
    )
    desk.settle(1)
    final = desk.status(intent_id)
    assert final.output is not None and final.output["outcome"] == "completed"


def test_bad_and_foreign_updates_cost_nothing(desk: Desk) -> None:
    desk.host.event_log.publish(
        "trade-updates",
        [
            (None, b"{not json"),
            (None, json.dumps({"data": {"event": "fill"}}).encode()),
            (None, update("placed-by-hand")),
            (None, update("int-nobody:entry")),
        ],
        ts_enqueued=datetime.now(UTC),
    )
    desk.settle()
    assert desk.host.event_log.failed_batches() == []
    dead = [r for r in desk.store.records("ingest") if r.event_id.startswith("trade-updates:")]
    assert sorted(r.payload["field"] for r in dead) == ["body", "client_order_id", "order"]


KEY = b"webhook-secret-for-tests-0123456789abcdef"


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[Desk]:
    made = make_desk(tmp_path, poll_interval_s=600, entry_timeout_s=1200, webhook_key=KEY)
    made.prices("AAPL", [100.0])
    made.settle()
    yield made
    made.close()


def post_signed(
    desk: Desk, body: bytes, *, key: bytes = KEY, at: datetime | None = None, **headers: str
) -> requests.Response:
    signed = signing.sign(key, body, at or datetime.now(UTC))
    return desk.http(
        "POST",
        "webhooks/trade-updates",
        data=body,
        headers={"Content-Type": "application/json", **signed, **headers},
    )


def test_a_signed_update_posted_to_the_webhook_wakes_the_orchestration(hooked: Desk) -> None:
    body = {"symbol": "AAPL", "side": "buy", "quantity": "5", "order_type": "limit",
            "limit_price": "99"}  # fmt: skip
    intent_id = hooked.http("POST", "orders", json=body).json()["intent_id"]
    hooked.settle(1)
    simulator = hooked.services.simulator
    assert simulator is not None
    simulator.on_trade("AAPL", Decimal("98.5"), datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    hooked.settle(1)
    signed_body = update(f"{intent_id}:entry")
    response = post_signed(hooked, signed_body)
    assert response.status_code == 202, response.text
    hooked.settle(1)
    final = hooked.status(intent_id)
    assert final.output is not None and final.output["outcome"] == "completed"
    again = post_signed(hooked, signed_body, at=None)  # same second, same signature
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("tamper", "status", "field"),
    [
        ("unsigned", 401, "X-Desk-Timestamp"),
        ("wrong key", 401, "X-Desk-Signature"),
        ("body changed", 401, "X-Desk-Signature"),
        ("stale", 401, "X-Desk-Timestamp"),
        ("too large", 413, "body"),
    ],
)
def test_the_webhook_refuses_what_is_not_authentic_and_fresh(
    hooked: Desk, tamper: str, status: int, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = update("int-someone:entry")
    if tamper == "unsigned":
        response = hooked.http("POST", "webhooks/trade-updates", data=body)
    elif tamper == "wrong key":
        response = post_signed(hooked, body, key=b"another-secret-another-secret-0123")
    elif tamper == "body changed":
        signed = signing.sign(KEY, body, datetime.now(UTC))
        response = hooked.http(
            "POST", "webhooks/trade-updates", data=body.replace(b"fill", b"new!"), headers=signed
        )
    elif tamper == "stale":
        response = post_signed(hooked, body, at=datetime.now(UTC) - timedelta(minutes=6))
    else:
        response = post_signed(hooked, b"{" + b" " * 20_000 + b"}")
    assert response.status_code == status
    assert response.json()["error"]["field"] == field
    assert KEY.decode() not in response.text + caplog.text


def test_replay_claims_are_forgotten_once_no_signature_could_use_them(hooked: Desk) -> None:
    old = datetime.now(UTC) - REPLAY_CLAIMS_KEPT - timedelta(minutes=1)
    hooked.store.claim(f"{REPLAY_CLAIM_PREFIX}v1=old", {"ts": old.isoformat()}, ts=old)
    body = update("int-nobody:entry")
    signed = signing.sign(KEY, body, datetime.now(UTC))
    headers = {"Content-Type": "application/json", **signed}
    first = hooked.http("POST", "webhooks/trade-updates", data=body, headers=headers)
    assert first.status_code == 202, first.text
    hooked.fire("forget_webhook_replays")
    # The old claim went; the fresh one stays, so its replay is still refused.
    assert hooked.store.claim(f"{REPLAY_CLAIM_PREFIX}v1=old", {}, ts=old).created is True
    again = hooked.http("POST", "webhooks/trade-updates", data=body, headers=headers)
    assert again.status_code == 409


def test_the_webhook_is_off_without_a_secret(desk: Desk) -> None:
    response = post_signed(desk, update("int-1:entry"))
    assert response.status_code == 404
