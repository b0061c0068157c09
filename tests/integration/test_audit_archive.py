"""The audit archive round trip through Azurite: each closed day written once, verified
against the chain and the books, and tampering found."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from activities import audit_cli
from activities.archive import archive_day, archive_name, verify_archive
from adapters.blob_archive import BlobArchive
from adapters.sqlite_store import SqliteStore
from domain import audit
from domain.audit import AuditKind
from tests.functions.desk import make_desk

SMA = {"kind": "sma_cross", "symbol": "AAPL", "fast": 2, "slow": 3, "quantity": 10}

DAY1 = date(2026, 3, 2)
DAY2 = date(2026, 3, 3)


@pytest.fixture
def books(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "books.sqlite")
    start = datetime(2026, 3, 2, 23, 57, tzinfo=UTC)
    for n in range(6):  # three records on each side of midnight
        audit.append(
            store, partition="paper", ts_recorded=start + timedelta(minutes=n),
            kind=AuditKind.SIGNAL, event_id=f"s{n}", payload={"n": n},
        )  # fmt: skip
    yield store
    store.close()


@pytest.fixture
def archive(azurite_connection: str) -> BlobArchive:
    return BlobArchive.connect(
        f"audit-{uuid.uuid4().hex[:8]}", connection_string=azurite_connection
    )


def test_each_day_is_archived_once_and_verifies(books: SqliteStore, archive: BlobArchive) -> None:
    first = archive_day(books, archive, "paper", DAY1)
    assert (first.records, first.written) == (3, True)
    again = archive_day(books, archive, "paper", DAY1)
    assert again.written is False
    second = archive_day(books, archive, "paper", DAY2)
    assert (second.records, second.written) == (3, True)
    assert verify_archive(books, archive, "paper", DAY1) is None
    assert verify_archive(books, archive, "paper", DAY2) is None  # chained to day 1's end
    assert verify_archive(books, archive, "paper", date(2026, 3, 4)) is not None


def test_an_archive_edited_behind_the_apps_back_is_caught(
    books: SqliteStore, archive: BlobArchive, azurite_connection: str
) -> None:
    archive_day(books, archive, "paper", DAY1)
    name = archive_name("paper", DAY1)
    original = archive.get(name)
    assert original is not None
    forged = original.replace(b'"n":1', b'"n":7')
    # Only someone bypassing the app can replace a blob: do it as they would.
    archive._container.upload_blob(name, forged, overwrite=True)
    problem = verify_archive(books, archive, "paper", DAY1)
    assert problem is not None and "record 1" in problem


def test_the_nightly_timer_archives_yesterday_for_the_account_and_ingest(
    tmp_path: Path, azurite_connection: str
) -> None:
    container = f"audit-{uuid.uuid4().hex[:8]}"
    desk = make_desk(
        tmp_path,
        strategies=[SMA],
        archive_connection=azurite_connection,
        archive_container=container,
    )
    try:
        desk.prices("AAPL", [100.0, 100.0, 100.0, 101.0])
        desk.settle(5)
        desk.publish([("AAPL", b"not json")])  # a dead letter for the ingest chain
        desk.settle()
        desk.fire("archive_audit")
        archive = desk.services.archive()
        assert archive is not None
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        # The trade's records carry the desk's (March) clock: all closed before yesterday
        # ended. The dead letter was stamped today: it waits for tonight's run.
        paper = archive.get(archive_name("paper", yesterday))
        assert paper is not None and paper.count(b"\n") == len(desk.store.records("paper")) > 0
        assert archive.get(archive_name("ingest", yesterday)) == b""
        assert len(desk.store.records("ingest")) == 1
        for partition in ("paper", "ingest"):
            assert verify_archive(desk.store, archive, partition, yesterday) is None
    finally:
        desk.close()


def test_the_verify_command_checks_an_archived_day(
    books: SqliteStore,
    archive: BlobArchive,
    azurite_connection: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive_day(books, archive, "paper", DAY1)
    monkeypatch.setenv("TRADING_BOOKS_PATH", books.path)
    monkeypatch.setenv("AUDIT_ARCHIVE", azurite_connection)
    monkeypatch.setenv("AUDIT_ARCHIVE_CONTAINER", archive._container.container_name)
    assert audit_cli.main(["verify", "paper", "--archive", DAY1.isoformat()]) == 0
    assert "paper archive 2026-03-02: verified" in capsys.readouterr().out
    assert audit_cli.main(["verify", "paper", "--archive", "2026-03-05"]) == 1


def test_a_run_that_uploaded_but_died_before_noting_it_moves_on_from_the_file(
    books: SqliteStore, archive: BlobArchive
) -> None:
    archive_day(books, archive, "paper", DAY1)
    books.save(  # the note of that run is lost
        "archive:paper", {"last_seq": -1, "day": "2026-03-01", "records": 0},
        expected_version=books.load("archive:paper").version,  # type: ignore[union-attr]
    )  # fmt: skip
    audit.append(  # and a record stamped before midnight arrives late
        books, partition="paper", ts_recorded=datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC),
        kind=AuditKind.SIGNAL, event_id="late",
    )  # fmt: skip
    again = archive_day(books, archive, "paper", DAY1)
    assert (again.written, again.records) == (False, 3)
    second = archive_day(books, archive, "paper", DAY2)
    assert second.written and second.records == 4  # the late record goes with day 2's slice
    assert verify_archive(books, archive, "paper", DAY2) is None
