"""``trade_updates``: order events from the broker (Alpaca's trade-updates stream, relayed to
the ``trade-updates`` Event Hub) wake the trade orchestration the order belongs to.

An update only says "look again": the orchestration asks the broker and books what it
finds, so a lost, repeated or reordered update costs a poll, never a wrong book. Malformed
events are dead-lettered and the batch goes on; an update for an order no orchestration owns
(placed elsewhere, or finished) is ignored.

The same updates may instead be posted to ``POST /api/webhooks/trade-updates``, signed with
``TRADE_UPDATES_WEBHOOK_SECRET`` (``domain.signing``): a request that is unsigned, badly
signed, stale or a replay of one already taken is refused before anything is read from it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import azure.functions as func
import orjson

from activities import service
from adapters.bootstrap import services
from adapters.observability import correlated
from domain import signing
from domain.audit import AuditKind
from domain.errors import ValidationError
from domain.serde import require, require_str
from triggers.blueprint import bp
from triggers.ticks import ORDER_UPDATE_EVENT, raw_event

log = logging.getLogger("desk.trade_updates")

HUB = "trade-updates"
# Each accepted signature is claimed once in the books. A signature is refused anyway once
# its timestamp is out of the window (``signing.DEFAULT_WINDOW`` either side of now), so its
# claim is needed no longer than that; an hour leaves room for clocks that disagree.
REPLAY_CLAIM_PREFIX = "webhook:"
REPLAY_CLAIMS_KEPT = timedelta(hours=1)


def order_of(body: bytes) -> dict[str, str]:
    """The order an update is about: its client order id and what happened. Raises
    ValidationError naming the field for anything else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValidationError("body", "not JSON") from None
    if not isinstance(data, dict):
        raise ValidationError("body", "must be a JSON object")
    payload = data.get("data", data)  # the stream's envelope, or the update itself
    if not isinstance(payload, dict):
        raise ValidationError("data", "must be an object")
    order = require(payload, "order")
    if not isinstance(order, dict):
        raise ValidationError("order", "must be an object")
    cid = require_str(order, "client_order_id", max_len=128)
    if ":" not in cid:
        raise ValidationError("client_order_id", "is not one of this desk's orders")
    return {"client_order_id": cid, "event": str(payload.get("event") or "update")}


@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name=HUB,
    connection="TRADE_UPDATES_EVENTHUB",
    cardinality="many",
)
@bp.durable_client_input(client_name="client")
async def trade_updates(
    events: list[func.EventHubEvent], client: df.DurableOrchestrationClient, context: func.Context
) -> None:
    with correlated(invocation_id=context.invocation_id):
        await _relay(events, client)


async def _relay(events: list[func.EventHubEvent], client: df.DurableOrchestrationClient) -> None:
    svc = services()
    now = datetime.now(UTC)
    for event in events:
        raw = raw_event(event)
        try:
            update = order_of(raw.body)
        except ValidationError as error:
            service.record(
                svc,
                AuditKind.DEAD_LETTER,
                f"{HUB}:{raw.partition}:{raw.seq}",
                ts=now,
                partition=service.DEAD_LETTER_PARTITION,
                payload={**error.to_dict(), "raw": raw.body[:1024].decode("utf-8", "replace")},
            )
            continue
        await wake(client, update)


async def wake(client: df.DurableOrchestrationClient, update: dict[str, str]) -> None:
    """Tell the orchestration owning the order to look again."""
    instance_id = update["client_order_id"].split(":", 1)[0]
    try:
        await client.raise_event(instance_id, ORDER_UPDATE_EVENT, update)
    except Exception as error:  # not ours, or finished: the books are reconciled anyway
        log.info("update for %s not delivered: %s", instance_id, error)


MAX_WEBHOOK_BYTES = 16 * 1024  # one trade update is about 2 KB


def _refusal(status: int, field: str, reason: str) -> func.HttpResponse:
    return func.HttpResponse(
        orjson.dumps({"error": {"field": field, "reason": reason}}),
        status_code=status,
        mimetype="application/json",
    )


@bp.route(route="webhooks/trade-updates", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def trade_update_webhook(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    """One signed trade update. Anonymous to the host: the signature is the authentication."""
    svc = services()
    key = svc.settings.webhook_key
    if key is None:
        return _refusal(404, "webhook", "not enabled (TRADE_UPDATES_WEBHOOK_SECRET is unset)")
    body = req.get_body()
    if len(body) > MAX_WEBHOOK_BYTES:
        return _refusal(413, "body", f"larger than {MAX_WEBHOOK_BYTES} bytes")
    now = datetime.now(UTC)
    try:
        checked = signing.verify(
            key,
            body,
            req.headers.get(signing.TIMESTAMP_HEADER),
            req.headers.get(signing.SIGNATURE_HEADER),
            now=now,
        )
    except ValidationError as error:
        log.warning("trade-update webhook refused: %s", error)
        return _refusal(401, error.field, error.reason)
    claim = svc.store.claim(f"{REPLAY_CLAIM_PREFIX}{checked}", {"ts": now.isoformat()}, ts=now)
    if not claim.created:
        return _refusal(409, signing.SIGNATURE_HEADER, "already taken (a replay)")
    try:
        update = order_of(body)
    except ValidationError as error:
        return _refusal(400, error.field, error.reason)
    await wake(client, update)
    return func.HttpResponse(status_code=202)


@bp.timer_trigger(arg_name="timer", schedule="0 45 0 * * *")
def forget_webhook_replays(timer: func.TimerRequest) -> None:
    """Each night: drop the webhook's replay claims older than any signature it would still
    take, so the books do not keep one row per trade update for ever."""
    before = datetime.now(UTC) - REPLAY_CLAIMS_KEPT
    forgotten = services().store.forget_claims(REPLAY_CLAIM_PREFIX, before=before)
    log.info("trade-update webhook: %d replay claims from before %s forgotten", forgotten, before)
