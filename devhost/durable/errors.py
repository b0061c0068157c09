"""Errors the engine's API raises; the HTTP layer maps them to status codes."""

from __future__ import annotations


class DurableEngineError(Exception):
    """Base of every error the engine raises on purpose."""


class InstanceNotFound(DurableEngineError):
    def __init__(self, instance_id: str) -> None:
        super().__init__(f"no orchestration instance with id {instance_id!r}")
        self.instance_id = instance_id


class InstanceAlreadyExists(DurableEngineError):
    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(f"an instance with id {instance_id!r} already exists ({status})")
        self.instance_id = instance_id
        self.status = status


class InstanceNotRunning(DurableEngineError):
    """The instance has finished: it takes no more events and cannot be terminated."""

    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(f"instance {instance_id!r} is {status}, not running")
        self.instance_id = instance_id
        self.status = status


class InstanceStillRunning(DurableEngineError):
    """Only finished instances can be purged."""

    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(f"instance {instance_id!r} is {status}; only finished ones are purged")
        self.instance_id = instance_id
        self.status = status


class FunctionNotFound(DurableEngineError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"the app has no {kind} function named {name!r}")
        self.kind = kind
        self.name = name


class EngineBusy(DurableEngineError):
    """``run_until_idle`` hit its bound with work still pending."""
