"""The app's durable functions, found by trigger type in the app's own metadata.

A function's durable name is the trigger's ``orchestration`` / ``activity`` / ``entityName``
attribute when given, else the function's name, and is matched case-insensitively, as the
extension registers them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

from devhost.app_index import AppIndex, FunctionSpec, index_app
from devhost.durable.activities import ActivityFunction, import_object

_NAME_ATTRIBUTE = {
    "orchestrationTrigger": "orchestration",
    "activityTrigger": "activity",
    "entityTrigger": "entityName",
}


@dataclass(frozen=True)
class HandleFunction:
    """An orchestrator or entity: the SDK's host handle, JSON in and JSON out."""

    name: str
    handle: Callable[[str], str]


def durable_name(spec: FunctionSpec) -> str:
    attribute = _NAME_ATTRIBUTE.get(spec.trigger_type)
    declared = spec.trigger.get(attribute) if attribute else None
    return str(declared) if declared else spec.name


@dataclass
class FunctionCatalog:
    orchestrators: dict[str, HandleFunction] = field(default_factory=dict)
    activities: dict[str, ActivityFunction] = field(default_factory=dict)
    entities: dict[str, HandleFunction] = field(default_factory=dict)

    @classmethod
    def from_index(cls, index: AppIndex) -> FunctionCatalog:
        catalog = cls()
        for spec in index.of_type("orchestrationTrigger"):
            name = durable_name(spec)
            catalog.orchestrators[name.lower()] = HandleFunction(name, spec.call)
        for spec in index.of_type("entityTrigger"):
            name = durable_name(spec)
            catalog.entities[name.lower()] = HandleFunction(name, spec.call)
        for spec in index.of_type("activityTrigger"):
            name = durable_name(spec)
            catalog.activities[name.lower()] = ActivityFunction(
                name, spec.call, spec.trigger_param, spec.client_param
            )
        return catalog

    @classmethod
    def from_app(cls, app: func.FunctionRegister | AppIndex) -> FunctionCatalog:
        return cls.from_index(app if isinstance(app, AppIndex) else index_app(app))

    def has_activity(self, name: str) -> bool:
        return name.lower() in self.activities

    def has_orchestrator(self, name: str) -> bool:
        return name.lower() in self.orchestrators

    def has_entity(self, name: str) -> bool:
        return name.lower() in self.entities


def load_app(reference: str) -> Any:
    """``module:attribute`` (attribute defaults to ``app``) -> the FunctionApp."""
    app = import_object(reference)
    # A DFApp is a FunctionRegister but not a FunctionApp.
    if not isinstance(app, func.FunctionRegister):
        raise TypeError(f"{reference} is not a Functions app (FunctionApp or DFApp)")
    return app
