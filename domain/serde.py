"""Exact, JSON-safe conversions shared by every payload's ``to_dict``/``from_dict``.

Decimals travel as strings (JSON numbers would pass through binary floats), datetimes as
ISO 8601 in UTC. Every parser names the field it was reading when it refuses a value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, TypeVar

from domain.errors import ValidationError

E = TypeVar("E", bound=StrEnum)


def parse_enum(kind: type[E], value: object, field: str) -> E:
    """A member of ``kind`` by its wire value, or a ValidationError listing the values."""
    allowed = ", ".join(member.value for member in kind)
    if not isinstance(value, str):
        raise ValidationError(field, f"must be one of {allowed}, got {type(value).__name__}")
    try:
        return kind(value)
    except ValueError:
        raise ValidationError(field, f"must be one of {allowed}, got {value[:40]!r}") from None


def dec_str(value: Decimal) -> str:
    """A Decimal as a plain string without exponent noise (``1E+2`` -> ``100``)."""
    return format(value, "f")


def parse_decimal(value: object, field: str) -> Decimal:
    """A finite Decimal from a JSON value (string, int or float)."""
    if isinstance(value, bool):
        raise ValidationError(field, "must be a number, not a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field, "must be finite")
        # repr gives the shortest string that round-trips: 0.1 -> "0.1", not its binary value.
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValidationError(field, f"not a number: {value[:40]!r}") from None
    else:
        raise ValidationError(field, f"must be a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValidationError(field, "must be finite")
    return result


def parse_positive_decimal(value: object, field: str) -> Decimal:
    result = parse_decimal(value, field)
    if result <= 0:
        raise ValidationError(field, "must be greater than zero")
    return result


def parse_non_negative_decimal(value: object, field: str) -> Decimal:
    result = parse_decimal(value, field)
    if result < 0:
        raise ValidationError(field, "must not be negative")
    return result


def ts_str(ts: datetime) -> str:
    """A timezone-aware datetime as ISO 8601 in UTC."""
    if ts.tzinfo is None:
        raise ValidationError("timestamp", "must be timezone-aware")
    return ts.astimezone(UTC).isoformat()


def parse_ts(value: object, field: str) -> datetime:
    """A timezone-aware UTC datetime from ISO 8601 text (``Z`` allowed) or a datetime."""
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(field, f"not an ISO 8601 timestamp: {value[:40]!r}") from None
    else:
        raise ValidationError(field, f"must be an ISO 8601 string, got {type(value).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValidationError(field, "must carry a timezone (e.g. 'Z' or '+00:00')")
    return ts.astimezone(UTC)


def require(data: Mapping[str, Any], field: str) -> Any:
    """The value of a required field, or a ValidationError naming it."""
    if field not in data or data[field] is None:
        raise ValidationError(field, "is required")
    return data[field]


def require_str(data: Mapping[str, Any], field: str, *, max_len: int = 256) -> str:
    value = require(data, field)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "must be a non-empty string")
    if len(value) > max_len:
        raise ValidationError(field, f"longer than {max_len} characters")
    return value
