"""Checkpointing SQLite files in WAL mode off the threads that commit.

SQLite copies the write-ahead log back into the database file when it passes
``wal_autocheckpoint`` pages (1,000 by default), inside whichever commit crosses the line:
that commit then takes some milliseconds instead of a tenth of one, and everything waiting
behind it (an episode, a trigger's start) waits too. Here a daemon thread with its own
connection runs a ``PASSIVE`` checkpoint shortly after commits instead; a passive checkpoint
never blocks a writer, and the sqlite3 module releases the interpreter lock while it runs,
so the copy happens beside the host's work rather than in its way.

Durability does not depend on checkpoints: a committed transaction is in the log, and a
restarted process reads it from there. The committing connection keeps an automatic
checkpoint, at a much larger size, as a backstop should the thread fall behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("desk.sqlite")

# The committing connection's own checkpoint, only reached if the thread cannot keep up
# (a checkpoint every 0.2 s copies a few hundred pages at most under the loads seen here).
BACKSTOP_PAGES = 16_000
# A checkpoint lets the writer start the log over from its beginning, but the file keeps
# the size of its largest burst; past this many bytes the writer cuts it back then.
JOURNAL_LIMIT_BYTES = 64 * 1024 * 1024


class WalCheckpointer:
    """Checkpoints ``path`` every ``interval`` seconds after a commit was noted, leaving the
    committing connection ``writer`` only the backstop of its own."""

    def __init__(
        self,
        path: str | Path,
        writer: sqlite3.Connection,
        *,
        interval: float = 0.2,
        journal_limit: int = JOURNAL_LIMIT_BYTES,
    ) -> None:
        writer.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        writer.execute(f"PRAGMA journal_size_limit={int(journal_limit)}")
        self._path = str(path)
        self._interval = interval
        self._pending = False
        self._stop = threading.Event()
        self.checkpoints = 0
        self._thread: threading.Thread | None = None
        if self._path in ("", ":memory:"):  # no log to copy, nor a file to open twice
            return
        self._thread = threading.Thread(
            target=self._run, name=f"wal-checkpoint:{Path(path).name}", daemon=True
        )
        self._thread.start()

    def note_commit(self) -> None:
        """A transaction was committed: checkpoint within ``interval``. Cheap enough to call
        after every commit (no lock, no system call)."""
        self._pending = True

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=1000")
        return connection

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as error:  # busy, or the file went away: try again later
            log.debug("checkpoint of %s skipped: %s", self._path, error)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self._interval):
                if not self._pending:
                    continue
                self._pending = False
                if connection is None:
                    try:
                        connection = self._connect()
                    except sqlite3.Error as error:
                        log.debug("cannot open %s to checkpoint: %s", self._path, error)
                        continue
                self._checkpoint(connection)
        finally:
            if connection is not None:
                connection.close()

    def close(self) -> None:
        """Stop the thread (its last checkpoint, if one is running, completes first)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
