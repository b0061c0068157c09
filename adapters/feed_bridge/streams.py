"""alpaca-py's streams, with what a bridge that runs for weeks needs on top.

``StockDataStream``, ``CryptoDataStream`` and ``TradingStream`` already reconnect with
exponential backoff and jitter, and the data streams detect a silent socket (``data_timeout``).
What they do not do, these subclasses add at the three seams the pinned alpaca-py 0.44 has
(``_connect``, ``_auth``, ``_start_ws``):

- a refused login stops the stream and is reported, instead of being retried for ever: the
  bridge exits non-zero so a supervisor shows the fault;
- a frame that does not decode (not msgpack / JSON, or not the shape Alpaca always sends) is
  skipped and counted where it is read, instead of surfacing as an exception per frame;
- every (re)connection is counted, and the first data after a reconnection logs the gap.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgpack
from alpaca.data.enums import DataFeed
from alpaca.data.live.crypto import CryptoDataStream
from alpaca.data.live.stock import StockDataStream
from alpaca.trading.stream import TradingStream

log = logging.getLogger("desk.feed_bridge")

# What Alpaca answers to bad keys: the market-data streams' error message for code 402, and
# the message alpaca-py raises for the trading stream's "unauthorized". Any other refusal
# (406 connection limit, a dropped socket) is worth retrying.
AUTH_REFUSALS = ("auth failed", "failed to authenticate", "not authorized", "unauthorized")


@dataclass
class StreamWatch:
    """What one stream has seen; read by the bridge for its status line and exit code."""

    name: str
    connections: int = 0
    bad_frames: int = 0
    messages: int = 0
    auth_error: str | None = None
    ts_last_message: datetime | None = None
    _gap_open: bool = field(default=False, repr=False)
    _last_monotonic: float | None = field(default=None, repr=False)

    def connected(self) -> None:
        self.connections += 1
        if self.connections > 1:
            self._gap_open = True
            log.warning("%s stream reconnected (connection %d)", self.name, self.connections)

    def message(self, now: datetime) -> None:
        """Called for every message the stream hands on."""
        monotonic = time.monotonic()
        if self._gap_open:
            self._gap_open = False
            since = (
                "the start" if self.ts_last_message is None else self.ts_last_message.isoformat()
            )
            silent = 0.0 if self._last_monotonic is None else monotonic - self._last_monotonic
            log.warning(
                "%s stream gap: nothing from %s to %s (%.1fs) across a reconnection",
                self.name,
                since,
                now.isoformat(),
                silent,
            )
        self.messages += 1
        self.ts_last_message = now
        self._last_monotonic = monotonic

    def refused(self, reason: str) -> bool:
        """Records a refused login; True when it is one retrying cannot fix."""
        if any(text in reason.lower() for text in AUTH_REFUSALS):
            self.auth_error = reason
            return True
        return False


def _valid_msgpack(frame: Any) -> bool:
    try:
        decoded = msgpack.unpackb(frame)
    except Exception:  # any undecodable bytes
        return False
    return isinstance(decoded, list) and all(isinstance(item, dict) for item in decoded)


def _valid_json(frame: Any) -> bool:
    try:
        decoded = json.loads(frame)
    except (ValueError, TypeError):
        return False
    return isinstance(decoded, dict)


class _FrameGuard:
    """Wraps a connected websocket: ``recv`` passes on only frames that decode into the
    shape the stream expects; the rest are counted and skipped."""

    def __init__(self, ws: Any, valid: Callable[[Any], bool], watch: StreamWatch) -> None:
        self._ws = ws
        self._valid = valid
        self._watch = watch

    async def recv(self) -> Any:
        while True:
            frame = await self._ws.recv()
            if self._valid(frame):
                return frame
            self._watch.bad_frames += 1
            log.warning(
                "%s stream: skipped a frame that does not decode (%d so far): %r",
                self._watch.name,
                self._watch.bad_frames,
                bytes(frame[:64]) if isinstance(frame, bytes | bytearray) else str(frame)[:64],
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


class _Watched:
    """The seams, shared by the three stream classes (mixed in before alpaca-py's class)."""

    _watch: StreamWatch
    _frames_valid: Callable[[Any], bool]
    _ws: Any

    def _setup(self, watch: StreamWatch, reconnect_min_s: float, reconnect_max_s: float) -> None:
        self._watch = watch
        self._reconnect_min_backoff = reconnect_min_s
        self._reconnect_max_backoff = reconnect_max_s

    async def _connect(self) -> None:
        await super()._connect()  # type: ignore[misc]
        self._ws = _FrameGuard(self._ws, type(self)._frames_valid, self._watch)

    async def _auth(self) -> None:
        try:
            await super()._auth()  # type: ignore[misc]
        except ValueError as error:
            if self._watch.refused(str(error)):
                log.error("%s stream: login refused: %s", self._watch.name, error)
                await super().stop_ws()  # type: ignore[misc]
            raise

    async def _start_ws(self) -> None:
        await super()._start_ws()  # type: ignore[misc]
        self._watch.connected()

    async def serve(self) -> None:
        """Run until stopped (``stop_ws``) or the login is refused."""
        await super()._run_forever()  # type: ignore[misc]


class WatchedStockStream(_Watched, StockDataStream):
    _frames_valid = staticmethod(_valid_msgpack)

    def __init__(
        self,
        key_id: str,
        secret: str,
        watch: StreamWatch,
        *,
        feed: DataFeed = DataFeed.IEX,
        url_override: str | None = None,
        silence_s: float | None = None,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
    ) -> None:
        StockDataStream.__init__(
            self,
            key_id,
            secret,
            raw_data=True,
            feed=feed,
            url_override=url_override,
            data_timeout=silence_s,
        )
        self._setup(watch, reconnect_min_s, reconnect_max_s)


class WatchedCryptoStream(_Watched, CryptoDataStream):
    _frames_valid = staticmethod(_valid_msgpack)

    def __init__(
        self,
        key_id: str,
        secret: str,
        watch: StreamWatch,
        *,
        url_override: str | None = None,
        silence_s: float | None = None,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
    ) -> None:
        CryptoDataStream.__init__(
            self, key_id, secret, raw_data=True, url_override=url_override, data_timeout=silence_s
        )
        self._setup(watch, reconnect_min_s, reconnect_max_s)


class WatchedTradingStream(_Watched, TradingStream):
    """Trade updates are sparse, so silence is normal here: a dead connection is found by
    the websocket's pings. Nothing is replayed after a reconnection; reconciliation closes
    that gap from the broker's REST API."""

    _frames_valid = staticmethod(_valid_json)

    def __init__(
        self,
        key_id: str,
        secret: str,
        watch: StreamWatch,
        *,
        paper: bool = True,
        url_override: str | None = None,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
    ) -> None:
        # alpaca-py types the override as ``str`` but treats a falsy one as absent.
        TradingStream.__init__(
            self, key_id, secret, paper=paper, raw_data=True, url_override=url_override or ""
        )
        self._setup(watch, reconnect_min_s, reconnect_max_s)
