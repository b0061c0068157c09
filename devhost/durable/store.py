"""SQLite persistence for the durable engine (stdlib ``sqlite3``, WAL mode).

Everything that must survive a SIGKILL lives here: instance metadata, the history of each
instance's current execution, entity state, pending messages (orchestration and entity
inboxes, durable timers as messages that become visible at their due time) and pending
activity tasks. The engine collects every change of one dispatch round into a
:class:`WriteBatch` and commits it in one transaction, so an episode's new history and the
work it schedules become durable together, and an activity's completion message together
with the removal of its task.

Only one process may use a store at a time (the engine is its single writer); the statement
texts are constants, so the ``sqlite3`` statement cache keeps them prepared.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.sqlite_wal import WalCheckpointer

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY, value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    parent TEXT
);
CREATE INDEX IF NOT EXISTS instances_by_status ON instances (status, created_at);
CREATE INDEX IF NOT EXISTS instances_by_created ON instances (created_at);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    due INTEGER NOT NULL,
    dedup TEXT UNIQUE,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_target ON messages (target, id);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    dedup TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS entities (
    entity_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT,
    updated_at INTEGER NOT NULL
);
"""

_INSTANCE_COLUMNS = (
    "instance_id, execution_id, name, status, input, output, custom_status, created_at, "
    "updated_at, parent"
)
_UPSERT_INSTANCE = (
    f"INSERT INTO instances ({_INSTANCE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(instance_id) DO UPDATE SET execution_id=excluded.execution_id, "
    "name=excluded.name, status=excluded.status, input=excluded.input, "
    "output=excluded.output, custom_status=excluded.custom_status, "
    "created_at=excluded.created_at, updated_at=excluded.updated_at, parent=excluded.parent"
)


@dataclass(frozen=True)
class InstanceRow:
    instance_id: str
    execution_id: str
    name: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_at: int
    updated_at: int
    parent: str | None

    def astuple(self) -> tuple[Any, ...]:
        return (
            self.instance_id,
            self.execution_id,
            self.name,
            self.status,
            self.input,
            self.output,
            self.custom_status,
            self.created_at,
            self.updated_at,
            self.parent,
        )


@dataclass(frozen=True)
class MessageRow:
    id: int
    target: str
    due: int
    dedup: str | None
    body: str


@dataclass(frozen=True)
class ActivityRow:
    id: int
    instance_id: str
    execution_id: str
    seq: int
    name: str
    input: str | None
    dedup: str


@dataclass(frozen=True)
class EntityRow:
    entity_id: str
    name: str
    key: str
    state: str | None
    updated_at: int


@dataclass
class WriteBatch:
    """Every change of one dispatch round, applied in one transaction.

    Within a round an instance or entity is processed at most once, so the only ordering
    that matters is per table: history wipes before history inserts (a new execution), and
    activity inserts before deletes."""

    history_wipes: list[str] = field(default_factory=list)
    history: list[tuple[str, int, str]] = field(default_factory=list)
    instances: dict[str, InstanceRow | None] = field(default_factory=dict)
    messages: list[MessageRow] = field(default_factory=list)
    message_deletes: list[int] = field(default_factory=list)
    activities: list[ActivityRow] = field(default_factory=list)
    activity_deletes: list[int] = field(default_factory=list)
    entities: dict[str, EntityRow | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.history_wipes
            or self.history
            or self.instances
            or self.messages
            or self.message_deletes
            or self.activities
            or self.activity_deletes
            or self.entities
        )


