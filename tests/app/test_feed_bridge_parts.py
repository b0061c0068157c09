"""The feed bridge's parts that need no stream: settings, Alpaca's messages to the desk's
events, and packing Event Hubs batches offline."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import msgpack
import orjson
import pytest

from adapters.feed_bridge.bridge import BridgeSettings, Channel
from adapters.feed_bridge.publisher import pack
from adapters.feed_bridge.wire import market_event, trade_update
from domain.errors import ValidationError
from domain.market import ParseError, Quote, Tick

KEYS = {"ALPACA_KEY_ID": "k", "ALPACA_SECRET_KEY": "s"}
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_settings_defaults_and_symbol_split() -> None:
    settings = BridgeSettings.from_environ({**KEYS, "FEED_SYMBOLS": "AAPL, BTC/USD,AAPL"})
    assert settings.symbols == ("AAPL", "BTC/USD")
    assert settings.stocks == ("AAPL",) and settings.crypto == ("BTC/USD",)
    assert settings.channels == frozenset({Channel.TRADES})
    assert settings.data_feed == "iex"
    assert settings.silence_s == 60.0
    assert settings.trade_updates is True
    assert settings.alpaca.live is False
    secrets = BridgeSettings.from_environ(
        {"ALPACA_KEY_ID": "KEY-ID-1", "ALPACA_SECRET_KEY": "SECRET-1", "FEED_SYMBOLS": "AAPL"}
    )
    assert "KEY-ID-1" not in repr(secrets) and "SECRET-1" not in repr(secrets)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"FEED_SYMBOLS": ""}, "FEED_SYMBOLS"),
        ({"FEED_SYMBOLS": "aapl!"}, "symbol"),
        ({"FEED_CHANNELS": "trades,news"}, "FEED_CHANNELS"),
        ({"FEED_DATA_FEED": "otc"}, "FEED_DATA_FEED"),
        ({"FEED_SILENCE_S": "-3"}, "FEED_SILENCE_S"),
        ({"FEED_BATCH_MAX_BYTES": "100"}, "FEED_BATCH_MAX_BYTES"),
        ({"FEED_BATCH_MAX_BYTES": "lots"}, "FEED_BATCH_MAX_BYTES"),
        ({"FEED_TRADE_UPDATES": "maybe"}, "FEED_TRADE_UPDATES"),
        ({"ALPACA_KEY_ID": ""}, "ALPACA_KEY_ID"),
    ],
)
def test_each_bad_setting_is_named(changes: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        BridgeSettings.from_environ({**KEYS, "FEED_SYMBOLS": "AAPL", **changes})
    assert caught.value.field == field


def test_silence_detection_can_be_switched_off() -> None:
    settings = BridgeSettings.from_environ(
        {**KEYS, "FEED_SYMBOLS": "AAPL", "FEED_SILENCE_S": "off"}
    )
    assert settings.silence_s is None


def test_alpaca_messages_become_validated_desk_events() -> None:
    stamp = msgpack.Timestamp.from_datetime(T0)
    assert market_event(
        {"T": "t", "S": "AAPL", "p": 10.5, "s": 3, "t": stamp, "i": 9}, now=T0
    ) == Tick("AAPL", 10.5, 3.0, T0, "9")
    assert market_event(
        {"T": "q", "S": "AAPL", "bp": 10.0, "bs": 1, "ap": 10.1, "as": 2, "t": stamp}, now=T0
    ) == Quote("AAPL", 10.0, 1.0, 10.1, 2.0, T0)
    crossed = market_event(
        {"T": "q", "S": "AAPL", "bp": 11.0, "bs": 1, "ap": 10.1, "as": 2, "t": stamp}, now=T0
    )
    assert isinstance(crossed, ParseError) and crossed.field == "bid_price"
    status = market_event({"T": "s", "S": "AAPL"}, now=T0)
    assert isinstance(status, ParseError) and status.field == "T"
    future = market_event(
        {
            "T": "t",
            "S": "AAPL",
            "p": 1.0,
            "s": 1,
            "t": msgpack.Timestamp.from_datetime(T0.replace(year=2027)),
        },
        now=T0,
    )
    assert isinstance(future, ParseError) and future.field == "ts"


def test_trade_updates_are_keyed_by_the_intent_of_their_order() -> None:
    message = {
        "stream": "trade_updates",
        "data": {"event": "fill", "order": {"client_order_id": "i-1:tp"}},
    }
    key, body = trade_update(message)  # type: ignore[misc]
    assert key == "i-1" and orjson.loads(body) == message
    for bad, field in [
        ({"stream": "listening", "data": {}}, "stream"),
        ({"stream": "trade_updates", "data": {"event": "fill"}}, "order"),
        ({"stream": "trade_updates", "data": {"order": {"client_order_id": 5}}}, "client_order_id"),
        (
            {"stream": "trade_updates", "data": {"order": {"client_order_id": "by-hand"}}},
            "client_order_id",
        ),
    ]:
        refused = trade_update(bad)
        assert isinstance(refused, ParseError) and refused.field == field


def test_pack_fills_batches_to_the_bound_in_order_and_sets_aside_what_cannot_fit() -> None:
    bodies = [orjson.dumps({"n": i, "pad": "x" * 200}) for i in range(40)]
    huge = b"y" * 5000
    batches, too_large = pack("ticks", "AAPL", [*bodies[:20], huge, *bodies[20:]], 2048)
    assert too_large == [huge]
    assert len(batches) > 2
    assert all(b.size_in_bytes <= 2048 and b.partition_key == "AAPL" for b in batches)
    assert all(len(b.sdk_batch) == len(b.bodies) for b in batches)
    assert [body for b in batches for body in b.bodies] == bodies
    # Each batch but the last is full: the next body would not have fitted.
    for batch, after in pairwise(batches):
        assert batch.size_in_bytes + len(after.bodies[0]) > 2048 - 64


def test_a_webhook_for_trade_updates_needs_https_and_a_secret() -> None:
    base = {**KEYS, "FEED_SYMBOLS": "AAPL", "FEED_TRADE_UPDATES_WEBHOOK": "https://desk/api/x"}
    with pytest.raises(ValidationError) as missing:
        BridgeSettings.from_environ(base)
    assert missing.value.field == "TRADE_UPDATES_WEBHOOK_SECRET"
    with pytest.raises(ValidationError) as plain:
        BridgeSettings.from_environ(
            {
                **base,
                "FEED_TRADE_UPDATES_WEBHOOK": "http://desk/api/x",
                "TRADE_UPDATES_WEBHOOK_SECRET": "s" * 32,
            }
        )
    assert plain.value.field == "FEED_TRADE_UPDATES_WEBHOOK"
    settings = BridgeSettings.from_environ({**base, "TRADE_UPDATES_WEBHOOK_SECRET": "s" * 32})
    assert settings.webhook_key == b"s" * 32 and "s" * 32 not in repr(settings)


def test_a_hub_that_refuses_events_holds_back_only_its_own() -> None:
    import asyncio

    from adapters.feed_bridge.publisher import BatchingPublisher, EventBatch

    sent: list[EventBatch] = []

    class HalfBroken:
        async def send(self, batch: EventBatch) -> None:
            if batch.hub == "trade-updates":
                raise ConnectionError("the webhook is down")
            sent.append(batch)

        async def close(self) -> None:
            pass

    publisher = BatchingPublisher(HalfBroken(), retry_min_s=60.0, retry_max_s=30.0)
    publisher.add("trade-updates", "int-1", b'{"u":1}')
    for n in range(50):
        publisher.add("ticks", "AAPL", b'{"n":%d}' % n)

    async def twice() -> float | None:
        await publisher.flush()
        return await publisher.flush()  # the failing hub waits out its backoff

    retry_in = asyncio.run(twice())
    assert [b for batch in sent for b in batch.bodies] == [b'{"n":%d}' % n for n in range(50)]
    assert publisher.pending == 1 and publisher.stats.send_failures == 1
    assert retry_in is not None and 10.0 <= retry_in <= 30.0  # backoff capped at 30 s
