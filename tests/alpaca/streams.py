"""Local servers that speak Alpaca's two streaming protocols, scripted per connection.

Market data (stocks at ``/v2/{feed}``, crypto at ``/v1beta3/crypto/us``): every frame is
msgpack and always a list of maps; ``connected``, then ``auth`` answered ``authenticated`` or
an error 402, then ``subscribe`` answered with the subscription, then the script. Trade
updates (``/stream``): JSON; ``authenticate`` answered ``authorized`` or ``unauthorized``, then
``listen``, then the script.

A script is a list of steps for one connection (the n-th connection plays ``scripts[n]``,
later ones play nothing): a list of maps (or, for trade updates, a dict) to send, raw
``bytes`` to send as they are, ``DROP`` to close the socket, or a float to pause that many
seconds. After its script a connection stays open and silent.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
from aiohttp import WSMsgType, web

DROP = "drop"
Step = list[dict[str, Any]] | dict[str, Any] | bytes | float | str

KEY = "key"


def stamp(ts: datetime) -> msgpack.Timestamp:
    return msgpack.Timestamp.from_datetime(ts.astimezone(UTC))


def trade(
    symbol: str, price: float, size: float, ts: datetime, trade_id: int = 1
) -> dict[str, Any]:
    return {
        "T": "t",
        "S": symbol,
        "i": trade_id,
        "x": "V",
        "p": price,
        "s": size,
        "t": stamp(ts),
        "c": ["@"],
        "z": "C",
    }


def quote(symbol: str, bid: float, ask: float, ts: datetime) -> dict[str, Any]:
    return {
        "T": "q",
        "S": symbol,
        "bx": "V",
        "bp": bid,
        "bs": 2,
        "ax": "V",
        "ap": ask,
        "as": 3,
        "t": stamp(ts),
        "c": ["R"],
        "z": "C",
    }


def bar(symbol: str, o: float, h: float, lo: float, c: float, ts: datetime) -> dict[str, Any]:
    return {
        "T": "b",
        "S": symbol,
        "o": o,
        "h": h,
        "l": lo,
        "c": c,
        "v": 1200,
        "t": stamp(ts),
        "n": 10,
        "vw": c,
    }


def trade_update(event: str, client_order_id: str, **order: Any) -> dict[str, Any]:
    return {
        "stream": "trade_updates",
        "data": {
            "event": event,
            "execution_id": f"exec-{client_order_id}-{event}",
            "order": {
                "id": f"broker-{client_order_id}",
                "client_order_id": client_order_id,
                **order,
            },
        },
    }


@dataclass
class FakeAlpacaStreams:
    market_scripts: list[list[Step]] = field(default_factory=list)
    trading_scripts: list[list[Step]] = field(default_factory=list)
    market_connections: int = 0
    trading_connections: int = 0
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    listens: int = 0
    refused_logins: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/v2/{feed}", self.market),
                web.get("/v1beta3/crypto/us", self.market),
                web.get("/stream", self.trading),
            ]
        )
        return app

    async def _play(self, ws: web.WebSocketResponse, script: list[Step], pack: Any) -> None:
        for step in script:
            if isinstance(step, float):
                await asyncio.sleep(step)
            elif step == DROP:
                await ws.close()
                return
            elif isinstance(step, bytes):
                await ws.send_bytes(step)
            else:
                await ws.send_bytes(pack(step))
        async for _message in ws:  # silent until the client goes
            pass

    async def market(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        index = self.market_connections
        self.market_connections += 1
        await ws.send_bytes(msgpack.packb([{"T": "success", "msg": "connected"}]))
        auth = msgpack.unpackb((await ws.receive()).data)
        if auth.get("action") != "auth" or auth.get("key") != KEY or not auth.get("secret"):
            self.refused_logins += 1
            await ws.send_bytes(msgpack.packb([{"T": "error", "code": 402, "msg": "auth failed"}]))
            await ws.close()
            return ws
        await ws.send_bytes(msgpack.packb([{"T": "success", "msg": "authenticated"}]))
        message = await ws.receive()
        if message.type is not WSMsgType.BINARY:
            return ws
        subscribe = msgpack.unpackb(message.data)
        self.subscriptions.append(subscribe)
        channels = {k: v for k, v in subscribe.items() if k != "action"}
        await ws.send_bytes(msgpack.packb([{"T": "subscription", **channels}]))
        script = self.market_scripts[index] if index < len(self.market_scripts) else []
        await self._play(ws, script, msgpack.packb)
        return ws

    async def trading(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        index = self.trading_connections
        self.trading_connections += 1
        auth = json.loads((await ws.receive()).data)
        data = auth.get("data") or {}
        if auth.get("action") != "authenticate" or data.get("key_id") != KEY:
            self.refused_logins += 1
            await ws.send_str(
                json.dumps(
                    {
                        "stream": "authorization",
                        "data": {"status": "unauthorized", "action": "authenticate"},
                    }
                )
            )
            await ws.close()
            return ws
        await ws.send_str(
            json.dumps(
                {
                    "stream": "authorization",
                    "data": {"status": "authorized", "action": "authenticate"},
                }
            )
        )
        listen = json.loads((await ws.receive()).data)
        if listen.get("action") == "listen":
            self.listens += 1
            await ws.send_str(
                json.dumps({"stream": "listening", "data": {"streams": ["trade_updates"]}})
            )
        script = self.trading_scripts[index] if index < len(self.trading_scripts) else []
        await self._play(ws, script, lambda step: json.dumps(step).encode())
        return ws