class Store:
    """The SQLite file behind one engine. Thread-safe through one lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, cached_statements=256
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is atomic and survives a process kill; only an OS crash can
        # lose the last commits, which a local host can live with.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._checkpointer = WalCheckpointer(self.path, self._db)
        try:
            with self.transaction() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                found = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if found is None:
                    db.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                    )
                elif int(found[0]) != SCHEMA_VERSION:
                    raise RuntimeError(
                        f"{self.path}: store schema {found[0]} "
                        f"is not the supported {SCHEMA_VERSION}"
                    )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._checkpointer.close()
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._checkpointer.note_commit()

    def commit(self, batch: WriteBatch) -> None:
        if not batch:
            return
        with self.transaction() as db:
            if batch.history_wipes:
                db.executemany(
                    "DELETE FROM history WHERE instance_id=?", [(i,) for i in batch.history_wipes]
                )
            if batch.history:
                db.executemany(
                    "INSERT INTO history (instance_id, idx, event) VALUES (?,?,?)", batch.history
                )
            upserts = [row.astuple() for row in batch.instances.values() if row is not None]
            deletes = [(key,) for key, row in batch.instances.items() if row is None]
            if upserts:
                db.executemany(_UPSERT_INSTANCE, upserts)
            if deletes:
                db.executemany("DELETE FROM instances WHERE instance_id=?", deletes)
            # A message sent and consumed in the same round (an activity result picked up by
            # its orchestration at once) never needs a row.
            consumed = set(batch.message_deletes)
            sent = {m.id for m in batch.messages}
            inserts = [
                (m.id, m.target, m.due, m.dedup, m.body)
                for m in batch.messages
                if m.id not in consumed
            ]
            if inserts:
                db.executemany(
                    "INSERT INTO messages (id, target, due, dedup, body) VALUES (?,?,?,?,?)",
                    inserts,
                )
            deletes_by_id = [(i,) for i in consumed if i not in sent]
            if deletes_by_id:
                db.executemany("DELETE FROM messages WHERE id=?", deletes_by_id)
            if batch.activities:
                db.executemany(
                    "INSERT INTO activities (id, instance_id, execution_id, seq, name, input, "
                    "dedup) VALUES (?,?,?,?,?,?,?)",
                    [
                        (a.id, a.instance_id, a.execution_id, a.seq, a.name, a.input, a.dedup)
                        for a in batch.activities
                    ],
                )
            if batch.activity_deletes:
                db.executemany(
                    "DELETE FROM activities WHERE id=?", [(i,) for i in batch.activity_deletes]
                )
            entity_upserts = [
                (e.entity_id, e.name, e.key, e.state, e.updated_at)
                for e in batch.entities.values()
                if e is not None
            ]
            entity_deletes = [(key,) for key, e in batch.entities.items() if e is None]
            if entity_upserts:
                db.executemany(
                    "INSERT INTO entities (entity_id, name, key, state, updated_at) "
                    "VALUES (?,?,?,?,?) ON CONFLICT(entity_id) DO UPDATE SET "
                    "state=excluded.state, updated_at=excluded.updated_at",
                    entity_upserts,
                )
            if entity_deletes:
                db.executemany("DELETE FROM entities WHERE entity_id=?", entity_deletes)

    # -- reads ----------------------------------------------------------------------------

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def instance(self, instance_id: str) -> InstanceRow | None:
        rows = self._all(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id=?", (instance_id,)
        )
        return InstanceRow(*rows[0]) if rows else None

    def history(self, instance_id: str) -> list[str]:
        rows = self._all(
            "SELECT event FROM history WHERE instance_id=? ORDER BY idx", (instance_id,)
        )
        return [str(r[0]) for r in rows]

    def query_instances(
        self,
        *,
        statuses: Iterable[str] | None = None,
        created_from: int | None = None,
        created_to: int | None = None,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> list[InstanceRow]:
        clauses: list[str] = []
        params: list[Any] = []
        if statuses is not None:
            wanted = list(statuses)
            if not wanted:
                return []
            clauses.append(f"status IN ({','.join('?' * len(wanted))})")
            params.extend(wanted)
        if created_from is not None:
            clauses.append("created_at >= ?")
            params.append(created_from)
        if created_to is not None:
            clauses.append("created_at <= ?")
            params.append(created_to)
        if prefix:
            clauses.append("substr(instance_id, 1, ?) = ?")
            params.extend([len(prefix), prefix])
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at, instance_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [InstanceRow(*row) for row in self._all(sql, params)]

    def messages(self) -> list[MessageRow]:
        return [
            MessageRow(*row)
            for row in self._all("SELECT id, target, due, dedup, body FROM messages ORDER BY id")
        ]

    def activities(self) -> list[ActivityRow]:
        return [
            ActivityRow(*row)
            for row in self._all(
                "SELECT id, instance_id, execution_id, seq, name, input, dedup FROM activities "
                "ORDER BY id"
            )
        ]

    def entity(self, entity_id: str) -> EntityRow | None:
        rows = self._all(
            "SELECT entity_id, name, key, state, updated_at FROM entities WHERE entity_id=?",
            (entity_id,),
        )
        return EntityRow(*rows[0]) if rows else None

    def entities(self, name: str | None = None) -> list[EntityRow]:
        sql = "SELECT entity_id, name, key, state, updated_at FROM entities"
        params: tuple[Any, ...] = ()
        if name is not None:
            sql += " WHERE name=?"
            params = (name,)
        return [EntityRow(*row) for row in self._all(sql + " ORDER BY entity_id", params)]

    def max_ids(self) -> tuple[int, int]:
        """The highest message id and activity id in use; new ones continue from there."""
        rows = self._all(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM messages), "
            "(SELECT COALESCE(MAX(id), 0) FROM activities)"
        )
        return int(rows[0][0]), int(rows[0][1])
