"""The tamper-evident audit trail.

Records form one hash chain per partition (an account): each record carries the hash of the
record before it and a hash over its own canonical JSON. Editing a record breaks its own hash;
removing, inserting or reordering records breaks the sequence and the links. ``verify`` walks
a chain and returns the index of the first record that does not fit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

from domain.errors import Conflict, ValidationError
from domain.ids import canonical_json
from domain.serde import parse_ts, require, require_str, ts_str

if TYPE_CHECKING:
    from domain.ports import AuditStore

GENESIS_HASH = "0" * 64
AUDIT_SCHEMA_VERSION = 1


class AuditKind(StrEnum):
    SIGNAL = "signal"
    INTENT = "intent"
    RISK_DECISION = "risk_decision"
    ORDER_EVENT = "order_event"
    FILL = "fill"
    MANUAL_ACTION = "manual_action"
    DEAD_LETTER = "dead_letter"
    RECONCILIATION = "reconciliation"
    ALERT = "alert"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _body(
    partition: str,
    seq: int,
    ts_text: str,
    kind: AuditKind,
    event_id: str,
    correlation: dict[str, str],
    payload: dict[str, Any],
    prev_hash: str,
) -> dict[str, Any]:
    return {
        "v": AUDIT_SCHEMA_VERSION,
        "partition": partition,
        "seq": seq,
        "ts_recorded": ts_text,
        "kind": kind.value,
        "event_id": event_id,
        "correlation": correlation,
        "payload": payload,
        "prev_hash": prev_hash,
    }


@dataclass(frozen=True, slots=True)
class AuditRecord:
    partition: str
    seq: int
    ts_recorded: datetime
    kind: AuditKind
    event_id: str
    correlation: Mapping[str, str] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS_HASH
    hash: str = ""
    # The canonical body ``sealed`` hashed, kept for ``stored_text``. ``replace`` does not
    # copy it (init=False), so it never outlives the fields it was computed from.
    _sealed_body: str = field(default="", init=False, repr=False, compare=False)

    @property
    def record_id(self) -> str:
        """A store key that is unique per position in the chain: two writers racing for the
        same position collide on it instead of forking the chain."""
        return f"{self.partition}:{self.seq:012d}"

    def body(self) -> dict[str, Any]:
        """Everything the hash covers: all fields but the hash itself."""
        return _body(
            self.partition,
            self.seq,
            ts_str(self.ts_recorded),
            self.kind,
            self.event_id,
            dict(self.correlation),
            dict(self.payload),
            self.prev_hash,
        )

    def compute_hash(self) -> str:
        return _digest(canonical_json(self.body()))

    def sealed(self) -> AuditRecord:
        body = canonical_json(self.body())
        record = replace(self, hash=_digest(body))
        object.__setattr__(record, "_sealed_body", body)
        return record

    def stored_text(self) -> str:
        """The record as JSON for a store: the canonical body with the hash added last
        (``from_dict`` needs no key order). A sealed record's body is not encoded again."""
        body = self._sealed_body or canonical_json(self.body())
        hash_text = (
            f'"{self.hash}"'
            if self.hash.isascii() and self.hash.isalnum()
            else canonical_json(self.hash)
        )
        return f'{body[:-1]},"hash":{hash_text}}}'

    def to_dict(self) -> dict[str, Any]:
        data = self.body()
        data["hash"] = self.hash
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        seq = require(data, "seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValidationError("seq", "must be a non-negative integer")
        try:
            kind = AuditKind(require(data, "kind"))
        except ValueError:
            raise ValidationError("kind", f"unknown audit kind {data.get('kind')!r}") from None
        correlation = data.get("correlation") or {}
        payload = data.get("payload") or {}
        if not isinstance(correlation, Mapping):
            raise ValidationError("correlation", "must be an object")
        if not isinstance(payload, Mapping):
            raise ValidationError("payload", "must be an object")
        return cls(
            partition=require_str(data, "partition"),
            seq=seq,
            ts_recorded=parse_ts(require(data, "ts_recorded"), "ts_recorded"),
            kind=kind,
            event_id=require_str(data, "event_id"),
            correlation={str(k): str(v) for k, v in correlation.items()},
            payload=dict(payload),
            prev_hash=require_str(data, "prev_hash"),
            hash=str(data.get("hash", "")),
        )


def next_record(
    previous: AuditRecord | None,
    *,
    partition: str,
    ts_recorded: datetime,
    kind: AuditKind,
    event_id: str,
    correlation: Mapping[str, str] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """The sealed record that follows ``previous`` (``None`` starts a chain)."""
    if ts_recorded.tzinfo is None:
        raise ValidationError("ts_recorded", "must be timezone-aware")
    return _next_sealed(
        previous, partition, ts_recorded, ts_str(ts_recorded), kind, event_id, correlation, payload
    )


def _next_sealed(
    previous: AuditRecord | None,
    partition: str,
    ts_recorded: datetime,
    ts_text: str,
    kind: AuditKind,
    event_id: str,
    correlation: Mapping[str, str] | None,
    payload: Mapping[str, Any] | None,
) -> AuditRecord:
    """``next_record`` with the timestamp's text given (``ts_str(ts_recorded)``, which a
    batch of records shares). The record is built once, already sealed, rather than built
    and then copied with its hash: this is on the way of every signal."""
    if previous is not None and previous.partition != partition:
        raise ValidationError("partition", "a chain never crosses partitions")
    seq = 0 if previous is None else previous.seq + 1
    prev_hash = GENESIS_HASH if previous is None else previous.hash
    own_correlation = dict(correlation or {})
    own_payload = dict(payload or {})
    # Sealing hashes the canonical JSON of the body: a payload it cannot encode fails
    # here, at write time, not when a verifier reads it back.
    text = canonical_json(
        _body(partition, seq, ts_text, kind, event_id, own_correlation, own_payload, prev_hash)
    )
    record = AuditRecord(
        partition=partition,
        seq=seq,
        ts_recorded=ts_recorded,
        kind=kind,
        event_id=event_id,
        correlation=own_correlation,
        payload=own_payload,
        prev_hash=prev_hash,
        hash=_digest(text),
    )
    object.__setattr__(record, "_sealed_body", text)
    return record


@dataclass(frozen=True, slots=True)
class ChainBreak:
    index: int
    reason: str


def find_break(
    records: Sequence[AuditRecord],
    *,
    start: AuditRecord | None = None,
    head: str | None = None,
) -> ChainBreak | None:
    """The first record that does not fit the chain, and why; ``None`` when it verifies.

    ``start`` is the record just before ``records`` when verifying a slice of a longer chain
    (e.g. one archived day). A chain cannot show on its own that records were cut from its
    end: ``head``, the last hash recorded somewhere else, closes that gap.
    """
    previous = start
    for index, record in enumerate(records):
        if record.compute_hash() != record.hash:
            return ChainBreak(index, "hash does not match the record's content")
        expected_seq = 0 if previous is None else previous.seq + 1
        if record.seq != expected_seq:
            return ChainBreak(index, f"sequence {record.seq}, expected {expected_seq}")
        expected_prev = GENESIS_HASH if previous is None else previous.hash
        if record.prev_hash != expected_prev:
            return ChainBreak(index, "prev_hash does not match the previous record's hash")
        if previous is not None and record.partition != previous.partition:
            return ChainBreak(index, "partition changes within a chain")
        previous = record
    if head is not None and (previous is None or previous.hash != head):
        return ChainBreak(len(records), "the chain ends before the recorded head")
    return None


def verify(
    records: Iterable[AuditRecord],
    *,
    start: AuditRecord | None = None,
    head: str | None = None,
) -> int | None:
    """The index of the first broken record, or ``None`` when the whole chain verifies."""
    found = find_break(list(records), start=start, head=head)
    return None if found is None else found.index


def append(
    store: AuditStore,
    *,
    partition: str,
    ts_recorded: datetime,
    kind: AuditKind,
    event_id: str,
    correlation: Mapping[str, str] | None = None,
    payload: Mapping[str, Any] | None = None,
    max_attempts: int = 50,
) -> AuditRecord:
    """Append one event to the partition's chain, exactly once.

    Writing the same ``event_id`` again returns the record already written (callers retry).
    Concurrent writers race for the next position; the loser reads the new head and tries
    the position after it.
    """
    existing = store.find_event(partition, event_id)
    if existing is not None:
        return existing
    for _ in range(max_attempts):
        record = next_record(
            store.head(partition),
            partition=partition,
            ts_recorded=ts_recorded,
            kind=kind,
            event_id=event_id,
            correlation=correlation,
            payload=payload,
        )
        if store.insert(record):
            return record
        existing = store.find_event(partition, event_id)
        if existing is not None:
            return existing
    raise Conflict(f"audit partition {partition!r}: gave up after {max_attempts} contended appends")


@dataclass(frozen=True, slots=True)
class Entry:
    """One event to append (see :func:`append_many`)."""

    kind: AuditKind
    event_id: str
    correlation: Mapping[str, str] | None = None
    payload: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "event_id": self.event_id,
            "correlation": dict(self.correlation or {}),
            "payload": dict(self.payload or {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        try:
            kind = AuditKind(require_str(data, "kind"))
        except ValueError:
            raise ValidationError("kind", "not an audit record kind") from None
        correlation = data.get("correlation") or {}
        payload = data.get("payload") or {}
        if not isinstance(correlation, Mapping) or not isinstance(payload, Mapping):
            raise ValidationError("payload", "correlation and payload must be objects")
        return cls(
            kind=kind,
            event_id=require_str(data, "event_id"),
            correlation={str(k): str(v) for k, v in correlation.items()},
            payload=dict(payload),
        )


def append_many(
    store: AuditStore, *, partition: str, ts_recorded: datetime, entries: Sequence[Entry]
) -> int:
    """Append several events in one write where nobody else is writing; each exactly once
    (events already recorded are skipped). Under contention it falls back to
    :func:`append` per event. Returns how many were new."""
    seen: set[str] = set()
    unique = []
    for item in entries:
        if item.event_id not in seen:
            seen.add(item.event_id)
            unique.append(item)
    known = store.find_events(partition, [item.event_id for item in unique])
    todo = [item for item in unique if item.event_id not in known]
    if not todo:
        return 0
    if ts_recorded.tzinfo is None:
        raise ValidationError("ts_recorded", "must be timezone-aware")
    ts_text = ts_str(ts_recorded)
    records: list[AuditRecord] = []
    previous = store.head(partition)
    for item in todo:
        previous = _next_sealed(
            previous,
            partition,
            ts_recorded,
            ts_text,
            item.kind,
            item.event_id,
            item.correlation,
            item.payload,
        )
        records.append(previous)
    if not store.insert_many(records):
        for item in todo:
            append(
                store,
                partition=partition,
                ts_recorded=ts_recorded,
                kind=item.kind,
                event_id=item.event_id,
                correlation=item.correlation,
                payload=item.payload,
            )
    return len(todo)
