"""Signed webhook requests: authentic, intact and fresh, or refused naming the header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import ValidationError
from domain.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, check_secret, sign, verify

KEY = check_secret("k" * 32, "SECRET")
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_a_signed_body_verifies_within_the_window_on_either_side() -> None:
    for skew in (timedelta(0), timedelta(minutes=4), -timedelta(minutes=4)):
        headers = sign(KEY, b"{}", NOW + skew)
        assert verify(KEY, b"{}", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "signature_value", "field"),
    [
        (None, "v1=00", TIMESTAMP_HEADER),
        ("yesterday", "v1=00", TIMESTAMP_HEADER),
        ("-5", "v1=00", TIMESTAMP_HEADER),
        (str(int((NOW + timedelta(minutes=6)).timestamp())), "v1=00", TIMESTAMP_HEADER),
        (str(int(NOW.timestamp())), None, SIGNATURE_HEADER),
        (str(int(NOW.timestamp())), "sha256=00", SIGNATURE_HEADER),
        (str(int(NOW.timestamp())), "v1=" + "0" * 64, SIGNATURE_HEADER),
        (str(int(NOW.timestamp())), "v1=\u00e9", SIGNATURE_HEADER),
    ],
)
def test_anything_else_is_refused_naming_the_header(
    timestamp: str | None, signature_value: str | None, field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        verify(KEY, b"{}", timestamp, signature_value, now=NOW)
    assert refused.value.field == field


def test_the_signature_covers_the_timestamp_and_the_body() -> None:
    headers = sign(KEY, b'{"a":1}', NOW)
    later = str(int(headers[TIMESTAMP_HEADER]) + 1)
    with pytest.raises(ValidationError):
        verify(KEY, b'{"a":1}', later, headers[SIGNATURE_HEADER], now=NOW)
    with pytest.raises(ValidationError):
        verify(KEY, b'{"a":2}', headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=NOW)


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValidationError):
        check_secret("short", "SECRET")
