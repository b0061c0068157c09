"""The embedded store: SQLite (WAL) behind the domain's store ports.

One file holds the audit trail, fills, idempotency claims and strategy-state snapshots.
Every write is idempotent by a fixed key or conditional on a version, so retried
activities and redelivered events cannot write twice.

The write-ahead log is copied back into the file by ``WalCheckpointer`` beside the writes,
not inside whichever write crosses SQLite's checkpoint mark (on the way from a tick to the
broker).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from adapters.sqlite_wal import WalCheckpointer
from domain.audit import AuditRecord
from domain.errors import Conflict
from domain.fills import Fill
from domain.ids import canonical_json
from domain.orders import (
    TERMINAL,
    Order,
    OrderPage,
    page_after,
    page_of,
)
from domain.portfolio import Position
from domain.ports import Claim, Versioned
from domain.serde import ts_str

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    record_id TEXT PRIMARY KEY,
    partition TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (partition, seq),
    UNIQUE (partition, event_id)
);
CREATE TABLE IF NOT EXISTS fills (
    execution_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    symbol TEXT NOT NULL,
    ts_filled TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_by_account ON fills (account, ts_filled);
CREATE INDEX IF NOT EXISTS fills_by_order ON fills (json_extract(body, '$.client_order_id'));
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    ts_claimed TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY,
    intent_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_intent ON orders (intent_id);
CREATE TABLE IF NOT EXISTS positions (
    account TEXT NOT NULL,
    symbol TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (account, symbol)
);
CREATE TABLE IF NOT EXISTS signal_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version TEXT NOT NULL
);
"""


