"""Strategy settings are checked when the processor starts, with errors naming the entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from activities.signals import SignalProcessor
from adapters.bootstrap import Services, Settings
from adapters.simulated_broker import SimulatedBroker
from adapters.sqlite_store import SqliteStore
from domain.errors import ValidationError

SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}


@pytest.mark.parametrize(
    ("strategies", "field"),
    [
        ([SMA, SMA], "TRADING_STRATEGIES[1]"),
        ([{**SMA, "fast": 5}], "TRADING_STRATEGIES[0].fast"),
        ([{**SMA, "quantity": 0}], "TRADING_STRATEGIES[0].quantity"),
        ([{**SMA, "unwind_after_s": "soon"}], "TRADING_STRATEGIES[0].unwind_after_s"),
        ([{**SMA, "plan": "bracket"}], "TRADING_STRATEGIES[0].plan"),
    ],
)
def test_bad_strategy_settings_name_the_entry(
    tmp_path: Path, strategies: list[dict[str, Any]], field: str
) -> None:
    settings = Settings(books_path=tmp_path / "books.sqlite", strategies=tuple(strategies))
    store = SqliteStore(settings.books_path)
    try:
        with pytest.raises(ValidationError) as refused:
            SignalProcessor(Services(settings, store, SimulatedBroker()))
        assert refused.value.field == field
    finally:
        store.close()
