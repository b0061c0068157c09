"""A trade that traded nothing gives its strategy's target move back, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.signals import UNDONE_KEPT, undo_target_move
from adapters.sqlite_store import SqliteStore
from domain.errors import ValidationError
from domain.execution import TargetMove
from domain.ports import Versioned

KEY = "strategy:sma_cross:AAPL:2:3"


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    books = SqliteStore(tmp_path / "books.sqlite")
    books.save(KEY, {"v": 1, "strategy": {}, "targets": [1]}, expected_version=None)
    return books


def state(store: SqliteStore) -> Versioned:
    found = store.load(KEY)
    assert found is not None
    return found


def test_the_move_is_given_back_once(store: SqliteStore) -> None:
    entry = TargetMove(KEY, (0,), (1,))
    assert undo_target_move(store, "int-a", entry) is True
    assert state(store).value["targets"] == [0]
    assert undo_target_move(store, "int-a", entry) is False  # a retried activity
    assert state(store).value["targets"] == [0]
    assert state(store).value["undone"] == ["int-a"]


def test_a_later_move_stays_and_the_difference_comes_off_it(store: SqliteStore) -> None:
    # The exit (1 -> 0) was planned before the entry (0 -> 1) gave its move back: the
    # targets end at -1, which is what the books hold once that exit has sold ten shares
    # the entry never bought; the next entry then buys twenty, back to the size.
    found = state(store)
    store.save(KEY, {**found.value, "targets": [0]}, expected_version=found.version)
    assert undo_target_move(store, "int-a", TargetMove(KEY, (0,), (1,))) is True
    assert state(store).value["targets"] == [-1]


def test_nothing_is_given_back_to_a_state_that_is_gone_or_changed_shape(
    store: SqliteStore,
) -> None:
    assert undo_target_move(store, "int-a", TargetMove("strategy:gone", (0,), (1,))) is False
    assert undo_target_move(store, "int-b", TargetMove(KEY, (0, 0), (1, -1))) is False
    assert state(store).value["targets"] == [1]


def test_only_the_newest_give_backs_are_remembered(store: SqliteStore) -> None:
    for index in range(UNDONE_KEPT + 5):
        assert undo_target_move(store, f"int-{index}", TargetMove(KEY, (0,), (0,)))
    undone = state(store).value["undone"]
    assert len(undone) == UNDONE_KEPT and undone[-1] == f"int-{UNDONE_KEPT + 4}"


def test_a_move_round_trips_and_refuses_bad_targets() -> None:
    move = TargetMove(KEY, (0, 1), (1, -1))
    assert TargetMove.from_dict(move.to_dict()) == move
    with pytest.raises(ValidationError):
        TargetMove.from_dict({"state_key": KEY, "before": [0], "after": [True]})
    with pytest.raises(ValidationError):
        TargetMove(KEY, (0,), (1, 0))
