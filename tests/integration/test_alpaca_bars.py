"""Alpaca's historical bars through the real alpaca-py client, against a local server that
speaks Alpaca's market-data protocol: paging by ``next_page_token``, bars of several symbols
aligned into the engine's arrays, the request Alpaca receives, and every failure mapped to
an error that says what went wrong."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from alpaca.data.historical.stock import StockHistoricalDataClient

from activities.backtest_data import load_bars
from adapters.alpaca_bars import AlpacaBarSource
from devhost.server import BackgroundServer
from domain.errors import RetryableFault, TerminalError, ValidationError
from tests.alpaca.data_server import FakeAlpacaData, make_bars

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def fake() -> FakeAlpacaData:
    msft = make_bars(T0, 25, price=400.0, seed=2)
    del msft[10:12]  # two minutes without a MSFT trade
    return FakeAlpacaData(
        bars={"AAPL": make_bars(T0, 25, price=200.0, seed=1), "MSFT": msft}, max_page=7
    )


@pytest.fixture
def server(fake: FakeAlpacaData) -> Iterator[BackgroundServer]:
    with BackgroundServer(fake.app()) as running:
        yield running


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, server: BackgroundServer) -> None:
    monkeypatch.setenv("ALPACA_KEY_ID", "key")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "secret")
    monkeypatch.setenv("ALPACA_DATA_URL", server.url)


def reference(**overrides: object) -> dict[str, object]:
    source: dict[str, object] = {
        "source": "alpaca",
        "symbols": ["MSFT", "AAPL"],
        "start": "2026-03-02T14:30:00Z",
        "end": "2026-03-02T15:00:00Z",
        "timeframe": "1Min",
    }
    source.update(overrides)
    return source


def column(bars: list[dict[str, Any]], key: str) -> list[float]:
    return [float(b[key]) for b in bars]


@pytest.mark.usefixtures("keys")
def test_bars_come_page_by_page_and_line_up_by_time(fake: FakeAlpacaData) -> None:
    bars = load_bars(reference())

    # 48 bars, at most 7 a page: 7 requests, each after the first with the last's token.
    assert len(fake.requests) == 7
    assert "page_token" not in fake.requests[0]
    assert all(r.get("page_token") for r in fake.requests[1:])
    first = fake.requests[0]
    assert first["symbols"] == "MSFT,AAPL"
    assert first["timeframe"] == "1Min"
    assert datetime.fromisoformat(first["start"]) == T0
    assert datetime.fromisoformat(first["end"]) == T0 + 30 * MINUTE

    assert bars.symbols == ("MSFT", "AAPL")
    assert bars.n_bars == 25
    assert bars.timestamp(0) == T0 and bars.timestamp(24) == T0 + 24 * MINUTE
    aapl = fake.bars["AAPL"]
    np.testing.assert_array_equal(bars.close[:, 1], column(aapl, "c"))
    np.testing.assert_array_equal(bars.open[:, 1], column(aapl, "o"))
    np.testing.assert_array_equal(bars.high[:, 1], column(aapl, "h"))
    np.testing.assert_array_equal(bars.low[:, 1], column(aapl, "l"))
    assert bars.volume is not None
    np.testing.assert_array_equal(bars.volume[:, 1], column(aapl, "v"))

    # MSFT traded nothing at minutes 10 and 11: bars at its last close, without volume.
    msft = fake.bars["MSFT"]
    close = bars.close[:, 0]
    np.testing.assert_array_equal(close[:10], column(msft[:10], "c"))
    np.testing.assert_array_equal(close[12:], column(msft[10:], "c"))
    last = float(msft[9]["c"])
    for price in (bars.open, bars.high, bars.low, bars.close):
        assert list(price[10:12, 0]) == [last, last]
    assert list(bars.volume[10:12, 0]) == [0.0, 0.0]


@pytest.mark.usefixtures("keys")
def test_gaps_can_be_dropped_or_refused() -> None:
    dropped = load_bars(reference(missing="drop"))
    assert dropped.n_bars == 23
    assert T0 + 10 * MINUTE not in [dropped.timestamp(i) for i in range(dropped.n_bars)]

    with pytest.raises(ValidationError) as refused:
        load_bars(reference(missing="error"))
    assert refused.value.field == "missing"
    assert "MSFT has no bar at 2026-03-02T14:40:00Z" in refused.value.reason


@pytest.mark.usefixtures("keys")
def test_the_window_feed_and_adjustment_reach_alpaca(fake: FakeAlpacaData) -> None:
    bars = load_bars(
        reference(
            symbols=["AAPL"],
            start="2026-03-02T14:35:00Z",
            end="2026-03-02T14:44:00Z",
            feed="iex",
            adjustment="split",
        )
    )
    assert bars.n_bars == 10  # Alpaca's end is inclusive
    assert bars.timestamp(0) == T0 + 5 * MINUTE
    np.testing.assert_array_equal(bars.close[:, 0], column(fake.bars["AAPL"][5:15], "c"))
    assert len(fake.requests) == 2
    assert fake.requests[0]["feed"] == "iex" and fake.requests[0]["adjustment"] == "split"
    assert fake.requests[0]["symbols"] == "AAPL"


@pytest.mark.usefixtures("keys")
def test_a_symbol_alpaca_has_no_bars_of_is_named() -> None:
    with pytest.raises(ValidationError) as missing:
        load_bars(reference(symbols=["AAPL", "NVDA"]))
    assert missing.value.field == "symbols"
    assert "no 1Min bars of NVDA" in missing.value.reason


def test_without_keys_it_says_which_settings_are_needed(
    monkeypatch: pytest.MonkeyPatch, fake: FakeAlpacaData, server: BackgroundServer
) -> None:
    monkeypatch.delenv("ALPACA_KEY_ID", raising=False)
    monkeypatch.setenv("ALPACA_SECRET_KEY", "secret")
    monkeypatch.setenv("ALPACA_DATA_URL", server.url)
    with pytest.raises(ValidationError) as refused:
        load_bars(reference())
    assert refused.value.field == "ALPACA_KEY_ID"
    assert "ALPACA_KEY_ID and ALPACA_SECRET_KEY" in refused.value.reason
    assert fake.requests == []


def test_refused_keys_are_final_and_server_errors_retryable(
    monkeypatch: pytest.MonkeyPatch, fake: FakeAlpacaData, server: BackgroundServer
) -> None:
    monkeypatch.setenv("ALPACA_KEY_ID", "wrong")
    monkeypatch.setenv("ALPACA_SECRET_KEY", "secret")
    monkeypatch.setenv("ALPACA_DATA_URL", server.url)
    with pytest.raises(TerminalError, match="401") as refused:
        load_bars(reference())
    assert not isinstance(refused.value, RetryableFault)

    client = StockHistoricalDataClient("key", "secret", raw_data=True, url_override=server.url)
    client._retry_wait = 0  # alpaca-py waits 3 s before its own resend of a 429 otherwise
    source = AlpacaBarSource(client)
    fake.faults = deque([500])
    with pytest.raises(RetryableFault, match="500"):
        source.fetch(["AAPL"], T0, T0 + 30 * MINUTE, "1Min")
    # alpaca-py resends a 429 itself (three times): past that it is the caller's to retry.
    fake.faults = deque([429, 429, 429, 429])
    with pytest.raises(RetryableFault, match="429"):
        source.fetch(["AAPL"], T0, T0 + 30 * MINUTE, "1Min")
    fake.faults = deque([429])
    fetched = source.fetch(["AAPL"], T0, T0 + 30 * MINUTE, "1Min")
    assert len(fetched["AAPL"]) == 25


def test_a_barset_from_a_client_of_models_reads_the_same(server: BackgroundServer) -> None:
    raw = AlpacaBarSource(
        StockHistoricalDataClient("key", "secret", raw_data=True, url_override=server.url)
    ).fetch(["AAPL", "MSFT"], T0, T0 + 30 * MINUTE, "1Min")
    models = AlpacaBarSource(
        StockHistoricalDataClient("key", "secret", url_override=server.url)
    ).fetch(["AAPL", "MSFT"], T0, T0 + 30 * MINUTE, "1Min")
    assert raw.keys() == models.keys() == {"AAPL", "MSFT"}
    for symbol in raw:
        assert len(raw[symbol]) == len(models[symbol]) > 0
        for name in ("ts", "open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(getattr(raw[symbol], name), getattr(models[symbol], name))


def test_a_timeframe_alpaca_does_not_take_is_refused_before_asking(
    fake: FakeAlpacaData, server: BackgroundServer
) -> None:
    source = AlpacaBarSource(
        StockHistoricalDataClient("key", "secret", raw_data=True, url_override=server.url)
    )
    with pytest.raises(ValidationError) as refused:
        source.fetch(["AAPL"], T0, T0 + MINUTE, "5Min")
    assert refused.value.field == "timeframe"
    assert fake.requests == []
    with pytest.raises(ValidationError) as bad:
        load_bars(reference(timeframe="5Min"))
    assert bad.value.field == "timeframe"
