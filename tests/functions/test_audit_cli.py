"""The audit verify command, on books written by the desk and then tampered with."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities import audit_cli
from adapters.sqlite_store import SqliteStore
from domain import audit
from domain.audit import AuditKind

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def books(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "books.sqlite"
    monkeypatch.setenv("TRADING_BOOKS_PATH", str(path))
    monkeypatch.setenv("TRADING_STORE", "sqlite")
    store = SqliteStore(path)
    for n in range(5):
        audit.append(
            store, partition="paper", ts_recorded=T0, kind=AuditKind.SIGNAL,
            event_id=f"s{n}", payload={"n": n},
        )  # fmt: skip
    store.close()
    return path


def test_an_intact_trail_verifies(books: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_cli.main(["verify", "paper"]) == 0
    assert "paper: 5 records, chain verified" in capsys.readouterr().out


def test_an_edited_record_is_reported_where_it_breaks(
    books: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = sqlite3.connect(books)
    (body,) = db.execute("SELECT body FROM audit WHERE partition='paper' AND seq=2").fetchone()
    edited = json.loads(body)
    edited["payload"]["n"] = 99
    db.execute("UPDATE audit SET body=? WHERE partition='paper' AND seq=2", (json.dumps(edited),))
    db.commit()
    db.close()
    assert audit_cli.main(["verify", "paper"]) == 1
    assert "paper: BROKEN at record 2: hash does not match" in capsys.readouterr().out


def test_a_cut_tail_is_caught_with_the_head_kept_elsewhere(
    books: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteStore(books)
    head = store.head("paper")
    store.close()
    assert head is not None
    db = sqlite3.connect(books)
    db.execute("DELETE FROM audit WHERE partition='paper' AND seq=4")
    db.commit()
    db.close()
    assert audit_cli.main(["verify", "paper"]) == 0  # a chain alone cannot see the cut
    assert audit_cli.main(["verify", "paper", "--head", head.hash]) == 1
    assert "the chain ends before the recorded head" in capsys.readouterr().out


def test_a_head_names_one_chain(books: Path) -> None:
    with pytest.raises(SystemExit):
        audit_cli.main(["verify", "--head", "abc"])
