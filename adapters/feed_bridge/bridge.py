"""The feed bridge: Alpaca's streams in, the desk's Event Hubs out.

Market data (trades, quotes, bars of the configured symbols; stocks from ``StockDataStream``,
``BASE/QUOTE`` symbols from ``CryptoDataStream``) goes to the ``ticks`` hub keyed by symbol;
trade updates (``TradingStream``) go to the ``trade-updates`` hub keyed by intent, where the
``trade_updates`` function raises ``order_update`` on the orchestration the order belongs to.
It is a long-running process, not a function: websockets outlive any function timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from adapters.alert_webhook import validate_webhook_url
from adapters.bootstrap import AlpacaSettings
from adapters.feed_bridge.publisher import (
    DEFAULT_LINGER_S,
    DEFAULT_MAX_BYTES,
    BatchingPublisher,
    Producer,
    utc_now,
)
from adapters.feed_bridge.streams import (
    StreamWatch,
    WatchedCryptoStream,
    WatchedStockStream,
    WatchedTradingStream,
)
from adapters.feed_bridge.wire import market_body, market_event, trade_update
from domain.errors import ValidationError
from domain.market import ParseError
from domain.model import parse_symbol
from domain.signing import check_secret

log = logging.getLogger("desk.feed_bridge")

TICKS_HUB = "ticks"
TRADE_UPDATES_HUB = "trade-updates"


class ExitCode(IntEnum):
    STOPPED = 0
    FAILED = 1
    BAD_SETTINGS = 2
    LOGIN_REFUSED = 3


class Channel(StrEnum):
    TRADES = "trades"
    QUOTES = "quotes"
    BARS = "bars"


def _positive(environ: Mapping[str, str], name: str, default: float) -> float:
    text = (environ.get(name) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValidationError(name, f"not a number: {text!r}") from None
    if not value > 0:
        raise ValidationError(name, "must be greater than zero")
    return value


@dataclass(frozen=True)
class BridgeSettings:
    alpaca: AlpacaSettings
    symbols: tuple[str, ...]
    channels: frozenset[Channel] = frozenset({Channel.TRADES})
    data_feed: str = "iex"
    stock_url: str | None = None
    crypto_url: str | None = None
    trading_url: str | None = None
    trade_updates: bool = True
    silence_s: float | None = 60.0
    max_bytes: int = DEFAULT_MAX_BYTES
    linger_s: float = DEFAULT_LINGER_S
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    status_every_s: float = 60.0
    # Trade updates posted to the app's webhook, signed, instead of the trade-updates hub.
    webhook_url: str | None = None
    webhook_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], *, symbols: str | None = None
    ) -> BridgeSettings:
        """``symbols`` (comma-separated) stands in for ``FEED_SYMBOLS`` when given."""
        alpaca = AlpacaSettings.from_environ(environ)
        listed = symbols if symbols is not None else environ.get("FEED_SYMBOLS") or ""
        parsed = tuple(
            dict.fromkeys(parse_symbol(s.strip()) for s in listed.split(",") if s.strip())
        )
        if not parsed:
            raise ValidationError(
                "FEED_SYMBOLS", "name at least one symbol, e.g. AAPL,MSFT,BTC/USD"
            )
        channel_text = environ.get("FEED_CHANNELS") or "trades"
        try:
            channels = frozenset(Channel(c.strip()) for c in channel_text.split(",") if c.strip())
        except ValueError:
            raise ValidationError(
                "FEED_CHANNELS", f"must list trades, quotes or bars, got {channel_text!r}"
            ) from None
        data_feed = (environ.get("FEED_DATA_FEED") or "iex").strip().lower()
        if data_feed not in ("iex", "sip"):
            raise ValidationError("FEED_DATA_FEED", f"must be iex or sip, got {data_feed!r}")
        silence_text = (environ.get("FEED_SILENCE_S") or "").strip().lower()
        silence = (
            None if silence_text in ("off", "0") else _positive(environ, "FEED_SILENCE_S", 60.0)
        )
        max_bytes = int(_positive(environ, "FEED_BATCH_MAX_BYTES", DEFAULT_MAX_BYTES))
        if not 1024 <= max_bytes <= 1024 * 1024:
            raise ValidationError("FEED_BATCH_MAX_BYTES", "must be between 1024 and 1048576")
        updates = (environ.get("FEED_TRADE_UPDATES") or "true").strip().lower()
        if updates not in ("true", "false"):
            raise ValidationError("FEED_TRADE_UPDATES", "must be true or false")
        reconnect_min = _positive(environ, "FEED_RECONNECT_MIN_S", 1.0)
        webhook_url = (environ.get("FEED_TRADE_UPDATES_WEBHOOK") or "").strip() or None
        webhook_key = None
        if webhook_url is not None:
            validate_webhook_url(webhook_url, "FEED_TRADE_UPDATES_WEBHOOK")
            secret = (environ.get("TRADE_UPDATES_WEBHOOK_SECRET") or "").strip()
            if not secret:
                raise ValidationError(
                    "TRADE_UPDATES_WEBHOOK_SECRET", "is needed to sign the webhook's requests"
                )
            webhook_key = check_secret(secret, "TRADE_UPDATES_WEBHOOK_SECRET")
        return cls(
            alpaca=alpaca,
            symbols=parsed,
            channels=channels or frozenset({Channel.TRADES}),
            data_feed=data_feed,
            stock_url=(environ.get("FEED_STOCK_URL") or "").strip() or None,
            crypto_url=(environ.get("FEED_CRYPTO_URL") or "").strip() or None,
            trading_url=(environ.get("FEED_TRADING_URL") or "").strip() or None,
            trade_updates=updates == "true",
            silence_s=silence,
            max_bytes=max_bytes,
            linger_s=_positive(environ, "FEED_LINGER_MS", DEFAULT_LINGER_S * 1000) / 1000,
            reconnect_min_s=reconnect_min,
            reconnect_max_s=max(reconnect_min, _positive(environ, "FEED_RECONNECT_MAX_S", 30.0)),
            status_every_s=_positive(environ, "FEED_STATUS_EVERY_S", 60.0),
            webhook_url=webhook_url,
            webhook_key=webhook_key,
        )

    @property
    def stocks(self) -> tuple[str, ...]:
        return tuple(s for s in self.symbols if "/" not in s)

    @property
    def crypto(self) -> tuple[str, ...]:
        return tuple(s for s in self.symbols if "/" in s)


@dataclass
class FeedBridge:
    settings: BridgeSettings
    producer: Producer
    ticks_hub: str = TICKS_HUB
    trade_updates_hub: str = TRADE_UPDATES_HUB
    publisher: BatchingPublisher = field(init=False)
    watches: list[StreamWatch] = field(default_factory=list, init=False)
    refused: Counter[str] = field(default_factory=Counter, init=False)
    foreign_updates: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.publisher = BatchingPublisher(
            self.producer, max_bytes=self.settings.max_bytes, linger_s=self.settings.linger_s
        )

    # -- handlers --------------------------------------------------------------------------

    def _market_handler(self, watch: StreamWatch) -> Any:
        async def on_market(message: Any) -> None:
            now = utc_now()
            watch.message(now)
            event = market_event(message, now=now)
            if isinstance(event, ParseError):
                self._refuse(watch, event)
                return
            self.publisher.add(self.ticks_hub, event.symbol, market_body(event))

        return on_market

    def _updates_handler(self, watch: StreamWatch) -> Any:
        async def on_update(message: Any) -> None:
            watch.message(utc_now())
            update = trade_update(message)
            if isinstance(update, ParseError):
                if update.field == "client_order_id" and "not one of" in update.reason:
                    self.foreign_updates += 1  # an order placed outside the desk
                else:
                    self._refuse(watch, update)
                return
            key, body = update
            self.publisher.add(self.trade_updates_hub, key, body)

        return on_update

    def _refuse(self, watch: StreamWatch, error: ParseError) -> None:
        self.refused[f"{watch.name}:{error.field}"] += 1
        total = sum(self.refused.values())
        if total <= 10 or total % 1000 == 0:
            log.warning("%s: refused a message (%s), %d so far", watch.name, error, total)

    # -- streams ---------------------------------------------------------------------------

    def streams(self) -> list[Any]:
        from alpaca.data.enums import DataFeed

        s = self.settings
        key, secret = s.alpaca.key_id, s.alpaca.secret
        backoff = {"reconnect_min_s": s.reconnect_min_s, "reconnect_max_s": s.reconnect_max_s}
        built: list[Any] = []
        for name, symbols in (("stocks", s.stocks), ("crypto", s.crypto)):
            if not symbols:
                continue
            watch = StreamWatch(name)
            if name == "stocks":
                stream: Any = WatchedStockStream(
                    key,
                    secret,
                    watch,
                    feed=DataFeed(s.data_feed),
                    url_override=s.stock_url,
                    silence_s=s.silence_s,
                    **backoff,
                )
            else:
                stream = WatchedCryptoStream(
                    key, secret, watch, url_override=s.crypto_url, silence_s=s.silence_s, **backoff
                )
            handler = self._market_handler(watch)
            if Channel.TRADES in s.channels:
                stream.subscribe_trades(handler, *symbols)
            if Channel.QUOTES in s.channels:
                stream.subscribe_quotes(handler, *symbols)
            if Channel.BARS in s.channels:
                stream.subscribe_bars(handler, *symbols)
            built.append(stream)
            self.watches.append(watch)
        if s.trade_updates:
            watch = StreamWatch("trade-updates")
            trading = WatchedTradingStream(
                key, secret, watch, paper=not s.alpaca.live, url_override=s.trading_url, **backoff
            )
            trading.subscribe_trade_updates(self._updates_handler(watch))
            built.append(trading)
            self.watches.append(watch)
        return built

    def status(self) -> dict[str, Any]:
        stats = self.publisher.stats
        return {
            "published": stats.published,
            "batches": stats.batches,
            "queued": self.publisher.pending,
            "send_failures": stats.send_failures,
            "dropped": stats.overflowed + stats.too_large,
            "refused": dict(self.refused),
            "foreign_updates": self.foreign_updates,
            "streams": {
                w.name: {
                    "connections": w.connections,
                    "messages": w.messages,
                    "bad_frames": w.bad_frames,
                }
                for w in self.watches
            },
        }

    async def _report(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.status_every_s)
            log.info("feed bridge: %s", self.status())

    async def run(self, stop: asyncio.Event) -> ExitCode:
        """Bridge until ``stop`` is set or a stream ends by itself (a refused login, or a
        subscription the account does not have); then stop every stream and flush."""
        streams = self.streams()
        flushed = asyncio.Event()
        publishing = asyncio.create_task(self.publisher.run(flushed))
        reporting = asyncio.create_task(self._report(flushed))
        serving = [asyncio.create_task(stream.serve()) for stream in streams]
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([*serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        ended_by_itself = not stop.is_set()
        for stream in streams:
            await stream.stop_ws()
            with contextlib.suppress(Exception):
                await stream.close()  # wakes a pending receive at once
        _done, pending = await asyncio.wait(serving, timeout=5)
        for task in [*pending, stopping]:
            task.cancel()
        await asyncio.gather(*serving, stopping, return_exceptions=True)
        flushed.set()
        await publishing
        await reporting
        with contextlib.suppress(Exception):
            await self.producer.close()
        log.info("feed bridge stopped: %s", self.status())
        refused = [w for w in self.watches if w.auth_error]
        if refused:
            log.error(
                "login refused by Alpaca (%s): check ALPACA_KEY_ID and ALPACA_SECRET_KEY",
                "; ".join(f"{w.name}: {w.auth_error}" for w in refused),
            )
            return ExitCode.LOGIN_REFUSED
        if ended_by_itself:
            log.error("a stream ended by itself; see the log above")
            return ExitCode.FAILED
        return ExitCode.STOPPED
