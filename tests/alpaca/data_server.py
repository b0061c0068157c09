"""A local server that speaks Alpaca's market-data REST protocol for historical stock bars:
``GET /v2/stocks/bars`` with ``symbols``, ``timeframe``, ``start``, ``end``, ``limit`` and
``page_token``, answering ``{"bars": {symbol: [...]}, "next_page_token": ...}`` with the
bars ordered by symbol then time and cut into pages of at most ``limit`` bars (or the
server's own ``max_page``, smaller, to make paging happen on a few bars). ``faults`` answer
the next requests with an error status instead."""

from __future__ import annotations

import base64
import math
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

TIMEFRAMES = {"1Min": timedelta(minutes=1), "1Hour": timedelta(hours=1), "1Day": timedelta(days=1)}
ADJUSTMENTS = {"raw", "split", "dividend", "all"}
FEEDS = {"iex", "sip", "delayed_sip", "otc", "boats", "overnight"}


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_bars(
    start: datetime,
    count: int,
    *,
    step: timedelta = timedelta(minutes=1),
    price: float = 100.0,
    seed: int = 1,
) -> list[dict[str, Any]]:
    """``count`` bars as Alpaca writes them (t, o, h, l, c, v, n, vw), a random walk."""
    rng = random.Random(seed)
    bars = []
    close = price
    for i in range(count):
        open_ = close
        close = round(open_ * math.exp(rng.gauss(0.0, 0.002)), 4)
        high = round(max(open_, close) * (1 + abs(rng.gauss(0.0, 0.001))), 4)
        low = round(min(open_, close) * (1 - abs(rng.gauss(0.0, 0.001))), 4)
        bars.append(
            {
                "t": _rfc3339(start + i * step),
                "o": open_,
                "h": high,
                "l": low,
                "c": close,
                "v": rng.randint(100, 5000),
                "n": rng.randint(1, 80),
                "vw": round((open_ + close) / 2, 4),
            }
        )
    return bars


def _error(status: int, message: str, code: int | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if code is not None:
        body["code"] = code
    return web.json_response(body, status=status)


@dataclass
class FakeAlpacaData:
    bars: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    max_page: int = 10_000  # Alpaca's own cap on limit
    faults: deque[int] = field(default_factory=deque)
    key_id: str = "key"
    requests: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.get("/v2/stocks/bars", self.stock_bars)])
        return app

    @staticmethod
    def _time(text: str | None, name: str) -> datetime | web.Response | None:
        if text is None:
            return None
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return _error(400, f"invalid {name}: {text}")
        if parsed.tzinfo is None:
            return _error(400, f"invalid {name}: {text}")
        return parsed.astimezone(UTC)

    async def stock_bars(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append(query)
        if request.headers.get("APCA-API-KEY-ID") != self.key_id or not request.headers.get(
            "APCA-API-SECRET-KEY"
        ):
            return _error(401, "unauthorized.")
        if self.faults:
            status = self.faults.popleft()
            return _error(status, "too many requests." if status == 429 else "internal error")
        symbols = [s for s in query.get("symbols", "").split(",") if s]
        if not symbols:
            return _error(400, "missing symbols", 40010001)
        if query.get("timeframe") not in TIMEFRAMES:
            return _error(422, f"invalid timeframe: {query.get('timeframe')}", 42210000)
        if "adjustment" in query and query["adjustment"] not in ADJUSTMENTS:
            return _error(422, "invalid adjustment", 42210000)
        if "feed" in query and query["feed"] not in FEEDS:
            return _error(422, "invalid feed", 42210000)
        start = self._time(query.get("start"), "start")
        end = self._time(query.get("end"), "end")
        for bound in (start, end):
            if isinstance(bound, web.Response):
                return bound
        try:
            limit = int(query.get("limit", "1000"))
        except ValueError:
            return _error(422, "invalid limit", 42210000)
        if not 1 <= limit <= 10_000:
            return _error(422, "invalid limit", 42210000)
        limit = min(limit, self.max_page)
        # Every bar asked for, in Alpaca's order: by symbol, then by time. A page token
        # names the first bar of the next page.
        rows: list[tuple[str, dict[str, Any]]] = []
        for symbol in sorted(set(symbols)):
            for bar in self.bars.get(symbol, []):
                ts = datetime.fromisoformat(bar["t"].replace("Z", "+00:00"))
                if isinstance(start, datetime) and ts < start:
                    continue
                if isinstance(end, datetime) and ts > end:
                    continue
                rows.append((symbol, bar))
        offset = 0
        token = query.get("page_token")
        if token:
            try:
                symbol, _, t = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
            except (ValueError, UnicodeDecodeError):
                return _error(400, "invalid page_token", 40010001)
            offset = next(
                (i for i, (s, b) in enumerate(rows) if s == symbol and b["t"] == t), len(rows)
            )
        page = rows[offset : offset + limit]
        following = rows[offset + limit : offset + limit + 1]
        body: dict[str, list[dict[str, Any]]] = {}
        for symbol, bar in page:
            body.setdefault(symbol, []).append(bar)
        next_token = None
        if following:
            symbol, bar = following[0]
            next_token = base64.urlsafe_b64encode(f"{symbol}|{bar['t']}".encode()).decode()
        return web.json_response({"bars": body, "next_page_token": next_token, "currency": "USD"})
