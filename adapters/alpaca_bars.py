"""Alpaca's historical stock bars through alpaca-py's ``StockHistoricalDataClient``.

alpaca-py pages through ``GET /v2/stocks/bars`` itself (following ``next_page_token``);
this adapter asks it for the raw JSON rather than its ``BarSet`` of pydantic models, which
would build a Python object per bar (seconds and gigabytes for a year of minutes of a few
symbols), and turns each symbol's bars into numpy columns. A ``BarSet`` (a client made
without ``raw_data``) is read too. Errors map to the domain's tree as the broker adapter's
do: 429, 5xx and transport failures are retryable, the rest final with Alpaca's message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.models import BarSet
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from numpy.typing import NDArray

from adapters.alpaca_broker import TimeoutAdapter, alpaca_fault
from domain.errors import ValidationError

TIMEFRAMES: dict[str, TimeFrame] = {
    "1Min": TimeFrame(1, TimeFrameUnit.Minute),
    "1Hour": TimeFrame(1, TimeFrameUnit.Hour),
    "1Day": TimeFrame(1, TimeFrameUnit.Day),
}


@dataclass(frozen=True, slots=True, eq=False)
class BarColumns:
    """One symbol's bars as Alpaca sent them, oldest first; ``ts`` is each bar's opening
    time in UTC (numpy datetimes carry no zone)."""

    ts: NDArray[np.datetime64]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.ts)


def _utc_ns(texts: Sequence[str]) -> NDArray[np.datetime64]:
    """RFC 3339 times as UTC numpy datetimes. Alpaca writes them with a Z, which numpy
    parses in one pass once the Z is gone; anything else is parsed one by one."""
    if all(t.endswith("Z") for t in texts):
        return np.array([t[:-1] for t in texts], dtype="datetime64[ns]")
    values = []
    for text in texts:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            raise ValidationError("t", f"Alpaca sent a time without a zone: {text!r}")
        values.append(np.datetime64(parsed.astimezone(UTC).replace(tzinfo=None), "ns"))
    return np.array(values, dtype="datetime64[ns]")


def _raw_columns(rows: Sequence[Mapping[str, Any]]) -> BarColumns:
    try:
        return BarColumns(
            ts=_utc_ns([r["t"] for r in rows]),
            open=np.fromiter((r["o"] for r in rows), np.float64, len(rows)),
            high=np.fromiter((r["h"] for r in rows), np.float64, len(rows)),
            low=np.fromiter((r["l"] for r in rows), np.float64, len(rows)),
            close=np.fromiter((r["c"] for r in rows), np.float64, len(rows)),
            volume=np.fromiter((r.get("v") or 0.0 for r in rows), np.float64, len(rows)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValidationError(
            "bars", f"Alpaca sent a bar this adapter cannot read: {error}"
        ) from None


def _model_columns(bars: Iterable[Any]) -> BarColumns:
    items = list(bars)
    ts = [b.timestamp.astimezone(UTC).replace(tzinfo=None) for b in items]
    return BarColumns(
        ts=np.array(ts, dtype="datetime64[ns]"),
        open=np.array([b.open for b in items], dtype=np.float64),
        high=np.array([b.high for b in items], dtype=np.float64),
        low=np.array([b.low for b in items], dtype=np.float64),
        close=np.array([b.close for b in items], dtype=np.float64),
        volume=np.array([b.volume for b in items], dtype=np.float64),
    )


class AlpacaBarSource:
    """Historical bars from Alpaca's market-data API."""

    def __init__(self, client: StockHistoricalDataClient, *, timeout_s: float = 30.0) -> None:
        self._client = client
        # alpaca-py sets no timeout: a hung connection would hold an activity for ever.
        session = getattr(client, "_session", None)
        if session is not None:
            adapter = TimeoutAdapter(timeout_s)
            session.mount("https://", adapter)
            session.mount("http://", adapter)

    @classmethod
    def connect(
        cls, key_id: str, secret: str, *, url_override: str | None = None
    ) -> AlpacaBarSource:
        return cls(
            StockHistoricalDataClient(key_id, secret, raw_data=True, url_override=url_override)
        )

    def fetch(
        self,
        symbols: Sequence[str],
        ts_start: datetime,
        ts_end: datetime,
        timeframe: str,
        *,
        feed: str | None = None,
        adjustment: str | None = None,
    ) -> dict[str, BarColumns]:
        """Every bar of ``symbols`` from ``ts_start`` to ``ts_end``, keyed by symbol; a
        symbol Alpaca has no bars of is absent."""
        if timeframe not in TIMEFRAMES:
            raise ValidationError("timeframe", f"must be one of {', '.join(TIMEFRAMES)}")
        if ts_start.tzinfo is None or ts_end.tzinfo is None:
            raise ValidationError("start", "start and end must be timezone-aware")
        request = StockBarsRequest(
            symbol_or_symbols=list(symbols),
            start=ts_start.astimezone(UTC),
            end=ts_end.astimezone(UTC),
            timeframe=TIMEFRAMES[timeframe],
            feed=None if feed is None else DataFeed(feed),
            adjustment=None if adjustment is None else Adjustment(adjustment),
        )
        try:
            answer = self._client.get_stock_bars(request)
        except (APIError, requests.RequestException) as error:
            raise alpaca_fault(error) from error
        if isinstance(answer, BarSet):
            return {s: _model_columns(b) for s, b in answer.data.items() if b}
        if not isinstance(answer, Mapping):
            raise ValidationError("bars", f"Alpaca answered {type(answer).__name__}")
        return {str(s): _raw_columns(rows) for s, rows in answer.items() if rows}
