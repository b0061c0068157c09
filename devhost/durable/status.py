"""What the engine reports about instances and entities."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol


class RuntimeStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    CONTINUED_AS_NEW = "ContinuedAsNew"
    FAILED = "Failed"
    TERMINATED = "Terminated"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED})
TERMINAL_STATUSES: frozenset[RuntimeStatus] = _TERMINAL


def _decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _http_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class OrchestrationStatus:
    """One instance's status. Payloads are kept as the JSON text the app produced
    (``*_json``); the properties decode them."""

    instance_id: str
    name: str
    runtime_status: RuntimeStatus
    execution_id: str
    input_json: str | None
    output_json: str | None
    custom_status_json: str | None
    created_time: datetime
    last_updated_time: datetime
    parent_instance_id: str | None = None
    history: list[dict[str, Any]] | None = None

    @property
    def input(self) -> Any:
        return _decode(self.input_json)

    @property
    def output(self) -> Any:
        return _decode(self.output_json)

    @property
    def custom_status(self) -> Any:
        return _decode(self.custom_status_json)

    def to_dict(self) -> dict[str, Any]:
        """The Durable HTTP API's status body (``GET instances/{id}``), without history."""
        return {
            "name": self.name,
            "instanceId": self.instance_id,
            "runtimeStatus": str(self.runtime_status),
            "input": self.input,
            "customStatus": self.custom_status,
            "output": self.output,
            "createdTime": _http_time(self.created_time),
            "lastUpdatedTime": _http_time(self.last_updated_time),
        }


class HasNameAndKey(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...


@dataclass(frozen=True)
class EntityRef:
    """An entity's id. Names are case-insensitive (stored lower-case, as the extension
    does); keys are case-sensitive."""

    name: str
    key: str

    def __post_init__(self) -> None:
        if not self.name or not self.key:
            raise ValueError("an entity id needs a name and a key")
        object.__setattr__(self, "name", self.name.lower())

    @property
    def scheduler_id(self) -> str:
        return f"@{self.name}@{self.key}"

    @classmethod
    def parse(cls, scheduler_id: str) -> EntityRef:
        if not scheduler_id.startswith("@"):
            raise ValueError(f"{scheduler_id!r} is not an entity id (@name@key)")
        name, separator, key = scheduler_id[1:].partition("@")
        if not separator:
            raise ValueError(f"{scheduler_id!r} is not an entity id (@name@key)")
        return cls(name, key)

    @classmethod
    def of(cls, entity: str | EntityRef | HasNameAndKey | tuple[str, str]) -> EntityRef:
        """Accepts ``"@name@key"``, ``(name, key)``, an :class:`EntityRef` or the SDK's
        ``EntityId``."""
        if isinstance(entity, EntityRef):
            return entity
        if isinstance(entity, str):
            return cls.parse(entity)
        if isinstance(entity, tuple):
            return cls(entity[0], entity[1])
        return cls(str(entity.name), str(entity.key))


@dataclass(frozen=True)
class EntityStatus:
    entity: EntityRef
    exists: bool
    state_json: str | None
    last_modified: datetime | None

    @property
    def state(self) -> Any:
        return _decode(self.state_json)
