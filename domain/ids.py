"""Deterministic identifiers.

The same inputs always give the same id, so a redelivered event or a retried activity
produces the id it produced the first time: that is what makes effects exactly-once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: one text per value, for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_id(prefix: str, *parts: Any, length: int = 32) -> str:
    """``prefix-<hex>``: the first ``length`` hex digits of SHA-256 over the parts.

    32 hex digits are 128 bits: collisions are not a practical concern.
    """
    digest = hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:length]}"
