"""devhost's durable engine: orchestrations, activities and entities of the unchanged app,
replayed through the real ``azure-functions-durable`` SDK and persisted in SQLite.

The in-process API is :class:`DurableEngine`; see :mod:`devhost.durable.engine`.
"""

from devhost.durable.clock import Clock, SystemClock, VirtualClock
from devhost.durable.engine import DurableEngine, EngineStats, ExistingInstance, IdleReport
from devhost.durable.errors import (
    DurableEngineError,
    EngineBusy,
    FunctionNotFound,
    InstanceAlreadyExists,
    InstanceNotFound,
    InstanceNotRunning,
    InstanceStillRunning,
)
from devhost.durable.status import (
    TERMINAL_STATUSES,
    EntityRef,
    EntityStatus,
    OrchestrationStatus,
    RuntimeStatus,
)

__all__ = [
    "TERMINAL_STATUSES",
    "Clock",
    "DurableEngine",
    "DurableEngineError",
    "EngineBusy",
    "EngineStats",
    "EntityRef",
    "EntityStatus",
    "ExistingInstance",
    "FunctionNotFound",
    "IdleReport",
    "InstanceAlreadyExists",
    "InstanceNotFound",
    "InstanceNotRunning",
    "InstanceStillRunning",
    "OrchestrationStatus",
    "RuntimeStatus",
    "SystemClock",
    "VirtualClock",
]