class SqliteStore:
    """Implements AuditStore, FillStore, IdempotencyStore, SignalStateStore, OrderStore
    and PositionStore."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        (stored,) = self._db.execute(
            "SELECT value FROM meta WHERE name = 'schema_version'"
        ).fetchone()
        if int(stored) != SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path}: books schema {stored} is not the supported {SCHEMA_VERSION}"
            )
        self._checkpointer = WalCheckpointer(self.path, self._db)

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._checkpointer.note_commit()

    def _one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(sql, params).fetchone()
            return row

    # -- audit ---------------------------------------------------------------------------

    def head(self, partition: str) -> AuditRecord | None:
        row = self._one(
            "SELECT body FROM audit WHERE partition = ? ORDER BY seq DESC LIMIT 1", (partition,)
        )
        return None if row is None else AuditRecord.from_dict(json.loads(row[0]))

    def insert(self, record: AuditRecord) -> bool:
        return self.insert_many([record])

    def insert_many(self, records: Sequence[AuditRecord]) -> bool:
        """All of ``records`` in one transaction, or none (a position already taken)."""
        try:
            with self._transaction() as db:
                db.executemany(
                    "INSERT INTO audit VALUES (?, ?, ?, ?, ?)",
                    [
                        (
                            r.record_id,
                            r.partition,
                            r.seq,
                            r.event_id,
                            r.stored_text(),
                        )
                        for r in records
                    ],
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def find_events(self, partition: str, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        with self._lock:
            rows = self._db.execute(
                f"SELECT event_id FROM audit WHERE partition = ? AND event_id IN "
                f"({','.join('?' * len(event_ids))})",
                [partition, *event_ids],
            ).fetchall()
        return {event_id for (event_id,) in rows}

    def find_event(self, partition: str, event_id: str) -> AuditRecord | None:
        row = self._one(
            "SELECT body FROM audit WHERE partition = ? AND event_id = ?", (partition, event_id)
        )
        return None if row is None else AuditRecord.from_dict(json.loads(row[0]))

    def records(
        self, partition: str, *, from_seq: int = 0, limit: int | None = None
    ) -> list[AuditRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM audit WHERE partition = ? AND seq >= ? ORDER BY seq LIMIT ?",
                (partition, from_seq, -1 if limit is None else limit),
            ).fetchall()
        return [AuditRecord.from_dict(json.loads(body)) for (body,) in rows]

    # -- fills ---------------------------------------------------------------------------

    @staticmethod
    def _insert_fill(db: sqlite3.Connection, fill: Fill) -> bool:
        cursor = db.execute(
            "INSERT OR IGNORE INTO fills VALUES (?, ?, ?, ?, ?)",
            (
                fill.execution_id,
                fill.account,
                fill.symbol,
                ts_str(fill.ts_filled),
                canonical_json(fill.to_dict()),
            ),
        )
        return cursor.rowcount == 1

    @staticmethod
    def _has_fill(db: sqlite3.Connection, execution_id: str) -> bool:
        found = db.execute("SELECT 1 FROM fills WHERE execution_id = ?", (execution_id,))
        return found.fetchone() is not None

    def add_fill(self, fill: Fill) -> bool:
        with self._transaction() as db:
            return self._insert_fill(db, fill)

    def fills(self, account: str, *, symbol: str | None = None) -> list[Fill]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM fills WHERE account = ? AND (? IS NULL OR symbol = ?) "
                "ORDER BY ts_filled, execution_id",
                (account, symbol, symbol),
            ).fetchall()
        return [Fill.from_dict(json.loads(body)) for (body,) in rows]

    def fills_for_order(self, client_order_id: str) -> list[Fill]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM fills WHERE json_extract(body, '$.client_order_id') = ? "
                "ORDER BY ts_filled, execution_id",
                (client_order_id,),
            ).fetchall()
        return [Fill.from_dict(json.loads(body)) for (body,) in rows]

    # -- positions -------------------------------------------------------------------------

    def apply_fill_to_position(
        self, fill: Fill, *, booked_before: Decimal | None = None
    ) -> Position:
        """The fill is recorded and the position moved in one transaction, so a fill seen
        twice, or by two writers at once, moves the position once. With ``booked_before``
        the order's fills recorded so far must add up to it (``Conflict`` otherwise): two
        writers that saw the broker at different moments cannot both book the difference."""
        with self._transaction() as db:
            if booked_before is not None and not self._has_fill(db, fill.execution_id):
                booked = sum(
                    (
                        Decimal(str(json.loads(body)["quantity"]))
                        for (body,) in db.execute(
                            "SELECT body FROM fills "
                            "WHERE json_extract(body, '$.client_order_id') = ?",
                            (fill.client_order_id,),
                        )
                    ),
                    Decimal(0),
                )
                if booked != booked_before:
                    raise Conflict(
                        f"order {fill.client_order_id}: {booked} booked, not {booked_before}"
                    )
            inserted = self._insert_fill(db, fill)
            row = db.execute(
                "SELECT body FROM positions WHERE account = ? AND symbol = ?",
                (fill.account, fill.symbol),
            ).fetchone()
            current = (
                Position(fill.account, fill.symbol)
                if row is None
                else Position.from_dict(json.loads(row[0]))
            )
            if not inserted:
                return current
            after = current.apply(fill)
            db.execute(
                "INSERT INTO positions VALUES (?, ?, ?) ON CONFLICT(account, symbol) "
                "DO UPDATE SET body = excluded.body",
                (fill.account, fill.symbol, canonical_json(after.to_dict())),
            )
            return after

    def positions(self, account: str) -> list[Position]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM positions WHERE account = ? ORDER BY symbol", (account,)
            ).fetchall()
        return [Position.from_dict(json.loads(body)) for (body,) in rows]

    # -- orders ----------------------------------------------------------------------------

    def create_order(self, order: Order) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?)",
                (
                    order.client_order_id,
                    order.intent_id,
                    order.version,
                    canonical_json(order.to_dict()),
                ),
            )
            return cursor.rowcount == 1

    def update_order(self, order: Order, *, expected_version: int) -> None:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE orders SET version = ?, body = ? WHERE client_order_id = ? AND version = ?",
                (
                    order.version,
                    canonical_json(order.to_dict()),
                    order.client_order_id,
                    expected_version,
                ),
            )
            if cursor.rowcount != 1:
                raise Conflict(
                    f"order {order.client_order_id} changed since version {expected_version}"
                )

    def get_order(self, client_order_id: str) -> Order | None:
        row = self._one("SELECT body FROM orders WHERE client_order_id = ?", (client_order_id,))
        return None if row is None else Order.from_dict(json.loads(row[0]))

    def orders_for_intent(self, intent_id: str) -> list[Order]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM orders WHERE intent_id = ? ORDER BY client_order_id",
                (intent_id,),
            ).fetchall()
        return [Order.from_dict(json.loads(body)) for (body,) in rows]

    def order_history(
        self,
        account: str,
        ts_from: datetime,
        ts_to: datetime,
        *,
        limit: int,
        continuation: str | None = None,
    ) -> OrderPage:
        after_ts, after_cid = page_after(continuation)
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM orders WHERE json_extract(body, '$.account') = ? "
                "AND json_extract(body, '$.ts_created') >= ? "
                "AND json_extract(body, '$.ts_created') < ? "
                "AND (json_extract(body, '$.ts_created') > ? OR "
                "(json_extract(body, '$.ts_created') = ? AND client_order_id > ?)) "
                "ORDER BY json_extract(body, '$.ts_created'), client_order_id LIMIT ?",
                (account, ts_str(ts_from), ts_str(ts_to), after_ts, after_ts, after_cid, limit + 1),
            ).fetchall()
        return page_of([Order.from_dict(json.loads(body)) for (body,) in rows], limit)

    def all_orders(self) -> list[Order]:
        """Every order in the books (reports and inspection)."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM orders ORDER BY client_order_id").fetchall()
        return [Order.from_dict(json.loads(body)) for (body,) in rows]

    def open_orders(self) -> list[Order]:
        """Orders whose status is not final, oldest id first."""
        finals = sorted(status.value for status in TERMINAL)
        marks = ", ".join("?" * len(finals))
        with self._lock:
            rows = self._db.execute(
                f"SELECT body FROM orders WHERE json_extract(body, '$.status') NOT IN ({marks}) "
                "ORDER BY client_order_id",
                finals,
            ).fetchall()
        return [Order.from_dict(json.loads(body)) for (body,) in rows]

    # -- idempotency claims ----------------------------------------------------------------

    def claim(self, key: str, value: Mapping[str, Any], *, ts: datetime) -> Claim:
        text = canonical_json(dict(value))
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO claims VALUES (?, ?, ?)", (key, text, ts_str(ts))
            )
            if cursor.rowcount == 1:
                return Claim(key, True, json.loads(text))
            row = db.execute("SELECT value FROM claims WHERE key = ?", (key,)).fetchone()
        return Claim(key, False, json.loads(row[0]))

    def forget_claims(self, prefix: str, *, before: datetime) -> int:
        if not prefix:
            raise ValueError("a prefix is required: claims are forgotten by kind")
        # The keys with the prefix are those from the prefix up to the same text with its
        # last character one higher: a range the primary key's index answers.
        following = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM claims WHERE key >= ? AND key < ? AND ts_claimed < ?",
                (prefix, following, ts_str(before)),
            )
            return cursor.rowcount

    # -- signal state ----------------------------------------------------------------------

    def load(self, key: str) -> Versioned | None:
        row = self._one("SELECT value, version FROM signal_state WHERE key = ?", (key,))
        return None if row is None else Versioned(orjson.loads(row[0]), row[1])

    def versions(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT key, version FROM signal_state WHERE key IN ({','.join('?' * len(keys))})",
                list(keys),
            ).fetchall()
        return dict(rows)

    def load_many(self, keys: Sequence[str]) -> dict[str, Versioned]:
        if not keys:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT key, value, version FROM signal_state WHERE key IN "
                f"({','.join('?' * len(keys))})",
                list(keys),
            ).fetchall()
        return {key: Versioned(orjson.loads(value), version) for key, value, version in rows}

    def save(self, key: str, value: Mapping[str, Any], *, expected_version: str | None) -> str:
        return self.save_many([(key, value, expected_version)])[0]

    def save_many(self, items: Sequence[tuple[str, Mapping[str, Any], str | None]]) -> list[str]:
        """Every write of ``items`` in one transaction, or none: raises ``Conflict`` when a
        key's stored version is not the one expected."""
        # A version only has to differ from every earlier one of its key: 128 random bits.
        versions = [os.urandom(16).hex() for _ in items]
        inserts: list[tuple[str, str, str]] = []
        updates: list[tuple[str, str, str, str]] = []
        for (key, value, expected_version), version in zip(items, versions, strict=True):
            text = orjson.dumps(value if type(value) is dict else dict(value)).decode()
            if expected_version is None:
                inserts.append((key, text, version))
            else:
                updates.append((text, version, key, expected_version))
        with self._transaction() as db:
            # One statement each for the batch's creations and updates: a row not written
            # (a key created, or moved on, elsewhere) shows in the summed row count.
            written = 0
            if inserts:
                written += db.executemany(
                    "INSERT OR IGNORE INTO signal_state VALUES (?, ?, ?)", inserts
                ).rowcount
            if updates:
                written += db.executemany(
                    "UPDATE signal_state SET value = ?, version = ? WHERE key = ? AND version = ?",
                    updates,
                ).rowcount
            if written != len(items):
                raise self._state_conflict(db, items, versions)
        return versions

    @staticmethod
    def _state_conflict(
        db: sqlite3.Connection,
        items: Sequence[tuple[str, Mapping[str, Any], str | None]],
        versions: Sequence[str],
    ) -> Conflict:
        """The first key of ``items`` whose write did not take (the caller rolls back)."""
        for (key, _, expected_version), version in zip(items, versions, strict=True):
            row = db.execute("SELECT version FROM signal_state WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] != version:
                return Conflict(f"signal state {key!r} changed since version {expected_version}")
        return Conflict("signal state changed during the write")
