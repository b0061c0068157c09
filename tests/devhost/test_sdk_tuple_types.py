"""Each orchestrator episode builds a new executor in the SDK; devhost lets every executor
use one class for its lookup table's entries instead of defining it again each time."""

from __future__ import annotations

import importlib
from typing import Any

from devhost.durable.sdk import share_executor_tuple_types

# The SDK's executor module (the package ships no type information).
executor: Any = importlib.import_module("azure.durable_functions.models.TaskOrchestrationExecutor")


def _table() -> dict[Any, Any]:
    share_executor_tuple_types()
    table: dict[Any, Any] = executor.TaskOrchestrationExecutor().event_to_SetTaskValuePayload
    return table


def test_executors_share_one_entry_class_with_the_same_entries() -> None:
    first, second = _table(), _table()
    assert first == second
    assert {type(entry) for entry in first.values()} == {type(e) for e in second.values()}
    assert len({type(entry) for entry in first.values()}) == 1
    entry = next(iter(first.values()))
    assert entry._fields == ("is_success", "task_id_key")


def test_unhashable_field_lists_still_get_a_class() -> None:
    share_executor_tuple_types()
    pair = executor.namedtuple("Pair", ["left", "right"])
    assert pair(1, 2).right == 2


def test_installing_twice_keeps_one_factory() -> None:
    share_executor_tuple_types()
    factory = executor.namedtuple
    share_executor_tuple_types()
    assert executor.namedtuple is factory
