"""The write-ahead log of the SQLite files is checkpointed beside the writers, and nothing
committed depends on it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from adapters.sqlite_store import SqliteStore
from adapters.sqlite_wal import BACKSTOP_PAGES, JOURNAL_LIMIT_BYTES, WalCheckpointer


def _wait_for(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_the_writer_leaves_routine_checkpoints_to_the_thread(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    checkpointer = WalCheckpointer(tmp_path / "x.sqlite", db)
    (pages,) = db.execute("PRAGMA wal_autocheckpoint").fetchone()
    assert pages == BACKSTOP_PAGES
    (limit,) = db.execute("PRAGMA journal_size_limit").fetchone()
    assert limit == JOURNAL_LIMIT_BYTES
    checkpointer.close()
    db.close()


def test_commits_are_checkpointed_shortly_after(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (v BLOB)")
    checkpointer = WalCheckpointer(path, db, interval=0.02)
    try:
        assert checkpointer.checkpoints == 0
        time.sleep(0.1)
        assert checkpointer.checkpoints == 0, "nothing was committed: nothing to do"
        for _ in range(50):
            db.execute("INSERT INTO t VALUES (randomblob(4000))")
        assert path.stat().st_size < 50 * 4000, "the rows are only in the log so far"
        checkpointer.note_commit()
        assert _wait_for(lambda: checkpointer.checkpoints >= 1)
        # What the writer logged has been copied into the database file itself.
        assert path.stat().st_size >= 50 * 4000
    finally:
        checkpointer.close()
        db.close()
    thread = checkpointer._thread
    assert thread is not None and not thread.is_alive(), "closing stops the thread"


def test_the_log_is_cut_back_after_a_burst(tmp_path: Path) -> None:
    path = tmp_path / "burst.sqlite"
    wal = tmp_path / "burst.sqlite-wal"
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (v BLOB)")
    checkpointer = WalCheckpointer(path, db, interval=0.02, journal_limit=256 * 1024)
    try:
        db.execute("BEGIN")
        for _ in range(500):
            db.execute("INSERT INTO t VALUES (randomblob(4000))")
        db.execute("COMMIT")
        assert wal.stat().st_size > 2_000_000, "one burst: the log holds all of it"
        checkpointer.note_commit()
        assert _wait_for(lambda: checkpointer.checkpoints >= 1)
        db.execute("INSERT INTO t VALUES (x'00')")  # the writer starts the log over
        assert wal.stat().st_size <= 256 * 1024
        (count,) = db.execute("SELECT count(*) FROM t").fetchone()
        assert count == 501
    finally:
        checkpointer.close()
        db.close()


def test_books_store_checkpoints_and_keeps_every_write(tmp_path: Path) -> None:
    path = tmp_path / "books.sqlite"
    store = SqliteStore(path)
    try:
        for i in range(200):
            store.save(f"s{i}", {"n": i, "pad": "x" * 2000}, expected_version=None)
        assert _wait_for(lambda: store._checkpointer.checkpoints >= 1)
    finally:
        store.close()
    reopened = SqliteStore(path)
    try:
        saved = reopened.load("s199")
        assert saved is not None and saved.value == {"n": 199, "pad": "x" * 2000}
    finally:
        reopened.close()


def test_a_file_it_cannot_open_is_skipped_not_fatal(tmp_path: Path) -> None:
    writer = sqlite3.connect(":memory:")
    checkpointer = WalCheckpointer(tmp_path / "missing" / "x.sqlite", writer, interval=0.01)
    try:
        checkpointer.note_commit()
        time.sleep(0.1)
        assert checkpointer.checkpoints == 0
    finally:
        checkpointer.close()
        writer.close()


def test_an_in_memory_database_needs_no_thread() -> None:
    writer = sqlite3.connect(":memory:")
    checkpointer = WalCheckpointer(":memory:", writer)
    checkpointer.note_commit()
    checkpointer.close()
    writer.close()
    assert checkpointer.checkpoints == 0
