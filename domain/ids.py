"""Deterministic identifiers.

The same inputs always give the same id, so a redelivered event or a retried activity
produces the id it produced the first time: that is what makes effects exactly-once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# ``json.dumps`` with these options builds this very encoder on every call and encodes
# with it; building it once saves that on the signal path (three ids or hashes per signal).
# The encoder keeps no state between calls, so one instance serves every thread.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: one text per value, for hashing. The text
    is exactly ``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``: stored hashes and ids depend on every byte of it."""
    return _CANONICAL.encode(value)


def stable_id(prefix: str, *parts: Any, length: int = 32) -> str:
    """``prefix-<hex>``: the first ``length`` hex digits of SHA-256 over the parts.

    32 hex digits are 128 bits: collisions are not a practical concern.
    """
    digest = hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:length]}"
