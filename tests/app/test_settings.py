"""The desk's settings: defaults, and a clear error naming the setting for each bad value."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.bootstrap import Settings
from domain.errors import ValidationError


def test_defaults_need_no_settings() -> None:
    settings = Settings.from_environ({})
    assert settings.account == "paper"
    assert settings.broker == "simulated"
    assert settings.strategies  # the default strategies
    assert settings.risk_limits is None
    assert settings.manual_approval is False
    assert settings.max_signal_age_s is None  # replays of old market data trade as dated


def test_values_are_parsed() -> None:
    settings = Settings.from_environ(
        {
            "TRADING_ACCOUNT": "desk-1",
            "TRADING_RISK_LIMITS": '{"max_order_quantity": "100"}',
            "TRADING_APPROVAL_NOTIONAL": "25000",
            "TRADING_MANUAL_APPROVAL": "true",
            "TRADING_SIMULATOR": '{"latency_ms": 5, "partial_fill_fraction": "0.5"}',
            "TRADING_POLL_INTERVAL_S": "3",
            "TRADING_MAX_SIGNAL_AGE_S": "45",
        }
    )
    assert settings.account == "desk-1"
    assert settings.risk_limits is not None
    assert settings.risk_limits.max_order_quantity == Decimal(100)
    assert settings.approval_notional == Decimal(25000)
    assert settings.manual_approval is True
    assert settings.simulator.partial_fill_fraction == Decimal("0.5")
    assert settings.poll_interval_s == 3
    assert settings.max_signal_age_s == 45


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRADING_ACCOUNT", "has/slash"),
        ("TRADING_BROKER", "lehman"),
        ("TRADING_STRATEGIES", "[not json"),
        ("TRADING_STRATEGIES", '{"kind": "sma_cross"}'),
        ("TRADING_RISK_LIMITS", "[]"),
        ("TRADING_APPROVAL_NOTIONAL", "-5"),
        ("TRADING_MANUAL_APPROVAL", "maybe"),
        ("TRADING_ENTRY_TIMEOUT_S", "soon"),
        ("TRADING_POLL_INTERVAL_S", "0"),
        ("TRADING_MAX_SIGNAL_AGE_S", "a minute"),
        ("TRADING_MAX_SIGNAL_AGE_S", "-5"),
        ("TRADING_SIMULATOR", '{"reject_rate": 2}'),
        ("TRADING_RISK_LIMITS", '{"max_order_quantity": "-1", "colour": 1}'),
    ],
)
def test_a_bad_setting_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings.from_environ({name: value})
    assert refused.value.field.split(".")[0] == name


def test_alpaca_is_paper_unless_live_is_said_and_needs_its_keys() -> None:
    keys = {"TRADING_BROKER": "alpaca", "ALPACA_KEY_ID": "id", "ALPACA_SECRET_KEY": "secret"}
    paper = Settings.from_environ(keys)
    assert paper.alpaca is not None and paper.alpaca.live is False
    assert "secret" not in repr(paper)  # keys never reach a log line through repr
    live = Settings.from_environ({**keys, "ALPACA_LIVE": "true"})
    assert live.alpaca is not None and live.alpaca.live is True
    with pytest.raises(ValidationError) as refused:
        Settings.from_environ({"TRADING_BROKER": "alpaca"})
    assert refused.value.field == "ALPACA_KEY_ID"
