"""The ports: what the domain and the service layer need from the outside world, as
``typing.Protocol``s. Adapters (SQLite, Cosmos DB, Alpaca, the simulated broker) implement
them; tests use the same adapters or hand-written fakes.

Stores are written for at-least-once callers: every write either has a fixed id (a second
identical write is recognised and changes nothing) or is conditional on a version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from domain.audit import AuditRecord
from domain.fills import Fill


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class AuditStore(Protocol):
    """Append-only, hash-chained records per partition (see ``domain.audit``)."""

    def head(self, partition: str) -> AuditRecord | None:
        """The last record of the partition's chain."""
        ...

    def insert(self, record: AuditRecord) -> bool:
        """Store a sealed record under its ``record_id``; False when that position of the
        chain is already taken (another writer won the race)."""
        ...

    def find_event(self, partition: str, event_id: str) -> AuditRecord | None:
        """The record already written for ``event_id``, if any (makes appends idempotent)."""
        ...

    def records(
        self, partition: str, *, from_seq: int = 0, limit: int | None = None
    ) -> list[AuditRecord]:
        """Records in chain order, starting at ``from_seq``."""
        ...


class FillStore(Protocol):
    def add_fill(self, fill: Fill) -> bool:
        """Record an execution; False when its ``execution_id`` is already recorded."""
        ...

    def fills(self, account: str, *, symbol: str | None = None) -> list[Fill]:
        """The account's fills in the order they were executed."""
        ...


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming an idempotency key: ``created`` is False when an earlier call
    claimed it, and ``value`` is then what that call stored."""

    key: str
    created: bool
    value: Mapping[str, Any]


class IdempotencyStore(Protocol):
    def claim(self, key: str, value: Mapping[str, Any], *, ts: datetime) -> Claim:
        """Atomically store ``value`` under ``key`` unless the key exists."""
        ...


@dataclass(frozen=True, slots=True)
class Versioned:
    value: Mapping[str, Any]
    version: str


class SignalStateStore(Protocol):
    """Snapshots of per-symbol strategy state, so another instance or a restart continues
    exactly where the last one stopped."""

    def load(self, key: str) -> Versioned | None: ...

    def save(self, key: str, value: Mapping[str, Any], *, expected_version: str | None) -> str:
        """Write when the stored version is ``expected_version`` (None: the key must not
        exist yet); returns the new version; raises ``domain.errors.Conflict`` otherwise."""
        ...

    def load_many(self, keys: Sequence[str]) -> dict[str, Versioned]: ...
