"""Signed webhook requests: HMAC-SHA256 over the timestamp and the body, so a request is
authentic (only holders of the secret can sign), intact (the body is covered) and fresh (a
timestamp outside the window is refused; within it, each signature is accepted once by the
caller's replay store).

Headers: ``X-Desk-Timestamp`` (Unix seconds) and ``X-Desk-Signature`` (``v1=<hex>``), the
HMAC of ``"<timestamp>.<body>"``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from domain.errors import ValidationError

TIMESTAMP_HEADER = "X-Desk-Timestamp"
SIGNATURE_HEADER = "X-Desk-Signature"
VERSION = "v1"
DEFAULT_WINDOW = timedelta(minutes=5)
MIN_SECRET_BYTES = 32


def check_secret(secret: str, field: str) -> bytes:
    key = secret.encode("utf-8")
    if len(key) < MIN_SECRET_BYTES:
        raise ValidationError(field, f"must be at least {MIN_SECRET_BYTES} bytes")
    return key


def signature(key: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"{VERSION}={digest.hexdigest()}"


def sign(key: bytes, body: bytes, now: datetime) -> dict[str, str]:
    """The headers for ``body`` sent at ``now``."""
    timestamp = int(now.timestamp())
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(key, timestamp, body)}


def verify(
    key: bytes,
    body: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    *,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
) -> str:
    """The request's signature when it is authentic and fresh; ValidationError otherwise
    (naming the header, never echoing the expected value)."""
    if not timestamp_header or not timestamp_header.isdigit() or len(timestamp_header) > 12:
        raise ValidationError(TIMESTAMP_HEADER, "must be Unix seconds")
    timestamp = int(timestamp_header)
    if abs(now.timestamp() - timestamp) > window.total_seconds():
        raise ValidationError(TIMESTAMP_HEADER, f"outside the {window} window")
    if not signature_header or not signature_header.startswith(f"{VERSION}="):
        raise ValidationError(SIGNATURE_HEADER, f"must be {VERSION}=<hex>")
    expected = signature(key, timestamp, body)
    if not hmac.compare_digest(
        expected.encode("ascii"), signature_header.encode("utf-8", "replace")
    ):
        raise ValidationError(SIGNATURE_HEADER, "does not match the body")
    return expected
