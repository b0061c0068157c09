"""The SDK reads every history timestamp; devhost gives it a faster reader that returns what
``dateutil`` returns, to the zone object."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import pytest

from devhost.durable.history import format_ts
from devhost.durable.sdk import memoize_history_timestamps

MODULE = "azure.durable_functions.models.history.HistoryEvent"
# What the SDK reads timestamps with (the package ships no type information).
dateutil_parser: Any = importlib.import_module("dateutil.parser")


def _sdk_parse() -> Any:
    memoize_history_timestamps()
    return importlib.import_module(MODULE).dt_parse


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 3, 2, 14, 30, tzinfo=UTC),
        datetime(2026, 3, 2, 14, 30, 5, 123456, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 7, 1, 0, 0, 0, 1, tzinfo=UTC),
    ],
)
def test_devhost_timestamps_read_as_dateutil_reads_them(moment: datetime) -> None:
    text = format_ts(moment)
    fast, slow = _sdk_parse()(text), dateutil_parser.parse(text)
    assert fast == slow == moment
    assert fast.tzinfo is slow.tzinfo or fast.tzinfo == slow.tzinfo
    assert type(fast.tzinfo) is type(slow.tzinfo)
    assert (fast.utcoffset(), fast.tzname(), fast.fold) == (
        slow.utcoffset(),
        slow.tzname(),
        slow.fold,
    )


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-02T14:30:00Z",
        "2026-03-02T14:30:00.1234567Z",
        "2026-03-02T14:30:00.123456+01:00",
        "2026-03-02T14:30:00.123456",
    ],
)
def test_other_forms_are_left_to_dateutil(text: str) -> None:
    assert _sdk_parse()(text) == dateutil_parser.parse(text)


def test_an_impossible_date_fails_as_dateutil_fails() -> None:
    text = "2026-02-30T10:00:00.000000Z"
    with pytest.raises(ValueError) as slow:
        dateutil_parser.parse(text)
    with pytest.raises(ValueError) as fast:
        _sdk_parse()(text)
    assert type(fast.value) is type(slow.value)


def test_installing_twice_keeps_one_reader() -> None:
    first = _sdk_parse()
    assert _sdk_parse() is first
