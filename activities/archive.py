"""The audit trail's daily archive: each closed day of a partition's chain is written once as
JSON lines to write-once storage, and can be verified against the chain and the books.

A day's file is a contiguous slice of the chain: from the record after the last one
archived up to the last record stamped before the day ended. (Stamps come from different
writers and need not rise with the sequence, so a record stamped a moment after midnight
but written before one stamped earlier goes with the earlier day's slice.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from domain.audit import AuditRecord, find_break
from domain.ids import canonical_json
from domain.ports import ArchiveStore, Books


def archive_name(partition: str, day: date) -> str:
    return f"{partition}/{day.isoformat()}.jsonl"


def state_key(partition: str) -> str:
    return f"archive:{partition}"


@dataclass(frozen=True)
class Archived:
    name: str
    records: int
    written: bool  # False: that day was archived before (nothing replaced)


def archive_day(books: Books, archive: ArchiveStore, partition: str, day: date) -> Archived:
    name = archive_name(partition, day)
    stored = books.load(state_key(partition))
    if stored is not None and str(stored.value.get("day", "")) >= day.isoformat():
        return Archived(name, 0, False)  # this day (or a later one) is archived already
    after = -1 if stored is None else int(stored.value["last_seq"])
    end = datetime.combine(day + timedelta(days=1), time(0), UTC)
    pending = books.records(partition, from_seq=after + 1)
    cut = max((i for i, r in enumerate(pending) if r.ts_recorded < end), default=-1)
    chunk = pending[: cut + 1]
    lines = "".join(canonical_json(r.to_dict()) + "\n" for r in chunk).encode("utf-8")
    written = archive.put(name, lines)
    last_seq = chunk[-1].seq if chunk else after
    if not written:
        # Uploaded by a run that died before it noted so: what that file holds is the
        # day's archive (it is never replaced), so the next day starts after its end.
        existing = archive.get(name) or b""
        held = [line for line in existing.splitlines() if line]
        chunk_len = len(held)
        last_seq = json.loads(held[-1])["seq"] if held else after
        value = {"last_seq": last_seq, "day": day.isoformat(), "records": chunk_len}
        version = None if stored is None else stored.version
        books.save(state_key(partition), value, expected_version=version)
        return Archived(name, chunk_len, False)
    value = {"last_seq": last_seq, "day": day.isoformat(), "records": len(chunk)}
    books.save(
        state_key(partition), value, expected_version=None if stored is None else stored.version
    )
    return Archived(name, len(chunk), written)


def verify_archive(books: Books, archive: ArchiveStore, partition: str, day: date) -> str | None:
    """Why the archived day does not hold (missing, edited, out of chain, or different
    from the books), or None when it does."""
    name = archive_name(partition, day)
    data = archive.get(name)
    if data is None:
        return f"{name}: not archived"
    try:
        records = [AuditRecord.from_dict(json.loads(line)) for line in data.splitlines() if line]
    except ValueError as error:
        return f"{name}: unreadable: {error}"
    if not records:
        return None
    first = records[0].seq
    start = None if first == 0 else books.records(partition, from_seq=first - 1, limit=1)[0]
    broken = find_break(records, start=start)
    if broken is not None:
        return f"{name}: record {records[0].seq + broken.index}: {broken.reason}"
    held = books.records(partition, from_seq=first, limit=len(records))
    for kept, copy in zip(held, records, strict=False):
        if kept.hash != copy.hash:
            return f"{name}: record {copy.seq} differs from the books"
    if len(held) < len(records):
        return f"{name}: holds records the books do not"
    return None
